"""Policy semantics against the real felix and kernel, as truth tables over workloads ×
(TCP, UDP, ICMP) × (IPv4, IPv6): profiles and tags, profile labels, tiers and policy order,
rule match keys and every negation, and label changes that move endpoints in and out of
selectors by changing only ipsets. Semantics: datamodel.md, "Semantics felix must enforce".
Several checks share one felix start: a start plus convergence costs ~5 s."""

from __future__ import annotations

import difflib
import re
from typing import Iterable, cast

import pytest

from tests.fv.conftest import FelixEnv
from tests.fv.conformance.matrix import (CONVERGENCE, ICMP, TCP1, TCP2, UDP1, UDP2, Cell, Matrix,
                                         Port)
from tests.fv.conformance.net_hosts import Peer
from tests.fv.harness.probes import wait_until
from tests.fv.harness.workload import Workload

OUT_ALL: list[dict[str, object]] = [{}]
# The fast suite runs on the nft backend; the legacy variants render the same rules through
# the other iptables and are behind the slow mark.
BACKENDS = ["nft", pytest.param("legacy", marks=pytest.mark.slow)]


def workloads(env: FelixEnv, *names: str) -> list[Workload]:
    return [env.workload(n, f"10.66.0.{i + 2}", f"fd00:66::{i + 2}") for i, n in enumerate(names)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_profiles_tags_several_profiles_move_and_inherited_labels(env: FelixEnv, backend: str) -> None:
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
    env.start_felix(config={"IptablesBackend": backend})

    m = Matrix(ws)
    m.allow(src=[a, b, c], dst=[a, b, c])           # tag web, any protocol
    m.allow(src=[d, e], dst=c, ports=TCP1)           # c's second profile: tcp/8080 from anyone
    m.allow(src=d, dst=e)                            # e selects team == blue: only d (inherited)
    m.check("profiles: tags, two profiles, inherited label", timeout=30)

    # The harness itself must fail on a wrong expectation, with a readable matrix.
    with pytest.raises(AssertionError) as wrong:
        m.copy().block(src=a, dst=b, ports=TCP1, families=4).check("self-check", 0.5, record=False)
    print(wrong.value)
    assert "IPv4 pa -> pb:tcp/8080: expected blocked" in str(wrong.value)
    assert str(wrong.value).count("OK*") == 1

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

    # The web profile loses its tag: a and b are no longer admitted by each other.
    ds.profile("web", tags=[])
    m5 = Matrix(ws)
    m5.check("profiles: tag removed from a profile")

    # The tag comes back but web's rules go: a profile without rules allows nothing, in
    # either direction, so a and b are cut off; blue's label is restored for c and d.
    ds.profile("web", tags=["web"])
    ds.delete("/calico/v1/policy/profile/web/rules")
    ds.profile("blue", labels={"team": "blue"})
    m6 = Matrix(ws)
    m6.allow(src=[c, d], dst=[c, d, e])
    m6.check("profiles: rules deleted, tags kept")


def iptables_save(env: FelixEnv, backend: str, v6: bool = False) -> str:
    return env.host.exec(f"ip6tables-{backend}-save" if v6 else f"iptables-{backend}-save").stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiers_order_actions_and_ignored_tiers(env: FelixEnv, backend: str) -> None:
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
    # Invalid is absent: a tier whose order is not a number, a policy whose selector does
    # not parse, a policy with an unknown rule key.
    ds.tier("badorder", "abc")
    ds.policy("badorder", "deny-all", "all()", inbound=[{"action": "deny"}],
              outbound=[{"action": "deny"}])
    ds.policy("t1", "bad-selector", "role == ", order=0, inbound=[{"action": "deny"}],
              outbound=[{"action": "deny"}])
    ds.policy("t1", "bad-rule", "all()", order=0, inbound=[{"action": "deny", "bogus": 1}],
              outbound=[{"action": "deny"}])
    env.start_felix(config={"IptablesBackend": backend})

    m = Matrix(ws)
    m.allow(src=[w, x, o], dst=[w, x, o], ports=ICMP)       # t2 "everyone"; rest dropped in t2
    m.allow(src=w, dst=db, ports=[TCP1, ICMP])               # next-tier → t2: log, tcp/8080; icmp
    m.allow(src=o, dst=db, ports=[TCP2, UDP1, UDP2])         # t1: tcp/8081 then a-second udp
    m.check("tiers: order, deny/next-tier/log/allow, end-of-tier drop, ignored tiers, invalid "
            "tier/policies", timeout=30)
    for v6 in (False, True):
        assert "conformance-log" in iptables_save(env, backend, v6)

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

    # The metadata comes back: t2 applies again.
    ds.tier("t2", 20)
    m.check("tiers: tier metadata restored")

    # p2 stops selecting db: web's next-tier now finds only "everyone" (icmp) in t2.
    ds.policy("t2", "p2", "role == 'nobody'", order=1, inbound=[{"protocol": "tcp"}])
    m.block(src=w, dst=db, ports=TCP1)
    m.check("tiers: policy selector no longer matches")

    # o's label moves it into the db policies: it is judged like db both ways (udp first,
    # next-tier to "everyone" for web; its own connections die at the end of t1).
    ds.endpoint(h, o.name, o.endpoint(profile_ids=("open",), labels={"role": "db"}))
    m5 = Matrix(ws).allow(src=[w, x], dst=[w, x], ports=ICMP)
    m5.allow(src=w, dst=[db, o], ports=[UDP1, UDP2, ICMP])
    m5.allow(src=x, dst=[db, o], ports=[UDP1, UDP2])
    m5.check("tiers: endpoint label change moves it into policies")


@pytest.mark.parametrize("backend", BACKENDS)
def test_match_keys_ports_protocols_icmp_nets_and_every_negation(env: FelixEnv, backend: str) -> None:
    """Three sources probe twelve destinations whose inbound profiles (and s3's outbound
    profile) each exercise a few match keys; a positive and a negated form side by side, so
    a negation felix ignored or inverted shows up as a wrong cell."""
    names = ["ms1", "ms2", "ms3", "mA", "mB", "mC", "mD", "mE", "mF", "mG", "mH", "mI", "mJ",
             "mK", "mL", "mM"]
    s1, s2, s3, A, B, C, D, E, F, G, H, I, J, K, L, M = workloads(env, *names)
    ds, hn = env.ds, env.hostname
    SP_IN, SP_OUT = Port("udp", 5353, sport=2000), Port("udp", 5353, sport=2001)
    rules: dict[Workload, list[dict[str, object]]] = {
        # More ports than one multiport match takes (15, a range counting 2): chunked.
        A: [{"protocol": "tcp", "dst_ports": [*range(1000, 1015), "2000:2010", 8081]},
            {"protocol": "udp", "dst_ports": ["5354:5400"]}],
        B: [{"protocol": "tcp", "!dst_ports": [*range(1000, 1015), "3000:3001", 8080]},
            {"protocol": "udp", "!dst_ports": ["5300:5353"]},
            {"protocol": "icmp", "!icmp_type": 8}, {"protocol": "icmpv6", "!icmp_type": 128}],
        # "!icmp_code" goes with "!icmp_type" and negates the (type, code) pair, as in Calico.
        C: [{"protocol": "icmp", "icmp_type": 8, "icmp_code": 0},
            {"protocol": "icmpv6", "!icmp_type": 128, "!icmp_code": 1},
            {"protocol": 17}],
        D: [{"protocol": "icmp", "!icmp_type": 8, "!icmp_code": 0},
            {"protocol": "icmpv6", "icmp_type": 128, "icmp_code": 1},
            {"protocol": "tcp", "dst_ports": ["8000:8090"], "!dst_ports": [8081]}],
        E: [{"!protocol": "tcp"}],
        F: [{"protocol": "udp", "src_ports": ["1990:2000"]},
            {"protocol": "tcp", "!src_ports": ["1:32767"]}],   # probes' ephemeral ports are higher
        G: [{"protocol": "udp", "!src_ports": [2000]}],
        H: [{"protocol": "tcp", "src_tag": "t1"},
            {"protocol": "udp", "src_selector": "role == 's2'"},
            {"protocol": "icmp", "src_net": f"{s1.ip}/32"},
            {"protocol": "icmpv6", "src_net": f"{s1.ip6}/128"}],
        I: [{"protocol": "tcp", "!src_tag": "t1"},
            {"protocol": "udp", "!src_selector": "role == 's2'"},
            {"protocol": "icmp", "!src_net": f"{s1.ip}/32"},
            {"protocol": "icmpv6", "!src_net": f"{s1.ip6}/128"}],
        # Keys of one rule are ANDed, including a key with its own negation.
        M: [{"src_tag": "t1", "src_selector": "role == 's2'"},
            {"protocol": "udp", "src_tag": "t1", "src_selector": "role == 's1'"},
            {"protocol": "tcp", "src_tag": "t2", "!src_tag": "t2"},
            {"protocol": "icmp", "src_net": "10.66.0.0/24", "!src_net": f"{s2.ip}/32"},
            {"protocol": "icmpv6", "src_net": "fd00:66::/64", "!src_net": f"{s2.ip6}/128"}],
    }
    for dst, inbound in rules.items():
        ds.profile(f"p-{dst.name}", inbound=inbound, outbound=OUT_ALL)
        ds.endpoint(hn, dst.name, dst.endpoint(profile_ids=(f"p-{dst.name}",)))
    ds.profile("open", inbound=[{}], outbound=OUT_ALL)
    ds.profile("tagj", tags=["tj"])
    ds.endpoint(hn, J.name, J.endpoint(profile_ids=("open", "tagj"), labels={"dsel": "yes"}))
    ds.endpoint(hn, K.name, K.endpoint(profile_ids=("open",), labels={"dsel": "no"}))
    ds.endpoint(hn, L.name, L.endpoint(profile_ids=("open",), labels={"dsel": "yes"}))
    ds.profile("src1", outbound=OUT_ALL, tags=["t1"])
    ds.profile("src2", outbound=OUT_ALL, tags=["t2"])
    ds.profile("src3", outbound=[
        {"protocol": "tcp", "dst_tag": "tj"},
        {"protocol": "udp", "!dst_tag": "tj"},
        {"protocol": "icmp", "dst_selector": "dsel == 'yes'"},
        {"protocol": "icmpv6", "dst_selector": "dsel == 'yes'"},
        {"protocol": "tcp", "dst_ports": [8081], "!dst_selector": "dsel == 'yes'"},
        {"protocol": "tcp", "dst_ports": [8080], "dst_net": f"{L.ip}/32"},
        {"protocol": "tcp", "dst_ports": [8080], "dst_net": f"{L.ip6}/128"},
        {"protocol": "tcp", "dst_ports": [8081], "!dst_net": f"{K.ip}/32", "dst_selector": "has(dsel)"},
        {"protocol": "tcp", "dst_ports": [8081], "!dst_net": f"{K.ip6}/128", "dst_selector": "has(dsel)"},
        {"protocol": "tcp", "dst_ports": [8080], "ip_version": 6, "dst_selector": "dsel == 'no'"}])
    for src, role in ((s1, "s1"), (s2, "s2"), (s3, "s3")):
        ds.endpoint(hn, src.name, src.endpoint(profile_ids=(f"src{role[1]}",), labels={"role": role}))
    env.start_felix(config={"IptablesBackend": backend})

    dsts = [A, B, C, D, E, F, G, H, I, J, K, L, M]
    m = Matrix([s1, s2, s3], dsts=dsts)
    inbound_ok = {A: [TCP2, UDP2], B: [TCP2, UDP2], C: [ICMP, UDP1, UDP2], D: [TCP1],
                  E: [UDP1, UDP2, ICMP], F: [TCP1, TCP2], G: [UDP1, UDP2]}
    for dst, ports in inbound_ok.items():
        m.allow(src=[s1, s2], dst=dst, ports=ports)
    m.allow(src=s1, dst=H, ports=[TCP1, TCP2, ICMP]).allow(src=s2, dst=H, ports=[UDP1, UDP2])
    m.allow(src=s1, dst=I, ports=[UDP1, UDP2]).allow(src=s2, dst=I, ports=[TCP1, TCP2, ICMP])
    m.allow(src=[s1, s2], dst=[J, K, L])
    m.allow(src=s1, dst=M, ports=[UDP1, UDP2, ICMP])
    # s3's outbound rules admit tcp/8081 and udp to anything untagged without dsel == yes.
    s3_out = {TCP2, UDP1, UDP2}
    for dst, ports in inbound_ok.items():
        if s3_out & set(ports):
            m.allow(src=s3, dst=dst, ports=s3_out & set(ports))
    m.allow(src=s3, dst=I, ports=s3_out)
    m.allow(src=s3, dst=J, ports=[TCP1, TCP2, ICMP])
    m.allow(src=s3, dst=K, ports=[TCP2, UDP1, UDP2]).allow(src=s3, dst=K, ports=TCP1, families=6)
    m.allow(src=s3, dst=L, ports=[UDP1, UDP2, ICMP, TCP1, TCP2])
    m.check("match keys: ports, protocols, icmp, tags, selectors, nets, negations", timeout=30)

    sp = Matrix([s1, s2, s3], dsts=[F, G], ports=[SP_IN, SP_OUT])
    sp.allow(dst=F, ports=SP_IN).allow(dst=G, ports=SP_OUT)
    sp.check("match keys: src_ports / !src_ports with fixed source ports")


def felix_chains(env: FelixEnv, backend: str) -> list[str]:
    """Every felix-owned line of both families' rulesets (chain declarations, rules, hook
    jumps), counters stripped, so a re-render that changed nothing compares equal."""
    lines: list[str] = []
    for tool in (f"iptables-{backend}-save", f"ip6tables-{backend}-save"):
        for line in env.host.exec(tool).stdout.splitlines():
            if line.startswith("*"):
                lines.append(f"{tool} {line}")
            elif "cali" in line and not line.startswith("#"):
                lines.append(re.sub(r"\[\d+:\d+\]", "", line))
    return lines


def ipset_members(env: FelixEnv) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    name = ""
    for line in env.host.exec("ipset", "save").stdout.splitlines():
        parts = line.split()
        if parts[0] == "create":
            name = parts[1]
            out[name] = []
        elif parts[0] == "add":
            out[parts[1]].append(parts[2])
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_label_changes_move_endpoints_through_selectors_by_ipsets_only(env: FelixEnv, backend: str) -> None:
    a, b, c, d = ws = workloads(env, "la", "lb", "lc", "ld")
    ds, hn = env.ds, env.hostname
    ds.profile("open", inbound=[{}], outbound=OUT_ALL)
    # Servers accept from access == yes (and udp from tag vip) and talk only to team == blue.
    ds.profile("srv", inbound=[{"src_selector": "access == 'yes'"},
                               {"src_tag": "vip", "protocol": "udp"}],
               outbound=[{"dst_selector": "team == 'blue'"}])
    ds.profile("lbl", labels={"team": "red"})
    ds.endpoint(hn, "la", a.endpoint(profile_ids=("open",)))
    ds.endpoint(hn, "lb", b.endpoint(profile_ids=("srv",), labels={"role": "server"}))
    ds.endpoint(hn, "lc", c.endpoint(profile_ids=("open", "lbl")))
    ds.endpoint(hn, "ld", d.endpoint(profile_ids=("srv",), labels={"role": "server"}))
    env.start_felix(config={"IptablesBackend": backend})

    base = Matrix(ws).allow(src=[a, c], dst=[a, c])
    base.check("labels: baseline", timeout=30)
    chains = felix_chains(env, backend)
    sets = ipset_members(env)
    assert any(r.startswith("-A cali") for r in chains), chains

    def unchanged_chains(step: str) -> None:
        now = felix_chains(env, backend)
        assert now == chains, f"{step}: felix chains changed:\n" + "\n".join(
            difflib.unified_diff(chains, now, "before", "after", lineterm=""))

    # a's own label moves it into the servers' src_selector.
    ds.endpoint(hn, "la", a.endpoint(profile_ids=("open",), labels={"access": "yes"}))
    base.copy().allow(src=a, dst=[b, d]).check("labels: endpoint label joins a src_selector")
    unchanged_chains("own label added")
    assert ipset_members(env) != sets

    # A profile label, inherited by c, moves c into the servers' dst_selector.
    ds.profile("lbl", labels={"team": "blue"})
    base.copy().allow(src=a, dst=[b, d]).allow(src=[b, d], dst=c).check(
        "labels: inherited profile label joins a dst_selector")
    unchanged_chains("profile label changed")

    # c's own label overrides the inherited one; a loses its label: back to the baseline,
    # with the very same ipset contents as at the start.
    ds.endpoint(hn, "lc", c.endpoint(profile_ids=("open", "lbl"), labels={"team": "red"}))
    ds.endpoint(hn, "la", a.endpoint(profile_ids=("open",)))
    base.check("labels: own label overrides, label removed")
    unchanged_chains("labels reverted")
    assert ipset_members(env) == sets

    # A profile gains a tag: c (via lbl) joins the servers' src_tag, for udp.
    ds.profile("lbl", tags=["vip"])
    base.copy().allow(src=c, dst=[b, d], ports=[UDP1, UDP2]).check("labels: profile gains a tag")
    unchanged_chains("tag added")

    # Control: the comparison does see a change that is not ipset-only (a's profile list;
    # "lbl" would not do: a profile without rules gets no jump).
    ds.endpoint(hn, "la", a.endpoint(profile_ids=("srv", "open")))
    wait_until(lambda: felix_chains(env, backend) != chains, 15, what="a's chains to change")


@pytest.mark.parametrize("backend", BACKENDS)
def test_selector_syntax_and_shared_selector_ipsets(env: FelixEnv, backend: str) -> None:
    s1, s2, s3, s4, *xs = workloads(env, "ss1", "ss2", "ss3", "ss4", "sx1", "sx2", "sx3", "sx4",
                                    "sx5", "sx6", "sx7", "sx8", "sx9", "sx10", "sx11", "sx12")
    ds, hn = env.ds, env.hostname
    srcs = [s1, s2, s3, s4]
    labels = [{"app": "web", "env": "prod", "projectcalico.org/ns": "a-b"}, {"app": "db", "env": "dev"}, {"app": "cache"}, {}]
    ds.profile("out", outbound=OUT_ALL)
    for s, lab in zip(srcs, labels):
        ds.endpoint(hn, s.name, s.endpoint(profile_ids=("out",), labels=lab))
    selectors = {
        'app in {"web", "db"}': [s1, s2],
        'app not in {"web", "db"}': [s3, s4],           # absent label: not in
        "has(env) && !(env == 'dev')": [s1],
        "env != 'prod'": [s2, s3, s4],                   # absent label: !=
        "app == 'cache' || env == \"prod\"": [s1, s3],
        "all()": srcs,
        "!has(app)": [s4],
        "app in {'db','web'}": [s1, s2],                 # same as the first: one shared ipset
        "projectcalico.org/ns == 'a-b'": [s1],           # label names with '.', '/'
        "": srcs,                                        # empty: everything
        "app == 'cache' || app == 'web' && env == 'dev'": [s3],   # && binds tighter
        "!has(env) || app == 'db'": [s2, s3, s4],                 # ! binds tightest
    }
    m = Matrix(srcs, dsts=xs, ports=(TCP1, UDP1, ICMP))
    assert len(xs) == len(selectors)
    for x, (sel, allowed) in zip(xs, selectors.items()):
        ds.profile(f"sel-{x.name}", inbound=[{"src_selector": sel}], outbound=OUT_ALL)
        ds.endpoint(hn, x.name, x.endpoint(profile_ids=(f"sel-{x.name}",)))
        m.allow(src=allowed, dst=x)
    env.start_felix(config={"IptablesBackend": backend})
    m.check("selectors: in, not in, has, !, &&, ||, !=, all(), '', dotted names, precedence",
            timeout=30)
    for v, ip_of in ((4, lambda w: w.ip), (6, lambda w: w.ip6)):
        want = sorted(ip_of(w) for w in (s1, s2))
        same = [n for n, mem in ipset_members(env).items()
                if n.startswith(f"cali{v}") and sorted(x.split("/")[0] for x in mem) == want]
        assert len(same) == 1, (v, same)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiers_meet_profiles(env: FelixEnv, backend: str) -> None:
    c, ta, tb, tc, td, te, tf, tg = workloads(env, "qc", "qa", "qb", "qcc", "qd", "qe", "qf", "qg")
    ds, hn = env.ds, env.hostname
    ds.profile("open", inbound=[{}], outbound=OUT_ALL)
    ds.profile("deny8080", inbound=[{"action": "deny", "protocol": "tcp", "dst_ports": [8080]}])
    ds.profile("denyall", inbound=[{"action": "deny"}])
    ds.profile("logall", inbound=[{"action": "log", "log_prefix": "conf-prof"}])
    ds.profile("open8081", inbound=[{"protocol": "tcp", "dst_ports": [8081]}])
    ds.endpoint(hn, c.name, c.endpoint(profile_ids=("open",)))
    ds.tier("only", 1)
    # next-tier out of the last tier lands in the profiles, which still decide.
    ds.policy("only", "nt", "pol == 'nt'", order=1, inbound=[
        {"action": "next-tier", "protocol": "tcp"}, {"protocol": "udp"}])
    ds.endpoint(hn, ta.name, ta.endpoint(profile_ids=("deny8080", "open"), labels={"pol": "nt"}))
    # A policy's allow is final: the profile (deny all) is never consulted.
    ds.policy("only", "al", "pol == 'allow'", order=2, inbound=[{"protocol": "tcp"}])
    ds.endpoint(hn, tb.name, tb.endpoint(profile_ids=("denyall",), labels={"pol": "allow"}))
    # Profiles only: log goes on; next-tier in a profile ends that profile; the first
    # profile that allows decides.
    ds.profile("skip", inbound=[{"action": "next-tier", "protocol": "tcp"},
                                {"action": "deny", "protocol": "udp"}])
    ds.endpoint(hn, tc.name, tc.endpoint(profile_ids=("logall", "skip", "open8081")))
    # A profile that does not exist allows nothing.
    ds.endpoint(hn, td.name, td.endpoint(profile_ids=("no-such-profile",)))
    # A policy without order sorts after every ordered one.
    ds.policy("only", "p-noorder", "pol == 'ord'", inbound=[{"action": "deny"}])
    ds.policy("only", "p-order", "pol == 'ord'", order=1000, inbound=[{"protocol": "tcp"}])
    ds.endpoint(hn, te.name, te.endpoint(profile_ids=("open",), labels={"pol": "ord"}))
    # Tiers of equal order go by name: same-a (deny udp, else next-tier) before same-b.
    ds.tier("same-b", 5)
    ds.tier("same-a", 5)
    ds.policy("same-a", "a", "pol == 'tie'", inbound=[{"action": "deny", "protocol": "udp"},
                                                      {"action": "next-tier"}])
    ds.policy("same-b", "b", "pol == 'tie'", inbound=[{}])
    ds.endpoint(hn, tf.name, tf.endpoint(profile_ids=("denyall",), labels={"pol": "tie"}))
    # Negative tier order sorts first; fractional policy orders are compared as numbers.
    ds.tier("neg", -5)
    ds.policy("neg", "f", "pol == 'float'", order=0.5, inbound=[{"action": "deny",
                                                                   "protocol": "udp"}])
    ds.policy("neg", "g", "pol == 'float'", order=0.25, inbound=[{"protocol": "udp"},
                                                                  {"action": "next-tier"}])
    ds.endpoint(hn, tg.name, tg.endpoint(profile_ids=("deny8080", "open"), labels={"pol": "float"}))
    env.start_felix(config={"IptablesBackend": backend})

    m = Matrix([c], dsts=[ta, tb, tc, td, te, tf, tg], ports=(TCP1, TCP2, UDP1, ICMP))
    m.allow(dst=tg, ports=[TCP2, UDP1, ICMP])
    m.allow(dst=ta, ports=[TCP2, UDP1])
    m.allow(dst=tb, ports=[TCP1, TCP2])
    m.allow(dst=tc, ports=TCP2)
    m.allow(dst=te, ports=[TCP1, TCP2])
    m.allow(dst=tf, ports=[TCP1, TCP2, ICMP])
    m.check("tiers meet profiles: next-tier to profiles, final allow, log, next-tier in a "
            "profile, missing profile, "
            "unordered policy, tier name tie-break, negative/fractional orders", timeout=30)


@pytest.mark.parametrize("backend", BACKENDS)
def test_remote_endpoints_fill_tag_and_selector_sets(env: FelixEnv, backend: str) -> None:
    """An endpoint of another host gets no chains or routes here, but its IPs join the tag and
    selector sets its profiles and labels match. A peer namespace behind a plain host
    interface plays that remote workload: its packets reach local workloads through FORWARD."""
    x, = workloads(env, "rx")
    peer = Peer(env.host, "rpeer", "10.67.0.2", "fd00:67::2", ifname="rempeer",
                host_ip="10.67.0.1", host_ip6="fd00:67::1")
    env.workloads.append(peer)
    peer.route_via_host("10.66.0.0/24")
    peer.route_via_host("fd00:66::/64")
    ds, hn = env.ds, env.hostname
    ds.profile("x", inbound=[{"protocol": "tcp", "src_selector": "role == 'frontend'"},
                             {"protocol": "udp", "src_tag": "fe"}], outbound=OUT_ALL)
    ds.profile("remote", outbound=OUT_ALL, tags=["fe"])
    ds.endpoint(hn, "rx", x.endpoint(profile_ids=("x",)))
    remote = {"state": "active", "name": "calirem1", "profile_ids": ["remote"],
              "labels": {"role": "frontend"}, "ipv4_nets": [f"{peer.ip}/32"],
              "ipv6_nets": [f"{peer.ip6}/128"]}
    ds.endpoint("otherhost", "rem1", remote)
    env.start_felix(config={"IptablesBackend": backend})

    m = Matrix([peer], dsts=[x], ports=(TCP1, UDP1, ICMP))
    m.allow(ports=[TCP1, UDP1]).check("remote endpoint: in tag and selector sets", timeout=30)
    assert "calirem1" not in "\n".join(felix_chains(env, backend))
    assert peer.ip not in env.host.exec("ip", "route", "show", "proto", "80").stdout

    ds.endpoint("otherhost", "rem1", {**remote, "labels": {"role": "other"}})
    m.block(ports=TCP1).check("remote endpoint: label change leaves the selector set")
    ds.delete_endpoint("otherhost", "rem1")
    m.block(ports=UDP1).check("remote endpoint: deleted, leaves the tag set")


class _FakeWl:
    """Just what Matrix reads of a workload, for testing the harness without namespaces."""

    def __init__(self, name: str, n: int) -> None:
        self.name, self.ip, self.ip6 = name, f"10.0.0.{n}", f"fd00::{n}"


def test_matrix_harness_waits_for_convergence_and_renders_mismatches() -> None:
    a, b, c = fakes = cast(list[Workload], [_FakeWl(n, i) for i, n in enumerate("abc", 1)])
    want = Matrix(fakes, default=True).block(src=c, dst=a, ports=[TCP1, ICMP], families=4)
    assert len(want.expected) == 3 * 2 * 5 * 2
    assert sum(not v for v in want.expected.values()) == 2
    # A fake network that is wide open for two polls, then as wanted.
    state = {"polls": 0, "full": 0}

    def network(cells: Iterable[Cell]) -> dict[Cell, bool]:
        cells = list(cells)
        state["polls"] += 1
        state["full"] += len(cells) == len(want.expected)
        return {cl: True if state["polls"] < 3 else want.expected[cl] for cl in cells}

    before = len(CONVERGENCE)
    want.check("fake: converges", timeout=5, prober=network)
    # A full pass sees it open; two short polls re-probe only the 2 wrong cells (the second
    # sees them right); a last full pass confirms.
    assert state == {"polls": 4, "full": 2}
    assert CONVERGENCE[before][0] == "fake: converges"
    with pytest.raises(AssertionError) as err:
        want.check("fake: never", timeout=0.2, record=False,
                   prober=lambda cells: {cl: True for cl in cells})
    text = str(err.value)
    assert text.count("OK*") == 2 and "--" not in text.split("OK = connected")[0]
    assert "IPv4 c -> a:tcp/8080: expected blocked" in text
    assert "IPv4 c -> a:icmp: expected blocked" in text
    assert len(CONVERGENCE) == before + 1
    del CONVERGENCE[before:]  # not a real scenario: keep it out of the run's summary
