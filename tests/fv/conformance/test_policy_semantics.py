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
