"""Regression: an endpoint matching or unmatching policies must not re-render those policies'
chains (found by bench B3: every endpoint add re-rendered all its policies, ~15% of felix's CPU
under churn). Counted through the renderers' policy_chains/profile_chains."""

from __future__ import annotations

from felix.calc.graph import CalcGraph
from felix.model.objects import Policy, ProfileRules, Rule
from felix.model.keys import PolicyKey
from felix.model.selector import parse_selector
from tests.unit.test_calc_graph import baseline, up, wl


def _count_renders(g: CalcGraph) -> dict[str, int]:
    counts = {"policy": 0, "profile": 0}
    for r in g._renderers.values():
        for kind in counts:
            real = getattr(r, f"{kind}_chains")

            def counting(obj: object, _real=real, _kind=kind) -> object:
                counts[_kind] += 1
                return _real(obj)
            object.__setattr__(r, f"{kind}_chains", counting)  # frozen renderer
    return counts


def test_endpoint_churn_does_not_rerender_policies_or_profiles() -> None:
    g, state = baseline()
    counts = _count_renders(g)
    g.on_update(up(wl(500)))           # matches POLICY (role == web), uses profile "web"
    state.apply_all(g.take_messages())
    g.on_update(up(wl(500, labels={"role": "other"})))  # unmatches it
    state.apply_all(g.take_messages())
    assert counts == {"policy": 0, "profile": 0}


def test_rule_change_still_rerenders() -> None:
    g, state = baseline()
    counts = _count_renders(g)
    g.on_update(up(Policy(PolicyKey("t1", "p1"), parse_selector('role == "web"'), 1.0,
                          inbound=(Rule(action="deny"),))))
    g.on_update(up(ProfileRules("web", inbound=(Rule(action="deny"),), outbound=())))
    msgs = g.take_messages()
    state.apply_all(msgs)
    assert counts["policy"] == len(g._renderers) and counts["profile"] == len(g._renderers)
    assert any("p1" in getattr(m, "name", "") or "DROP" in str(getattr(m, "rules", ""))
               for m in msgs)


def test_policy_deactivated_and_reactivated_is_rendered_again() -> None:
    g, state = baseline(n_local=1)
    g.on_update(up(wl(0, labels={"role": "other"})))   # p1 loses its only endpoint
    state.apply_all(g.take_messages())
    counts = _count_renders(g)
    g.on_update(up(wl(0)))                             # and gets it back
    state.apply_all(g.take_messages())
    assert counts["policy"] == len(g._renderers)
    assert state.in_sync
