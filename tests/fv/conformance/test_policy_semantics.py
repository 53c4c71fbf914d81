"""Policy semantics against the real felix and kernel, as truth tables over workloads ×
(TCP, UDP, ICMP) × (IPv4, IPv6): profiles and tags, profile labels, tiers and policy order,
rule match keys and every negation, and label changes that move endpoints in and out of
selectors by changing only ipsets. Semantics: datamodel.md, "Semantics felix must enforce".
Several checks share one felix start: a start plus convergence costs ~5 s."""

from __future__ import annotations

import pytest

from tests.fv.conftest import FelixEnv
from tests.fv.conformance.matrix import ICMP, TCP1, TCP2, UDP1, UDP2, Matrix
from tests.fv.harness.workload import Workload

OUT_ALL = [{}]


def workloads(env: FelixEnv, *names: str) -> list[Workload]:
    return [env.workload(n, f"10.66.0.{i + 2}", f"fd00:66::{i + 2}") for i, n in enumerate(names)]


def test_profiles_tags_several_profiles_move_and_inherited_labels(env: FelixEnv) -> None:
    a, b, c, d, e = ws = workloads(env, "pa", "pb", "pc", "pd", "pe")
    ds, h = env.ds, env.hostname
    ds.profile("web", inbound=[{"src_tag": "web"}], outbound=OUT_ALL, tags=["web"])
    ds.profile("open8080", inbound=[{"protocol": "tcp", "dst_ports": [8080]}], outbound=OUT_ALL)
    # "team" exists only on the profile: d inherits it; e overrides it with its own label.
    ds.profile("blue", inbound=[{"src_selector": "team == 'blue'"}], outbound=OUT_ALL,
               labels={"team": "blue"})
    ds.endpoint(h, "pa", a.endpoint(profile_ids=("web",)))
    ds.endpoint(h, "pb", b.endpoint(profile_ids=("web",)))
    ds.endpoint(h, "pc", c.endpoint(profile_ids=("open8080", "web")))
    ds.endpoint(h, "pd", d.endpoint(profile_ids=("blue",)))
    ds.endpoint(h, "pe", e.endpoint(profile_ids=("blue",), labels={"team": "red"}))
    env.start_felix()

    m = Matrix(ws)
    m.allow(src=[a, b, c], dst=[a, b, c])           # tag web, any protocol
    m.allow(src=[d, e], dst=c, ports=TCP1)           # c's second profile: tcp/8080 from anyone
    m.allow(src=d, dst=e)                            # e selects team == blue: only d (inherited)
    m.check("profiles: tags, two profiles, inherited label", timeout=30)

    # The harness itself must fail on a wrong expectation, with a readable matrix.
    with pytest.raises(AssertionError, match=r"OK\*"):
        m.copy().block(src=a, dst=b, ports=TCP1, families=4).check("harness self-check (wrong)", 0.5)

    # c moves from [open8080, web] to [open8080]: loses tag web both as source and target.
    ds.endpoint(h, "pc", c.endpoint(profile_ids=("open8080",)))
    m2 = Matrix(ws)
    m2.allow(src=[a, b], dst=[a, b])
    m2.allow(dst=c, ports=TCP1)
    m2.allow(src=d, dst=e)
    m2.check("profiles: endpoint leaves a profile")

    # c moves to blue: now inherits team=blue, so both d and e's rule admit it; e stays red.
    ds.endpoint(h, "pc", c.endpoint(profile_ids=("blue",)))
    m3 = Matrix(ws)
    m3.allow(src=[a, b], dst=[a, b])
    m3.allow(src=[c, d], dst=[c, d, e])
    m3.check("profiles: endpoint moves to another profile")

    # The profile's label changes: every inheriting endpoint leaves the selector at once.
    ds.profile("blue", labels={"team": "green"})
    m4 = Matrix(ws)
    m4.allow(src=[a, b], dst=[a, b])
    m4.check("profiles: profile label change")


def iptables_save(env: FelixEnv, v6: bool = False) -> str:
    return env.host.exec("ip6tables-save" if v6 else "iptables-save").stdout


def test_tiers_order_actions_and_ignored_tiers(env: FelixEnv) -> None:
    w, x, o, db = ws = workloads(env, "tw", "tx", "to", "tdb")
    ds, h = env.ds, env.hostname
    ds.profile("open", inbound=[{}], outbound=OUT_ALL)
    for wl, role in ((w, "web"), (x, "bad"), (o, "other"), (db, "db")):
        ds.endpoint(h, wl.name, wl.endpoint(profile_ids=("open",), labels={"role": role}))
    ds.tier("t1", 10)
    # Policy order contradicts id order: "z-first" must run before "a-second".
    ds.policy("t1", "z-first", "role == 'db'", order=1, inbound=[
        {"action": "deny", "src_selector": "role == 'bad'"},
        {"action": "next-tier", "src_selector": "role == 'web'"},
        {"action": "allow", "protocol": "tcp", "dst_ports": [8081]}])
    ds.policy("t1", "a-second", "role == 'db'", order=2, inbound=[{"protocol": "udp"}])
    # db has matching policies in t1 but no outbound rule: its own connections die there.
    ds.tier("t2", 20)
    ds.policy("t2", "p2", "role == 'db'", order=1, inbound=[
        {"action": "log", "log_prefix": "conformance-log"},
        {"action": "allow", "protocol": "tcp", "dst_ports": [8080]}])
    ds.policy("t2", "everyone", "all()", order=100,
              inbound=[{"protocol": "icmp"}, {"protocol": "icmpv6"}], outbound=[{}])
    # Tiers that would change everything if they were not ordered/ignored as specified:
    # "aa" sorts first by name but last by order; "dflt" has order "default" (last);
    # "nometa" has a policy but no metadata.
    ds.tier("aa", 30)
    ds.policy("aa", "lenient", "all()", inbound=[{}], outbound=[{}])
    ds.tier("dflt", "default")
    ds.policy("dflt", "deny-all", "all()", inbound=[{"action": "deny"}],
              outbound=[{"action": "deny"}])
    ds.policy("nometa", "deny-all", "all()", inbound=[{"action": "deny"}],
              outbound=[{"action": "deny"}])
    env.start_felix()

    m = Matrix(ws)
    m.allow(src=[w, x, o], dst=[w, x, o], ports=ICMP)       # t2 "everyone"; rest dropped in t2
    m.allow(src=w, dst=db, ports=[TCP1, ICMP])               # next-tier → t2: log, tcp/8080; icmp
    m.allow(src=o, dst=db, ports=[TCP2, UDP1, UDP2])         # t1: tcp/8081 then a-second udp
    m.check("tiers: order, deny/next-tier/log/allow, end-of-tier drop, ignored tiers", timeout=30)
    for v6 in (False, True):
        assert "conformance-log" in iptables_save(env, v6)

    # Reorder within t1: a-second (udp allow) now precedes the deny of bad and the next-tier.
    ds.policy("t1", "a-second", "role == 'db'", order=0, inbound=[{"protocol": "udp"}])
    m.allow(src=[x, w], dst=db, ports=[UDP1, UDP2])
    m.check("tiers: policy reorder within a tier")

    # t2 loses its metadata and is ignored: next-tier now lands in "aa", which allows all.
    ds.delete("/calico/v1/policy/tier/t2/metadata")
    m3 = Matrix(ws)
    m3.allow(src=[w, x, o], dst=[w, x, o])
    m3.allow(src=w, dst=db)
    m3.allow(src=x, dst=db, ports=[UDP1, UDP2])
    m3.allow(src=o, dst=db, ports=[TCP2, UDP1, UDP2])
    m3.check("tiers: tier metadata deleted → tier ignored")
