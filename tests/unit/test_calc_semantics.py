"""The proof: rendered chains, interpreted packet by packet, agree with a direct evaluation of
the datastore contract's semantics on random small models (forward traffic between local
workloads, from remote workloads/outside to local ones, and from local ones outwards)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from felix.calc.graph import CalcGraph
from felix.rules import names
from felix.rules.settings import RuleSettings
from tests.unit.packet_eval import (LOCAL, DesiredState, Interpreter, draw_model, draw_packet,
                                    reference_verdict)


def _interpret(state: DesiredState, packet) -> str:  # type: ignore[no-untyped-def]
    v = packet.ip_version
    chains = {n: r for (cv, t, n), r in state.chains.items() if cv == v and t == "filter"}
    sets = {n: m for (cv, n), m in state.sets.items() if cv == v}
    outcome = Interpreter(chains, sets).run(names.FILTER_FORWARD, packet)
    # Falling through felix's chain leaves the packet to the kernel's (ACCEPT) policy.
    return "ACCEPT" if outcome.verdict == "FALLTHROUGH" else outcome.verdict


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_rendered_chains_agree_with_reference_semantics(data: st.DataObject) -> None:
    model, updates = data.draw(st.builds(lambda: None).flatmap(
        lambda _: st.composite(lambda draw: draw_model(draw))()))
    graph = CalcGraph(RuleSettings(LOCAL, drop_action_override=data.draw(
        st.sampled_from(["DROP", "LOG-and-DROP"]))))
    for u in updates:
        graph.on_update(u)
    state = DesiredState()
    state.apply_all(graph.take_messages())
    for _ in range(12):
        packet = data.draw(st.composite(lambda draw: draw_packet(draw, model))())
        want = reference_verdict(model, packet)
        got = _interpret(state, packet)
        assert got == want, (packet, want, got)
