"""Host endpoints given by expected addresses instead of an interface name: the calculation
resolves them to the host interface holding one of the addresses (reported by the interface
monitor), follows address changes, and leaves them unresolved (no chains) otherwise."""

from __future__ import annotations

from felix.calc.graph import CalcGraph
from felix.model.keys import HostEndpointKey, ProfileRulesKey
from felix.model.objects import HostEndpoint, ModelUpdate, ProfileRules, Rule
from felix.rules import names
from felix.rules.settings import RuleSettings
from tests.unit.packet_eval import LOCAL, DesiredState

KEY = HostEndpointKey(LOCAL, "byaddr")
RULES = ProfileRules("hep", inbound=(Rule(action="deny"),), outbound=(Rule(),))


def graph() -> tuple[CalcGraph, DesiredState]:
    g = CalcGraph(RuleSettings(LOCAL))
    g.on_update(ModelUpdate(ProfileRulesKey("hep"), RULES))
    g.on_update(ModelUpdate(KEY, HostEndpoint(KEY, None, ("10.99.0.1",), ("fd99:1::5",),
                                              ("hep",))))
    g.on_in_sync()
    state = DesiredState()
    state.apply_all(g.take_messages())
    return g, state


def step(g: CalcGraph, state: DesiredState) -> str | None:
    state.apply_all(g.take_messages())
    return state.endpoints[KEY].ifname


def dispatches_to(state: DesiredState, ifname: str) -> bool:
    body = state.chains.get((4, "filter", names.FROM_HOST_DISPATCH), ())
    return any(f"-i {ifname} " in rule for rule in body)


def test_unresolved_until_an_interface_holds_an_address() -> None:
    g, state = graph()
    assert state.endpoints[KEY].ifname is None
    g.on_interface_addrs("eth1", frozenset({"192.168.1.1"}))
    assert step(g, state) is None
    g.on_interface_addrs("fvhe0", frozenset({"10.99.0.1", "fe80::1"}))
    assert step(g, state) == "fvhe0"
    assert (4, "filter", names.endpoint_chain("fvhe0", True, True)) in state.chains
    assert dispatches_to(state, "fvhe0")
    assert state.endpoints[KEY].chains


def test_follows_the_address_and_drops_when_it_goes() -> None:
    g, state = graph()
    g.on_interface_addrs("fvhe0", frozenset({"10.99.0.1"}))
    assert step(g, state) == "fvhe0"
    # The address moves: the IPv6 one is now on another interface, the IPv4 one gone.
    g.on_interface_addrs("fvhe0", frozenset({"10.99.0.2"}))
    g.on_interface_addrs("bond0", frozenset({"fd99:1::5"}))
    assert step(g, state) == "bond0"
    assert not dispatches_to(state, "fvhe0")
    assert (4, "filter", names.endpoint_chain("fvhe0", True, True)) not in state.chains
    g.on_interface_addrs("bond0", None)
    assert step(g, state) is None
    assert not dispatches_to(state, "bond0")
    assert not state.endpoints[KEY].chains


def test_resolution_is_independent_of_event_order() -> None:
    results = []
    for order in (("a0", "b0"), ("b0", "a0")):
        g, state = graph()
        for ifname in order:
            g.on_interface_addrs(ifname, frozenset({"10.99.0.1"}))
        results.append(step(g, state))
    assert results == ["a0", "a0"]


def test_a_named_host_endpoint_ignores_addresses() -> None:
    g = CalcGraph(RuleSettings(LOCAL))
    g.on_update(ModelUpdate(ProfileRulesKey("hep"), RULES))
    g.on_update(ModelUpdate(KEY, HostEndpoint(KEY, "eth0", ("10.99.0.1",), (), ("hep",))))
    g.on_in_sync()
    state = DesiredState()
    state.apply_all(g.take_messages())
    g.on_interface_addrs("fvhe0", frozenset({"10.99.0.1"}))
    assert step(g, state) == "eth0"
    assert g.take_messages() == []
