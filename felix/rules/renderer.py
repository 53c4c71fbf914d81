"""One renderer per IP family, built by one factory: everything family-specific is a parameter
(``ip_version``), never a copy."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterable

from felix.model.objects import Policy, ProfileRules, Rule
from felix.rules import dispatch, names, static
from felix.rules.actions import drop_rules
from felix.rules.endpoint import EndpointPolicy, render_endpoint_chain
from felix.rules.marks import Marks
from felix.rules.matches import SetRef, referenced_sets
from felix.rules.policy import render_rule_list
from felix.rules.settings import RuleSettings

Chains = dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class RuleRenderer:
    settings: RuleSettings
    ip_version: int
    marks: Marks = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "marks", Marks.from_mask(self.settings.mark_mask))

    def _rules(self, rules: Iterable[Rule], is_profile: bool) -> tuple[str, ...]:
        return render_rule_list(rules, self.ip_version, self.marks,
                                self.settings.drop_action_override, is_profile)

    def policy_chains(self, policy: Policy) -> Chains:
        return {names.policy_chain(policy.key, True): self._rules(policy.inbound, False),
                names.policy_chain(policy.key, False): self._rules(policy.outbound, False)}

    def profile_chains(self, profile: ProfileRules) -> Chains:
        pid = profile.profile_id
        return {names.profile_chain(pid, True): self._rules(profile.inbound, True),
                names.profile_chain(pid, False): self._rules(profile.outbound, True)}

    def set_refs(self, inbound: Iterable[Rule], outbound: Iterable[Rule]) -> set[SetRef]:
        return referenced_sets(list(inbound) + list(outbound), self.ip_version)

    def workload_chains(self, ifname: str, active: bool, policy: EndpointPolicy,
                        nets: tuple[str, ...], mac: str | None) -> Chains:
        drop = self.settings.drop_action_override
        return {
            names.endpoint_chain(ifname, True, False): render_endpoint_chain(
                policy, True, active, self.marks, drop, None, None),
            names.endpoint_chain(ifname, False, False): render_endpoint_chain(
                policy, False, active, self.marks, drop, nets, mac),
        }

    def host_endpoint_chains(self, ifname: str, policy: EndpointPolicy) -> Chains:
        drop = self.settings.drop_action_override
        return {
            names.endpoint_chain(ifname, inbound, True): render_endpoint_chain(
                policy, inbound, True, self.marks, drop, None, None)
            for inbound in (True, False)}

    def dispatch_chains(self, workload_ifnames: Iterable[str],
                        host_ifnames: Iterable[str]) -> Chains:
        wl = sorted(workload_ifnames)
        hosts = sorted(host_ifnames)
        drop = drop_rules("", self.settings.drop_action_override)
        chains: Chains = {}
        for root, ifnames, outgoing, inbound, host, default in (
                (names.TO_WL_DISPATCH, wl, True, True, False, drop),
                (names.FROM_WL_DISPATCH, wl, False, False, False, drop),
                # Interfaces that are not host endpoints are not policed.
                (names.FROM_HOST_DISPATCH, hosts, False, True, True, ["-j RETURN"]),
                (names.TO_HOST_DISPATCH, hosts, True, False, True, ["-j RETURN"])):
            chains.update(dispatch.render_dispatch(
                root, ifnames, outgoing, functools.partial(_endpoint_chain, inbound, host),
                default, target_key=("endpoint_chain", inbound, host)))
        return chains

    def static_filter_chains(self) -> Chains:
        return static.filter_chains(self.settings, self.ip_version)

    def static_nat_chains(self) -> Chains:
        return static.nat_chains(self.settings, self.ip_version)

    def fip_chains(self, mappings: Iterable[tuple[str, str]]) -> Chains:
        return static.fip_chains(self.ip_version, sorted(set(mappings)))


def _endpoint_chain(inbound: bool, host: bool, ifname: str) -> str:
    return names.endpoint_chain(ifname, inbound, host)


def make_renderers(settings: RuleSettings) -> dict[int, RuleRenderer]:
    return {v: RuleRenderer(settings, v) for v in settings.ip_versions}
