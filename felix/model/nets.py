"""Canonical IP addresses and networks from untrusted JSON values.

``ipaddress`` alone is too liberal for datastore input: it takes ints and packed bytes as
addresses, netmask suffixes, and IPv6 scope ids (``fe80::1%eth0``). We accept only text in
the usual notations and always hand back ``ipaddress``'s canonical spelling.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from felix.model.validate import Invalid, fail, show

_ADDR_CHARS_RE = re.compile(r"^[0-9a-fA-F:.]{2,45}\Z")
_NET_CHARS_RE = re.compile(r"^[0-9a-fA-F:.]{2,45}(?:/[0-9]{1,3})?\Z")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=65536)
def _net(text: str) -> IPNetwork | None:
    if _NET_CHARS_RE.match(text) is None:
        return None
    try:
        # strict=False: host bits are cleared (10.0.0.5/24 -> 10.0.0.0/24); a bare address
        # becomes a /32 or /128.
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


@lru_cache(maxsize=65536)
def _addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if _ADDR_CHARS_RE.match(text) is None:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_net(value: object, ip_version: int | None = None, what: str = "net") -> IPNetwork:
    if not isinstance(value, str):
        fail(f"{what}: expected a CIDR string, got {show(value)}")
    net = _net(value)
    if net is None:
        fail(f"{what}: invalid CIDR {show(value)}")
    if ip_version is not None and net.version != ip_version:
        fail(f"{what}: {show(value)} is not IPv{ip_version}")
    return net


def canonical_net(value: object, ip_version: int | None = None, what: str = "net") -> str:
    return str(parse_net(value, ip_version, what))


def canonical_addr(value: object, ip_version: int | None = None, what: str = "address") -> str:
    if not isinstance(value, str):
        fail(f"{what}: expected an IP address string, got {show(value)}")
    addr = _addr(value)
    if addr is None:
        fail(f"{what}: invalid IP address {show(value)}")
    if ip_version is not None and addr.version != ip_version:
        fail(f"{what}: {show(value)} is not IPv{ip_version}")
    return str(addr)


__all__ = ["Invalid", "IPNetwork", "canonical_addr", "canonical_net", "parse_net"]
