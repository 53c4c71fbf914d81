"""Canonical IP addresses and networks from untrusted JSON values.

``ipaddress`` alone is too liberal for datastore input: it takes ints and packed bytes as
addresses, netmask suffixes, and IPv6 scope ids (``fe80::1%eth0``). We accept only text in
the usual notations and always hand back ``ipaddress``'s canonical spelling.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from felix.model.validate import fail, show

_ADDR_CHARS_RE = re.compile(r"^[0-9a-fA-F:.]{2,45}\Z")
_NET_CHARS_RE = re.compile(r"^[0-9a-fA-F:.]{2,45}(?:/[0-9]{1,3})?\Z")
# Fast path for the overwhelmingly common IPv4 spelling (no leading zeros, like ipaddress).
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4_NET_RE = re.compile(r"^%s\.%s\.%s\.%s(?:/(3[0-2]|[12]?[0-9]))?\Z" % ((_OCTET,) * 4))


def _v4_fast(text: str) -> str | None:
    m = _V4_NET_RE.match(text)
    if m is None:
        return None
    a, b, c, d, plen = m.groups()
    prefix = 32 if plen is None else int(plen)
    ip = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
    ip &= (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF  # clear host bits
    return f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}/{prefix}"


@lru_cache(maxsize=65536)
def _net(text: str) -> str | None:
    if _NET_CHARS_RE.match(text) is None:
        return None
    fast = _v4_fast(text)
    if fast is not None:
        return fast
    try:
        # strict=False: host bits are cleared (10.0.0.5/24 -> 10.0.0.0/24); a bare address
        # becomes a /32 or /128.
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return None


@lru_cache(maxsize=65536)
def _addr(text: str) -> str | None:
    if _ADDR_CHARS_RE.match(text) is None:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def version_of(canonical: str) -> int:
    """The IP version of a canonical address or CIDR from this module."""
    return 6 if ":" in canonical else 4


def canonical_net(value: object, ip_version: int | None = None, what: str = "net") -> str:
    if not isinstance(value, str):
        fail(f"{what}: expected a CIDR string, got {show(value)}")
    net = _net(value)
    if net is None:
        fail(f"{what}: invalid CIDR {show(value)}")
    if ip_version is not None and version_of(net) != ip_version:
        fail(f"{what}: {show(value)} is not IPv{ip_version}")
    return net


def canonical_addr(value: object, ip_version: int | None = None, what: str = "address") -> str:
    if not isinstance(value, str):
        fail(f"{what}: expected an IP address string, got {show(value)}")
    addr = _addr(value)
    if addr is None:
        fail(f"{what}: invalid IP address {show(value)}")
    if ip_version is not None and version_of(addr) != ip_version:
        fail(f"{what}: {show(value)} is not IPv{ip_version}")
    return addr
