"""CalcGraph: incrementality (message counts per kind of change), order independence of the
final state, and stream invariants on random models."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from felix.calc.graph import CalcGraph
from felix.messages import (ChainRemoved, ChainSet, EndpointRemoved, EndpointSet, IpsetDelta,
                            Message, RoutesRemoved, RoutesSet)
from felix.model.frozen import FrozenDict
from felix.model.keys import (HostEndpointKey, PolicyKey, PoolKey,
                              ProfileRulesKey, ProfileTagsKey, TierKey, WorkloadEndpointKey)
from felix.model.objects import (HostEndpoint, ModelUpdate, NatMapping, Policy, Pool, PortRange,
                                 ProfileRules, ProfileTags, Rule, Tier, WorkloadEndpoint)
from felix.model.selector import parse_selector
from felix.rules import names
from felix.rules.settings import RuleSettings
from tests.unit.packet_eval import LOCAL, DesiredState, draw_model

SETTINGS = RuleSettings(LOCAL)


def wl(i: int, host: str = LOCAL, labels: dict[str, str] | None = None,
       profiles: tuple[str, ...] = ("web",), state: str = "active",
       nat: tuple[NatMapping, ...] = ()) -> WorkloadEndpoint:
    key = WorkloadEndpointKey(host, "k8s", f"pod{i}", "eth0")
    return WorkloadEndpoint(key, f"cali{i:06x}", state, mac=None, profile_ids=profiles,  # type: ignore[arg-type]
                            labels=FrozenDict(labels or {"role": "web"}),
                            ipv4_nets=(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}/32",),
                            ipv6_nets=(f"fd00::{i:x}/128",), ipv4_nat=nat)


def up(obj: object) -> ModelUpdate:
    key = getattr(obj, "key", None)
    if isinstance(obj, ProfileRules):
        key = ProfileRulesKey(obj.profile_id)
    elif isinstance(obj, ProfileTags):
        key = ProfileTagsKey(obj.profile_id)
    elif isinstance(obj, Tier):
        key = TierKey(obj.name)
    elif isinstance(obj, Pool):
        key = PoolKey(obj.ip_version, obj.cidr)
    return ModelUpdate(key, obj)


WEB_RULES = ProfileRules("web", inbound=(Rule(protocol="tcp", dst_ports=(PortRange(80, 80),),
                                              src_tag="frontend"),),
                         outbound=(Rule(),))
DB_SEL = parse_selector('role == "db"')
POLICY = Policy(PolicyKey("t1", "p1"), parse_selector('role == "web"'), 1.0,
                inbound=(Rule(action="deny", src_selector=DB_SEL),))


def baseline(n_local: int = 40, n_remote: int = 10) -> tuple[CalcGraph, DesiredState]:
    g = CalcGraph(SETTINGS)
    for obj in [WEB_RULES, ProfileTags("web", ("frontend",)), Tier("t1", 1.0), POLICY,
                Pool("10.0.0.0/8", 4, masquerade=True)]:
        g.on_update(up(obj))
    for i in range(n_local):
        g.on_update(up(wl(i)))
    for i in range(n_remote):
        g.on_update(up(wl(1000 + i, host="other", labels={"role": "db"})))
    g.on_in_sync()
    state = DesiredState()
    state.apply_all(g.take_messages())
    assert state.in_sync
    return g, state


def kinds(msgs: list[Message]) -> list[str]:
    return sorted({type(m).__name__ for m in msgs})


def test_profile_rule_change_renders_only_that_profiles_chains() -> None:
    g, state = baseline()
    changed = ProfileRules("web", inbound=WEB_RULES.inbound + (Rule(action="deny"),),
                           outbound=WEB_RULES.outbound)
    g.on_update(up(changed))
    msgs = g.take_messages()
    assert kinds(msgs) == ["ChainSet"]
    assert {(m.ip_version, m.name) for m in msgs} == {  # type: ignore[union-attr]
        (v, names.profile_chain("web", True)) for v in (4, 6)}
    state.apply_all(msgs)


def test_burst_of_updates_to_one_object_renders_once() -> None:
    g, _ = baseline()
    for port in range(1, 60):
        g.on_update(up(ProfileRules("web", inbound=(Rule(protocol="tcp", src_tag="frontend",
                                                         dst_ports=(PortRange(port, port),)),),
                                    outbound=WEB_RULES.outbound)))
    msgs = g.take_messages()
    assert len(msgs) == 2 and all(isinstance(m, ChainSet) for m in msgs)
    assert all("--dports 59 " in m.rules[0] for m in msgs)  # type: ignore[union-attr]


def test_label_change_emits_only_ipset_deltas() -> None:
    g, state = baseline()
    remote = wl(1000, host="other", labels={"role": "db"})
    sel_set = names.selector_set(4, DB_SEL.uid)
    assert "10.0.3.232" in state.sets[(4, sel_set)]
    g.on_update(up(WorkloadEndpoint(remote.key, remote.name, "active",
                                    profile_ids=remote.profile_ids,
                                    labels=FrozenDict({"role": "cache"}),
                                    ipv4_nets=remote.ipv4_nets, ipv6_nets=remote.ipv6_nets)))
    msgs = g.take_messages()
    assert kinds(msgs) == ["IpsetDelta"]
    assert {(m.ip_version, m.name, frozenset(m.removed)) for m in msgs} == {  # type: ignore[union-attr]
        (4, sel_set, frozenset({"10.0.3.232"})),
        (6, names.selector_set(6, DB_SEL.uid), frozenset({"fd00::3e8"}))}
    state.apply_all(msgs)
    assert "10.0.3.232" not in state.sets[(4, sel_set)]


def test_adding_an_endpoint_touches_its_chains_and_one_dispatch_branch() -> None:
    g, state = baseline(n_local=300)
    before = dict(state.chains)
    g.on_update(up(wl(5000)))
    msgs = g.take_messages()
    state.apply_all(msgs)
    # Its profile carries tag "frontend": its addresses join that set.
    assert kinds(msgs) == ["ChainSet", "EndpointSet", "IpsetDelta", "RoutesSet"]
    assert {(m.name, frozenset(m.added)) for m in msgs if isinstance(m, IpsetDelta)} == {
        ("cali4-t:frontend", frozenset({"10.0.19.136"})),
        ("cali6-t:frontend", frozenset({"fd00::1388"}))}
    chain_names = {(m.ip_version, m.name) for m in msgs if isinstance(m, ChainSet)}
    own = {names.endpoint_chain("cali001388", d, False) for d in (True, False)}
    dispatch = {n for _, n in chain_names} - own
    assert {n for _, n in chain_names} >= own
    # The path from each dispatch root to the new leaf: at most the tree depth, never the
    # other 300 endpoints' branches.
    assert 2 <= len(dispatch) <= 6, dispatch
    n_dispatch_chains = sum(1 for (v, t, n) in before if v == 4 and (
        n.startswith(("cali-dt-", "cali-df-")) or "dispatch" in n))
    assert n_dispatch_chains > 10
    assert sum(1 for m in msgs if isinstance(m, RoutesSet)) == 2
    assert sum(1 for m in msgs if isinstance(m, EndpointSet)) == 1


def test_removing_an_endpoint_removes_its_state_in_reverse_order() -> None:
    g, state = baseline()
    ep = wl(3)
    g.on_update(ModelUpdate(ep.key, None))
    msgs = g.take_messages()
    state.apply_all(msgs)  # strict: chains removed only after the dispatch stops jumping
    assert EndpointRemoved(ep.key) in msgs
    assert RoutesRemoved(4, ep.name) in msgs and RoutesRemoved(6, ep.name) in msgs
    removed = {m.name for m in msgs if isinstance(m, ChainRemoved)}
    assert removed == {names.endpoint_chain(ep.name, d, False) for d in (True, False)}
    first_removal = min(i for i, m in enumerate(msgs) if isinstance(m, ChainRemoved))
    last_set = max(i for i, m in enumerate(msgs) if isinstance(m, ChainSet))
    assert last_set < first_removal


def test_last_user_gone_removes_policy_profile_and_sets() -> None:
    g, state = baseline(n_local=2, n_remote=1)
    for i in range(2):
        g.on_update(ModelUpdate(wl(i).key, None))
    state.apply_all(g.take_messages())
    assert not any(n.startswith(("cali-pi-", "cali-po-", "cali-pri-", "cali-pro-"))
                   for _, _, n in state.chains)
    assert {n for _, n in state.sets} == {names.all_pools_set(v) for v in (4, 6)} | {
        names.masq_pools_set(v) for v in (4, 6)}
    assert g.stats.active_local_policies == 0 and g.stats.active_local_selectors == 0
    assert g.stats.cluster_num_workload_endpoints == 1


def test_invalid_update_is_absent_and_inactive_endpoint_drops() -> None:
    g, state = baseline(n_local=2)
    g.on_update(ModelUpdate(ProfileRulesKey("web"), None, error="bad rule"))
    g.on_update(up(wl(0, state="inactive")))
    state.apply_all(g.take_messages())
    assert (4, "filter", names.profile_chain("web", True)) not in state.chains
    assert state.chains[(4, "filter", "cali-tw-cali000000")] == ("-j DROP",)
    status = state.endpoints[wl(0).key]
    assert not status.active


def test_tier_without_metadata_is_ignored() -> None:
    g, state = baseline(n_local=2)
    g.on_update(ModelUpdate(TierKey("t1"), None))
    state.apply_all(g.take_messages())
    assert not any(n.startswith("cali-pi-") for _, _, n in state.chains)
    assert all("cali-pi-" not in r for (_, _, n), rules in state.chains.items() for r in rules)


def test_floating_ips_routes_and_pools() -> None:
    g, state = baseline(n_local=1)
    g.on_update(up(wl(0, nat=(NatMapping("10.0.0.0", "172.18.0.9"),))))
    g.on_update(up(Pool("fd00::/64", 6)))
    state.apply_all(g.take_messages())
    assert state.routes[(4, "cali000000")].dests == {"10.0.0.0/32", "172.18.0.9/32"}
    assert state.chains[(4, "nat", names.FIP_DNAT)] == (
        "-d 172.18.0.9/32 -j DNAT --to-destination 10.0.0.0",)
    assert state.sets[(4, names.masq_pools_set(4))] == {"10.0.0.0/8"}
    assert state.sets[(6, names.all_pools_set(6))] == {"fd00::/64"}
    assert state.sets[(6, names.masq_pools_set(6))] == set()


def test_host_endpoint_chains_and_stats() -> None:
    g, state = baseline(n_local=1)
    hk = HostEndpointKey(LOCAL, "eth0")
    g.on_update(ModelUpdate(hk, HostEndpoint(hk, "eth0", ("192.168.0.1",), (), ("web",),
                                             FrozenDict({"role": "db"}))))
    hk2 = HostEndpointKey(LOCAL, "byaddr")
    g.on_update(ModelUpdate(hk2, HostEndpoint(hk2, None, ("192.168.0.2",))))
    state.apply_all(g.take_messages())
    assert (4, "filter", "cali-fh-eth0") in state.chains
    assert (4, "filter", "cali-th-eth0") in state.chains
    assert "192.168.0.1" in state.sets[(4, names.selector_set(4, DB_SEL.uid))]
    assert state.endpoints[hk2].ifname is None and not state.endpoints[hk2].chains
    s = g.stats
    assert (s.cluster_num_host_endpoints, s.cluster_num_hosts) == (2, 2)


# --- order independence -------------------------------------------------------------------


def _final(updates: list[ModelUpdate], batches: list[int]) -> tuple[object, ...]:
    g = CalcGraph(SETTINGS)
    state = DesiredState()
    cut = set(batches)
    for i, u in enumerate(updates):
        g.on_update(u)
        if i in cut:
            state.apply_all(g.take_messages())
    g.on_in_sync()
    state.apply_all(g.take_messages())
    return state.snapshot()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_final_state_independent_of_update_order(data: st.DataObject) -> None:
    _, final_updates = data.draw(st.composite(lambda draw: draw_model(draw))())
    _, other_updates = data.draw(st.composite(lambda draw: draw_model(draw))())
    reference = _final(final_updates, [])
    rnd = random.Random(data.draw(st.integers(0, 2**32)))
    # Noise: values the keys had before, transient invalid values, objects that came and went.
    final_keys = {u.key for u in final_updates}
    noise = [u for u in other_updates]
    noise += [ModelUpdate(u.key, None, error="transiently invalid") for u in final_updates
              if rnd.random() < 0.3]
    gone = [ModelUpdate(u.key, None) for u in other_updates if u.key not in final_keys]
    # Random interleaving in which each key's final value comes after all its noise: the
    # datastore's state is what it ends with.
    when: dict[object, float] = {}
    timed: list[tuple[float, int, ModelUpdate]] = []
    for i, u in enumerate(noise):
        t = rnd.random()
        when[u.key] = max(when.get(u.key, 0.0), t)
        timed.append((t, i, u))
    for i, u in enumerate(final_updates):
        t = rnd.uniform(when.get(u.key, 0.0), 1.0)
        timed.append((t, len(noise) + i, u))
    ordered = [u for _, _, u in sorted(timed, key=lambda x: (x[0], x[1]))] + gone
    last = {u.key: u for u in final_updates}
    batches = sorted(rnd.sample(range(len(ordered)), k=min(len(ordered), rnd.randint(0, 5))))
    assert _final(ordered, batches) == reference
    assert _final(ordered, list(range(len(ordered)))) == reference  # one update per batch
    # Squashed and reversed: only the final values, in reverse order.
    assert _final(list(reversed(list(last.values()))), []) == reference


# --- invariants ---------------------------------------------------------------------------


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_stream_invariants_on_random_models(data: st.DataObject) -> None:
    model, updates = data.draw(st.composite(lambda draw: draw_model(draw))())
    g = CalcGraph(SETTINGS)
    state = DesiredState()  # strict: targets and sets exist before use, no dangling removals
    for chunk in (updates[: len(updates) // 2], updates[len(updates) // 2:]):
        for u in chunk:
            g.on_update(u)
        state.apply_all(g.take_messages())
    # Every local endpoint's interface has both chains per family, and the dispatch reaches
    # them; every chain name and set name is within the kernel's limits.
    for key, ep in model.endpoints.items():
        if key.hostname == LOCAL and isinstance(ep, WorkloadEndpoint):  # type: ignore[attr-defined]
            for v in (4, 6):
                for inbound in (True, False):
                    assert (v, "filter", names.endpoint_chain(ep.name, inbound, False)) \
                        in state.chains
        elif key.hostname == LOCAL and ep.name is not None:  # type: ignore[attr-defined]
            for v in (4, 6):
                for inbound in (True, False):
                    assert (v, "filter", names.endpoint_chain(ep.name, inbound, True)) \
                        in state.chains
    for v, t, n in state.chains:
        assert n.startswith("cali-") and len(n) <= 28
    for v, n in state.sets:
        assert n.startswith(f"cali{v}") and len(n) <= 31
    # Nothing for objects that are absent from the model (policies of tiers without
    # metadata, profiles without rules).
    rendered_policies = {n for _, _, n in state.chains if n.startswith(("cali-pi-", "cali-po-"))}
    allowed = {names.policy_chain(k, d) for k in model.policies for d in (True, False)}  # type: ignore[arg-type]
    assert rendered_policies <= allowed
    rendered_profiles = {n for _, _, n in state.chains if n.startswith(("cali-pri-", "cali-pro-"))}
    assert rendered_profiles <= {names.profile_chain(p, d) for p in model.profile_rules
                                 for d in (True, False)}
    # Removing everything leaves only the static skeleton.
    for u in updates:
        g.on_update(ModelUpdate(u.key, None))
    state.apply_all(g.take_messages())
    assert not state.routes and not state.endpoints
    assert all(n.startswith("cali") and "-pools" in n for _, n in state.sets)
    assert not any(n.startswith(("cali-tw-", "cali-fw-", "cali-p")) for _, _, n in state.chains)


def test_missing_or_invalid_profile_ends_the_profile_list_fail_closed() -> None:
    """[guard, open]: while guard is missing or invalid, open must not be consulted (guard's
    denies would otherwise silently turn into open's allows)."""
    g = CalcGraph(SETTINGS)
    g.on_update(up(ProfileRules("open", inbound=(Rule(),), outbound=(Rule(),))))
    g.on_update(up(wl(1, profiles=("guard", "open"))))
    g.on_in_sync()
    state = DesiredState()
    state.apply_all(g.take_messages())
    tw = state.chains[(4, "filter", "cali-tw-cali000001")]
    open_chain = names.profile_chain("open", inbound=True)
    assert not any(open_chain in r for r in tw), tw
    # guard arrives: both profiles are consulted, in order.
    g.on_update(up(ProfileRules("guard", inbound=(Rule(action="deny", protocol="udp"),),
                                outbound=(Rule(),))))
    state.apply_all(g.take_messages())
    tw = state.chains[(4, "filter", "cali-tw-cali000001")]
    guard_chain = names.profile_chain("guard", inbound=True)
    jumps = [r for r in tw if open_chain in r or guard_chain in r]
    assert [guard_chain in j for j in jumps][:1] == [True] and any(open_chain in j for j in jumps)
    # guard becomes invalid (absent with an error): open is cut off again.
    g.on_update(ModelUpdate(ProfileRulesKey("guard"), None, error="bad rule"))
    state.apply_all(g.take_messages())
    tw = state.chains[(4, "filter", "cali-tw-cali000001")]
    assert not any(open_chain in r for r in tw), tw
