"""How endpoint addresses appear as ipset members."""

from __future__ import annotations

import ipaddress

from felix.model.objects import HostEndpoint, WorkloadEndpoint


def member(net: str) -> str:
    """Canonical member text, as ``ipset list`` shows a hash:net entry: a full-length prefix is
    shown as the bare address."""
    n = ipaddress.ip_network(net, strict=False)
    if n.prefixlen == n.max_prefixlen:
        return str(n.network_address)
    return str(n)


def endpoint_members(ep: WorkloadEndpoint | HostEndpoint, ip_version: int) -> tuple[str, ...]:
    if isinstance(ep, WorkloadEndpoint):
        return tuple(member(n) for n in ep.nets(ip_version))
    return tuple(member(a) for a in ep.addrs(ip_version))
