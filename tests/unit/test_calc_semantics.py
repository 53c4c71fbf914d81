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


def reference_to_host(model, p, s: RuleSettings) -> str:  # type: ignore[no-untyped-def]
    """Workload → host per the contract: DHCP, DNS (and the metadata port, and for IPv6
    neighbour discovery) always; otherwise the endpoint must pass anti-spoofing and its
    outbound policy, then DefaultEndpointToHostAction decides."""
    from tests.unit.packet_eval import _in_net, local_by_iface, policy_allows
    v = p.ip_version
    if p.protocol == "udp" and (p.sport, p.dport) == ((68, 67) if v == 4 else (546, 547)):
        return "ACCEPT"
    if p.protocol in ("udp", "tcp") and p.dport == 53:
        return "ACCEPT"
    if v == 6 and p.protocol == "icmpv6" and p.icmp_type in (130, 131, 132, 133, 135, 136):
        return "ACCEPT"
    if (v == 4 and s.metadata_addr and p.protocol == "tcp" and p.dst == s.metadata_addr
            and p.dport == s.metadata_port):
        return "ACCEPT"
    src = local_by_iface(model, p.iif)
    if (src is None or src.state != "active" or (src.mac is not None and p.src_mac != src.mac)
            or not any(_in_net(p.src, n) for n in src.nets(v))
            or not policy_allows(model, src, False, p)):
        return "DROP"
    return {"DROP": "DROP", "ACCEPT": "ACCEPT", "RETURN": "FALLTHROUGH"}[
        s.default_endpoint_to_host_action]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_workload_to_host_agrees_with_reference(data: st.DataObject) -> None:
    import dataclasses
    model, updates = data.draw(st.composite(lambda draw: draw_model(draw))())
    s = RuleSettings(LOCAL, default_endpoint_to_host_action=data.draw(
        st.sampled_from(["DROP", "RETURN", "ACCEPT"])))
    graph = CalcGraph(s)
    for u in updates:
        graph.on_update(u)
    state = DesiredState()
    state.apply_all(graph.take_messages())
    for _ in range(12):
        p = data.draw(st.composite(lambda draw: draw_packet(draw, model))())
        if p.iif == "eth0":
            p = dataclasses.replace(p, iif="cali0")
        host_ip = data.draw(st.sampled_from(
            ["192.168.0.100", "127.0.0.1"] if p.ip_version == 4 else ["fd00:ffff::1"]))
        sport, dport = p.sport, p.dport
        if p.protocol in ("tcp", "udp"):
            sport, dport = data.draw(st.sampled_from(
                [(sport, dport), (68, 67), (546, 547), (1234, 53), (1234, 8775)]))
        icmp_type = p.icmp_type
        if p.protocol == "icmpv6":
            icmp_type = data.draw(st.sampled_from([128, 133, 135, 136, 137]))
        p = dataclasses.replace(p, dst=host_ip, oif=None, sport=sport, dport=dport,
                                icmp_type=icmp_type)
        chains = {n: r for (cv, t, n), r in state.chains.items()
                  if cv == p.ip_version and t == "filter"}
        sets = {n: m for (cv, n), m in state.sets.items() if cv == p.ip_version}
        got = Interpreter(chains, sets).run(names.FILTER_INPUT, p).verdict
        assert got == reference_to_host(model, p, s), p


def reference_host_endpoint(model, p, s: RuleSettings, inbound: bool) -> str:  # type: ignore[no-untyped-def]
    """Traffic into (INPUT) or out of (OUTPUT) the host through ``eth0``: failsafe ports always
    open; a named local host endpoint on the interface applies its policy (allowed traffic
    continues to the kernel's own rules); other interfaces are not policed."""
    from felix.model.objects import HostEndpoint

    from tests.unit.packet_eval import policy_allows
    failsafe = s.failsafe_inbound_ports if inbound else s.failsafe_outbound_ports
    if p.protocol == "tcp" and p.dport in failsafe:
        return "ACCEPT"
    heps = sorted(((k, e) for k, e in model.endpoints.items()
                   if isinstance(e, HostEndpoint) and k.hostname == LOCAL and e.name == "eth0"),
                  key=lambda kv: repr(kv[0]))
    if not heps:
        return "FALLTHROUGH"
    return "FALLTHROUGH" if policy_allows(model, heps[0][1], inbound, p) else "DROP"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_host_endpoint_traffic_agrees_with_reference(data: st.DataObject) -> None:
    import dataclasses
    model, updates = data.draw(st.composite(lambda draw: draw_model(draw))())
    s = RuleSettings(LOCAL)
    graph = CalcGraph(s)
    for u in updates:
        graph.on_update(u)
    state = DesiredState()
    state.apply_all(graph.take_messages())
    for _ in range(12):
        p = data.draw(st.composite(lambda draw: draw_packet(draw, model))())
        inbound = data.draw(st.booleans())
        if p.protocol == "tcp" and data.draw(st.booleans()):
            p = dataclasses.replace(p, dport=data.draw(st.sampled_from([22, 2379, 7001])))
        p = dataclasses.replace(p, iif="eth0" if inbound else None,
                                oif=None if inbound else "eth0", src_mac=None)
        chains = {n: r for (cv, t, n), r in state.chains.items()
                  if cv == p.ip_version and t == "filter"}
        sets = {n: m for (cv, n), m in state.sets.items() if cv == p.ip_version}
        start = names.FILTER_INPUT if inbound else names.FILTER_OUTPUT
        got = Interpreter(chains, sets).run(start, p).verdict
        assert got == reference_host_endpoint(model, p, s, inbound), p
