"""The calculation graph: datastore model updates in, desired-dataplane deltas out.

Pure: no I/O, no clocks. ``on_update`` only records the new model state, updates the indexes
and marks what depends on it dirty; ``take_messages`` renders what is dirty, diffs it against
what was emitted before and returns the deltas in dependency order:

  ipset creations/additions → chains (targets before jumps) → hooks → routes → endpoints
  → endpoint removals → route removals → chain removals (jumps before targets) → ipset removals

Only endpoints under ``settings.hostname`` get chains, routes and EndpointSet messages; every
endpoint in the cluster contributes its addresses to the tag/selector sets it belongs to.
A policy is active while its tier has metadata and its selector matches a local endpoint; a
profile while a local endpoint uses it and its rules exist. Only active policies and profiles
are rendered, and only their rules' sets exist.
"""

from __future__ import annotations

import bisect
from typing import Callable, Hashable, Literal, Union

from felix.calc.chainstore import ChainKey, ChainStore
from felix.calc.ipsets import FamilyRef, IpsetCalculator
from felix.calc.labelindex import LabelIndex
from felix.calc.members import endpoint_members, member
from felix.calc.ordering import policy_sort_key, tier_sort_key
from felix.calc.stats import CalcStats
from felix.messages import (EndpointRemoved, EndpointSet, HookSet, InSync, Message,
                            RoutesRemoved, RoutesSet)
from felix.model.keys import (HostEndpointKey, HostIPKey, PolicyKey, PoolKey, ProfileLabelsKey,
                              ProfileRulesKey, ProfileTagsKey, TierKey, WorkloadEndpointKey)
from felix.model.objects import (HostEndpoint, HostIP, ModelUpdate, Policy, Pool, ProfileLabels,
                                 ProfileRules, ProfileTags, Rule, Tier, WorkloadEndpoint)
from felix.model.selector import Selector
from felix.rules import names, static
from felix.rules.endpoint import EndpointPolicy
from felix.rules.renderer import RuleRenderer, make_renderers
from felix.rules.settings import RuleSettings

EndpointKey = Union[WorkloadEndpointKey, HostEndpointKey]
Endpoint = Union[WorkloadEndpoint, HostEndpoint]
IfaceKind = Literal["wl", "host"]
Iface = tuple[IfaceKind, str]


def _rule_selectors(rules: tuple[Rule, ...]) -> dict[str, Selector]:
    out: dict[str, Selector] = {}
    for r in rules:
        for sel in (r.src_selector, r.not_src_selector, r.dst_selector, r.not_dst_selector):
            if sel is not None:
                out[sel.uid] = sel
    return out


class CalcGraph:
    def __init__(self, settings: RuleSettings) -> None:
        self._settings = settings
        self._renderers: dict[int, RuleRenderer] = make_renderers(settings)
        self._versions = tuple(self._renderers)

        # The model, valid objects only.
        self._endpoints: dict[EndpointKey, Endpoint] = {}
        self._profile_rules: dict[str, ProfileRules] = {}
        self._tiers: dict[str, Tier] = {}
        self._policies: dict[PolicyKey, Policy] = {}
        self._tier_policies: dict[str, set[PolicyKey]] = {}
        self._pools: dict[PoolKey, Pool] = {}
        self._host_ips: dict[str, str] = {}

        # Local endpoints with an interface, and what applies to them.
        self._policy_index = LabelIndex(self._on_policy_match, self._on_policy_unmatch)
        self._policy_eps: dict[PolicyKey, set[EndpointKey]] = {}
        self._ep_policies: dict[EndpointKey, set[PolicyKey]] = {}
        self._profile_users: dict[str, set[EndpointKey]] = {}  # local endpoints only
        self._iface_eps: dict[Iface, set[EndpointKey]] = {}
        self._ep_iface: dict[EndpointKey, Iface] = {}  # local endpoints with an interface
        # The names in _iface_eps by kind, kept sorted: the dispatch trees are re-rendered on
        # every interface add/remove, and collecting and sorting the names each time was most
        # of that cost at 1,000 endpoints.
        self._iface_names: dict[IfaceKind, list[str]] = {"wl": [], "host": []}
        # Addresses of host interfaces (from the dataplane's interface monitor): a host
        # endpoint without a name applies to the interface holding one of its addresses.
        self._iface_addrs: dict[str, frozenset[str]] = {}
        self._unnamed_heps: set[EndpointKey] = set()  # local ones

        self._ipsets = IpsetCalculator(self._versions)
        self._chains = ChainStore()

        self._dirty_policies: set[PolicyKey] = set()
        self._dirty_profiles: set[str] = set()
        self._dirty_eps: set[EndpointKey] = set()
        self._dirty_ifaces: set[Iface] = set()
        self._dispatch_dirty = True
        self._fip_dirty = True
        self._pools_dirty = True
        self._hosts_dirty = True
        self._first = True
        self._in_sync_pending = False

        self._emitted_routes: dict[tuple[int, str], RoutesSet] = {}
        self._emitted_eps: dict[EndpointKey, EndpointSet] = {}
        self._active_policies: set[PolicyKey] = set()
        # The policy/profile object each rule owner's chains were last rendered from.
        self._rendered: dict[Hashable, object] = {}

    # --- input --------------------------------------------------------------------------

    def on_update(self, update: ModelUpdate) -> None:
        key, value = update.key, update.value
        if isinstance(key, (WorkloadEndpointKey, HostEndpointKey)):
            ok = isinstance(value, WorkloadEndpoint if isinstance(key, WorkloadEndpointKey)
                            else HostEndpoint)
            self._on_endpoint(key, value if ok else None)  # type: ignore[arg-type]
        elif isinstance(key, ProfileRulesKey):
            self._on_profile_rules(key.profile_id,
                                   value if isinstance(value, ProfileRules) else None)
        elif isinstance(key, ProfileTagsKey):
            self._ipsets.update_profile_tags(
                key.profile_id, value.tags if isinstance(value, ProfileTags) else None)
        elif isinstance(key, ProfileLabelsKey):
            labels = value.labels if isinstance(value, ProfileLabels) else None
            self._policy_index.update_parent_labels(key.profile_id, labels)
            self._ipsets.update_profile_labels(key.profile_id, labels)
        elif isinstance(key, TierKey):
            self._on_tier(key.tier, value if isinstance(value, Tier) else None)
        elif isinstance(key, PolicyKey):
            self._on_policy(key, value if isinstance(value, Policy) else None)
        elif isinstance(key, PoolKey):
            if isinstance(value, Pool):
                self._pools[key] = value
            else:
                self._pools.pop(key, None)
            self._pools_dirty = True
        elif isinstance(key, HostIPKey):
            if isinstance(value, HostIP):
                self._host_ips[key.hostname] = value.ip
            else:
                self._host_ips.pop(key.hostname, None)
            self._hosts_dirty = True
        # Ready and config keys are the caller's business.

    def on_in_sync(self) -> None:
        self._in_sync_pending = True

    def on_interface_addrs(self, ifname: str, addrs: frozenset[str] | None) -> None:
        """A host interface's current addresses; None or empty when it is gone."""
        if addrs:
            self._iface_addrs[ifname] = frozenset(addrs)
        elif self._iface_addrs.pop(ifname, None) is None:
            return
        for key in sorted(self._unnamed_heps, key=repr):
            ep = self._endpoints[key]
            if self._resolve(ep) != self._ep_iface.get(key):
                self._on_endpoint(key, ep, reresolve=True)

    def _resolve(self, ep: Endpoint) -> Iface | None:
        if isinstance(ep, WorkloadEndpoint):
            return ("wl", ep.name)
        if ep.name is not None:
            return ("host", ep.name)
        wanted = set(ep.expected_ipv4_addrs) | set(ep.expected_ipv6_addrs)
        # The first by name, so the result does not depend on the order addresses appeared.
        for ifname in sorted(self._iface_addrs):
            if self._iface_addrs[ifname] & wanted:
                return ("host", ifname)
        return None

    def _is_local(self, key: EndpointKey) -> bool:
        return key.hostname == self._settings.hostname

    def _on_endpoint(self, key: EndpointKey, ep: Endpoint | None,
                     reresolve: bool = False) -> None:
        """``reresolve``: same data, but its interface may have changed."""
        old = self._endpoints.get(key)
        if old == ep and not reresolve:
            return
        if ep is None:
            del self._endpoints[key]
            self._ipsets.remove_endpoint(key)
        elif not reresolve:
            self._endpoints[key] = ep
            ips = {v: endpoint_members(ep, v) for v in self._versions}
            self._ipsets.update_endpoint(key, ep.labels, ep.profile_ids, ips)
        if not self._is_local(key):
            return
        if isinstance(ep, HostEndpoint) and ep.name is None:
            self._unnamed_heps.add(key)
        else:
            self._unnamed_heps.discard(key)
        self._dirty_eps.add(key)
        old_iface = self._ep_iface.get(key)
        new_iface = self._resolve(ep) if ep is not None else None
        if new_iface is None:
            self._ep_iface.pop(key, None)
        else:
            self._ep_iface[key] = new_iface
        if old_iface != new_iface:
            self._dispatch_dirty = True
            if old_iface is not None:
                self._dirty_ifaces.add(old_iface)
                _discard(self._iface_eps, old_iface, key)
                if old_iface not in self._iface_eps:
                    names_ = self._iface_names[old_iface[0]]
                    del names_[bisect.bisect_left(names_, old_iface[1])]
            if new_iface is not None:
                if new_iface not in self._iface_eps:
                    bisect.insort(self._iface_names[new_iface[0]], new_iface[1])
                self._iface_eps.setdefault(new_iface, set()).add(key)
        if new_iface is not None:
            self._dirty_ifaces.add(new_iface)
            assert ep is not None
            self._policy_index.update_item(key, ep.labels, ep.profile_ids)
        else:
            self._policy_index.remove_item(key)
        old_profiles = set(old.profile_ids) if old is not None and old_iface else set()
        new_profiles = set(ep.profile_ids) if ep is not None and new_iface else set()
        for pid in old_profiles - new_profiles:
            _discard(self._profile_users, pid, key)
            self._dirty_profiles.add(pid)
        for pid in new_profiles - old_profiles:
            self._profile_users.setdefault(pid, set()).add(key)
            self._dirty_profiles.add(pid)
        if any(isinstance(e, WorkloadEndpoint) and e.nat(v)
               for e in (old, ep) for v in self._versions):
            self._fip_dirty = True

    def _on_profile_rules(self, pid: str, rules: ProfileRules | None) -> None:
        old = self._profile_rules.get(pid)
        if old == rules:
            return
        if rules is None:
            del self._profile_rules[pid]
        else:
            self._profile_rules[pid] = rules
        self._dirty_profiles.add(pid)
        if (old is None) != (rules is None):
            # Endpoint chains jump only to profiles that exist.
            self._dirty_eps.update(self._profile_users.get(pid, ()))

    def _on_tier(self, name: str, tier: Tier | None) -> None:
        old = self._tiers.get(name)
        if old == tier:
            return
        if tier is None:
            del self._tiers[name]
        else:
            self._tiers[name] = tier
        for pkey in self._tier_policies.get(name, ()):
            self._dirty_policies.add(pkey)
            self._dirty_eps.update(self._policy_eps.get(pkey, ()))

    def _on_policy(self, key: PolicyKey, policy: Policy | None) -> None:
        old = self._policies.get(key)
        if old == policy:
            return
        self._dirty_policies.add(key)
        if policy is None:
            del self._policies[key]
            _discard(self._tier_policies, key.tier, key)
            self._policy_index.remove_selector(key)
        else:
            self._policies[key] = policy
            self._tier_policies.setdefault(key.tier, set()).add(key)
            self._policy_index.update_selector(key, policy.selector)
        if old is None or policy is None or old.order != policy.order:
            self._dirty_eps.update(self._policy_eps.get(key, ()))

    def _on_policy_match(self, pkey: Hashable, ep: Hashable) -> None:
        assert isinstance(pkey, PolicyKey)
        self._policy_eps.setdefault(pkey, set()).add(ep)  # type: ignore[arg-type]
        self._ep_policies.setdefault(ep, set()).add(pkey)  # type: ignore[arg-type]
        self._dirty_eps.add(ep)  # type: ignore[arg-type]
        self._dirty_policies.add(pkey)

    def _on_policy_unmatch(self, pkey: Hashable, ep: Hashable) -> None:
        assert isinstance(pkey, PolicyKey)
        _discard(self._policy_eps, pkey, ep)
        _discard(self._ep_policies, ep, pkey)
        self._dirty_eps.add(ep)  # type: ignore[arg-type]
        self._dirty_policies.add(pkey)

    # --- output -------------------------------------------------------------------------

    def take_messages(self) -> list[Message]:
        self._update_policies()
        self._update_profiles()
        for key in self._dirty_eps:
            iface = self._ep_iface.get(key)
            if iface is not None:
                self._dirty_ifaces.add(iface)
        ep_msgs: list[Message] = []
        ep_removals: list[Message] = []
        routes: list[Message] = []
        route_removals: list[Message] = []
        status_dirty: set[EndpointKey] = set(self._dirty_eps)
        for iface in sorted(self._dirty_ifaces):
            status_dirty.update(self._iface_eps.get(iface, ()))
            self._render_iface(iface, routes, route_removals)
        self._dirty_ifaces.clear()
        self._dirty_eps.clear()
        for key in sorted(status_dirty, key=repr):
            self._endpoint_status(key, ep_msgs, ep_removals)
        self._update_globals()

        set_ups, set_downs = self._ipsets.take_messages()
        chain_sets, chain_removes = self._chains.flush()
        hooks: list[Message] = []
        if self._first:
            self._first = False
            hooks = [HookSet(v, table, kernel, (f"-j {ours}",))  # type: ignore[arg-type]
                     for v in self._versions for table, kernel, ours in static.HOOKS]
        out: list[Message] = [*set_ups, *chain_sets, *hooks, *routes, *ep_msgs, *ep_removals,
                              *route_removals, *chain_removes, *set_downs]
        if self._in_sync_pending:
            self._in_sync_pending = False
            out.append(InSync())
        return out

    def _update_policies(self) -> None:
        for key in sorted(self._dirty_policies):
            policy = self._policies.get(key)
            active = (policy is not None and key.tier in self._tiers
                      and bool(self._policy_eps.get(key)))
            owner = ("policy", key)
            if active:
                assert policy is not None
                self._active_policies.add(key)
                # Most dirty marks are membership changes (an endpoint matched or unmatched):
                # the chains only depend on the policy itself, so don't re-render them.
                if self._rendered.get(owner) != policy:
                    self._set_rule_owner(owner, policy.inbound + policy.outbound,
                                         lambda r: r.policy_chains(policy))
                    self._rendered[owner] = policy
            else:
                self._active_policies.discard(key)
                self._clear_owner(owner)
        self._dirty_policies.clear()

    def _update_profiles(self) -> None:
        for pid in sorted(self._dirty_profiles):
            profile = self._profile_rules.get(pid)
            owner = ("profile", pid)
            if profile is not None and self._profile_users.get(pid):
                if self._rendered.get(owner) != profile:  # as for policies
                    self._set_rule_owner(owner, profile.inbound + profile.outbound,
                                         lambda r: r.profile_chains(profile))
                    self._rendered[owner] = profile
            else:
                self._clear_owner(owner)
        self._dirty_profiles.clear()

    def _set_rule_owner(self, owner: Hashable, rules: tuple[Rule, ...],
                        render: Callable[[RuleRenderer], dict[str, tuple[str, ...]]]) -> None:
        chains: dict[ChainKey, tuple[str, ...]] = {}
        refs: set[FamilyRef] = set()
        for v, r in self._renderers.items():
            for name, body in render(r).items():
                chains[(v, "filter", name)] = body
            refs.update((v, ref) for ref in r.set_refs(rules, ()))
        # Sets first: their refs must be counted before the chains naming them are emitted.
        self._ipsets.set_owner_refs(owner, frozenset(refs), _rule_selectors(rules))
        self._chains.set_owner(owner, chains)

    def _clear_owner(self, owner: Hashable) -> None:
        self._rendered.pop(owner, None)
        self._ipsets.set_owner_refs(owner, frozenset(), {})
        self._chains.set_owner(owner, {})

    def _winner(self, iface: Iface) -> EndpointKey | None:
        keys = self._iface_eps.get(iface)
        # Two endpoints claiming one interface: a deterministic one wins, whatever the
        # update order; the other is reported unprogrammed.
        return min(keys, key=repr) if keys else None

    def _endpoint_policy(self, key: EndpointKey, ep: Endpoint) -> EndpointPolicy:
        by_tier: dict[str, list[Policy]] = {}
        for pkey in self._ep_policies.get(key, ()):
            policy = self._policies.get(pkey)
            if policy is not None and pkey.tier in self._tiers:
                by_tier.setdefault(pkey.tier, []).append(policy)
        tiers = sorted(by_tier, key=lambda t: tier_sort_key(self._tiers[t]))
        seen: set[str] = set()
        profiles = []
        for pid in ep.profile_ids:
            if pid not in self._profile_rules:
                # A missing or invalid profile allows nothing, and the profiles after it must
                # not open what it may have denied: the endpoint's profile list ends here, so
                # its traffic meets the final drop (fail closed).
                break
            if pid not in seen:
                seen.add(pid)
                profiles.append(pid)
        return EndpointPolicy(
            tiers=tuple(tuple(p.key for p in sorted(by_tier[t], key=policy_sort_key))
                        for t in tiers),
            profile_ids=tuple(profiles))

    def _render_iface(self, iface: Iface, routes: list[Message],
                      route_removals: list[Message]) -> None:
        kind, ifname = iface
        key = self._winner(iface)
        chains: dict[ChainKey, tuple[str, ...]] = {}
        want_routes: dict[int, RoutesSet] = {}
        if key is not None:
            ep = self._endpoints[key]
            policy = self._endpoint_policy(key, ep)
            for v, r in self._renderers.items():
                if isinstance(ep, WorkloadEndpoint):
                    body = r.workload_chains(ifname, ep.state == "active", policy, ep.nets(v),
                                             ep.mac)
                    dests = frozenset(ep.nets(v)) | frozenset(
                        f"{m.ext_ip}/{32 if v == 4 else 128}" for m in ep.nat(v))
                    if dests:
                        want_routes[v] = RoutesSet(v, ifname, dests, ep.mac)
                else:
                    body = r.host_endpoint_chains(ifname, policy)
                chains.update({(v, "filter", n): rules for n, rules in body.items()})
        self._chains.set_owner(("iface", iface), chains)
        if kind != "wl":
            return
        for v in self._versions:
            new = want_routes.get(v)
            old = self._emitted_routes.get((v, ifname))
            if new == old:
                continue
            if new is None:
                del self._emitted_routes[(v, ifname)]
                route_removals.append(RoutesRemoved(v, ifname))
            else:
                self._emitted_routes[(v, ifname)] = new
                routes.append(new)

    def _endpoint_status(self, key: EndpointKey, msgs: list[Message],
                         removals: list[Message]) -> None:
        ep = self._endpoints.get(key) if self._is_local(key) else None
        old = self._emitted_eps.get(key)
        if ep is None:
            if old is not None:
                del self._emitted_eps[key]
                removals.append(EndpointRemoved(key))
            return
        iface = self._ep_iface.get(key)
        chains: frozenset[ChainKey] = frozenset()
        active = not (isinstance(ep, WorkloadEndpoint) and ep.state != "active")
        if iface is not None:
            if self._winner(iface) == key:
                owned = self._chains.owned(("iface", iface))
                policy = self._endpoint_policy(key, ep)
                refs: set[ChainKey] = set(owned)
                for v in self._versions:
                    for inbound in (True, False):
                        refs.update((v, "filter", names.policy_chain(p, inbound))
                                    for tier in policy.tiers for p in tier)
                        refs.update((v, "filter", names.profile_chain(p, inbound))
                                    for p in policy.profile_ids)
                chains = frozenset(self._chains.canonical(k) for k in refs)
            else:
                active = False
        new = EndpointSet(key, iface[1] if iface else None, active, chains)
        if new != old:
            self._emitted_eps[key] = new
            msgs.append(new)

    def _update_globals(self) -> None:
        if self._dispatch_dirty:
            self._dispatch_dirty = False
            wl = self._iface_names["wl"]
            hosts = self._iface_names["host"]
            chains: dict[ChainKey, tuple[str, ...]] = {}
            for v, r in self._renderers.items():
                chains.update({(v, "filter", n): body
                               for n, body in r.dispatch_chains(wl, hosts).items()})
            self._chains.set_owner("dispatch", chains)
        if self._fip_dirty:
            self._fip_dirty = False
            chains = {}
            for v, r in self._renderers.items():
                mappings = []
                for (kind, _), eps in self._iface_eps.items():
                    key = min(eps, key=repr) if kind == "wl" and eps else None
                    ep = self._endpoints.get(key) if key is not None else None
                    if isinstance(ep, WorkloadEndpoint):
                        mappings += [(m.int_ip, m.ext_ip) for m in ep.nat(v)]
                chains.update({(v, "nat", n): body for n, body in r.fip_chains(mappings).items()})
            self._chains.set_owner("fip", chains)
        if self._first:
            chains = {}
            for v, r in self._renderers.items():
                chains.update({(v, "filter", n): b for n, b in r.static_filter_chains().items()})
                chains.update({(v, "nat", n): b for n, b in r.static_nat_chains().items()})
            self._chains.set_owner("static", chains)
        if self._pools_dirty:
            self._pools_dirty = False
            for v in self._versions:
                pools = [p for p in self._pools.values() if p.ip_version == v]
                self._ipsets.set_fixed(v, names.all_pools_set(v),
                                       frozenset(member(p.cidr) for p in pools))
                self._ipsets.set_fixed(v, names.masq_pools_set(v),
                                       frozenset(member(p.cidr) for p in pools if p.masquerade))
        if self._hosts_dirty and self._settings.ipip_enabled:
            self._hosts_dirty = False
            self._ipsets.set_fixed(4, names.all_hosts_set(4), frozenset(
                member(ip) for ip in self._host_ips.values() if ":" not in ip))

    # --- stats --------------------------------------------------------------------------

    @property
    def stats(self) -> CalcStats:
        local = [e for k, e in self._endpoints.items() if self._is_local(k)]
        active_refs = self._ipsets.active_refs
        hosts = {k.hostname for k in self._endpoints} | set(self._host_ips)
        return CalcStats(
            active_local_endpoints=sum(
                1 for e in local if not (isinstance(e, WorkloadEndpoint)
                                         and e.state != "active")),
            active_local_policies=len(self._active_policies),
            active_local_selectors=sum(1 for kind, _ in active_refs if kind == "selector"),
            active_local_tags=sum(1 for kind, _ in active_refs if kind == "tag"),
            cluster_num_hosts=len(hosts),
            cluster_num_workload_endpoints=sum(
                1 for k in self._endpoints if isinstance(k, WorkloadEndpointKey)),
            cluster_num_host_endpoints=sum(
                1 for k in self._endpoints if isinstance(k, HostEndpointKey)),
        )


def _discard(index: dict, key: object, value: object) -> None:  # type: ignore[type-arg]
    s = index.get(key)
    if s is not None:
        s.discard(value)
        if not s:
            del index[key]
