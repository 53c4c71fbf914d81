"""Per-endpoint chains: the policy walk for one endpoint, one direction, one family.

Layout of a chain (``A`` = accept mark, ``P`` = pass mark):
  clear A|P
  [from-workload only] anti-spoofing: wrong source MAC → drop; source not one of the
      endpoint's nets of this family → drop
  per tier (in order) that has policies matching the endpoint:
      clear P; for each policy: if !P jump to it, if A return;  if !P drop (tier end)
  per profile (list order): jump to it, if A return
  drop
An inactive endpoint's chains just drop.
"""

from __future__ import annotations

from dataclasses import dataclass

from felix.model.keys import PolicyKey
from felix.rules import names
from felix.rules.actions import drop_rules
from felix.rules.marks import Marks, mark_match, set_mark
from felix.rules.settings import DropActionOverride


@dataclass(frozen=True)
class EndpointPolicy:
    """What applies to an endpoint: tiers in order, each the matching policies in order (tiers
    with no matching policy left out), then the endpoint's existing profiles in list order."""

    tiers: tuple[tuple[PolicyKey, ...], ...] = ()
    profile_ids: tuple[str, ...] = ()


def _anti_spoof(nets: tuple[str, ...], mac: str | None, marks: Marks,
                drop: DropActionOverride) -> list[str]:
    out: list[str] = []
    if mac is not None:
        out += drop_rules(f"-m mac ! --mac-source {mac} ", drop)
    if len(nets) == 1:
        out += drop_rules(f"! -s {nets[0]} ", drop)
    elif not nets:
        out += drop_rules("", drop)
    else:
        # "source in none of the nets" needs one rule per net: mark the good ones.
        out += [f"-s {net} {set_mark(marks.accept, marks.accept)}" for net in nets]
        out += drop_rules(f"{mark_match(0, marks.accept)} ", drop)
        out.append(set_mark(0, marks.all))
    return out


def render_endpoint_chain(policy: EndpointPolicy, inbound: bool, active: bool, marks: Marks,
                          drop: DropActionOverride, anti_spoof_nets: tuple[str, ...] | None,
                          mac: str | None) -> tuple[str, ...]:
    """``anti_spoof_nets`` is None for chains without anti-spoofing (to-workload, host
    endpoints); otherwise the endpoint's nets of this family."""
    if not active:
        return tuple(drop_rules("", drop))
    out: list[str] = [set_mark(0, marks.all)]
    if anti_spoof_nets is not None:
        out += _anti_spoof(anti_spoof_nets, mac, marks, drop)
    for tier in policy.tiers:
        out.append(set_mark(0, marks.pass_))
        for key in tier:
            out.append(f"{mark_match(0, marks.pass_)} -j {names.policy_chain(key, inbound)}")
            out.append(f"{mark_match(marks.accept, marks.accept)} -j RETURN")
        out += drop_rules(f"{mark_match(0, marks.pass_)} ", drop)
    for pid in policy.profile_ids:
        out.append(f"-j {names.profile_chain(pid, inbound)}")
        out.append(f"{mark_match(marks.accept, marks.accept)} -j RETURN")
    out += drop_rules("", drop)
    return tuple(out)
