"""Workload and host endpoint JSON → model objects.

Unknown fields are ignored; a known field with a wrong type or value makes the endpoint
invalid. JSON null counts as a wrong type, except for the informational gateways, which some
orchestrators write as null when a family is unused.
"""

from __future__ import annotations

from typing import Any, Callable

from felix.model.frozen import EMPTY, FrozenDict
from felix.model.keys import HostEndpointKey, WorkloadEndpointKey
from felix.model.nets import canonical_addr, canonical_net
from felix.model.objects import HostEndpoint, NatMapping, WorkloadEndpoint
from felix.model.validate import (canonical_mac, fail, is_host_iface, is_id,
                                  is_label_name, is_label_value, is_workload_iface, show)

MAX_LIST = 10000


def _list(raw: object, what: str) -> list[Any]:
    if not isinstance(raw, list):
        fail(f"{what} must be a list, got {show(raw)}")
    if len(raw) > MAX_LIST:
        fail(f"{what} has too many entries ({len(raw)})")
    return raw


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def parse_profile_ids(d: dict[str, Any]) -> tuple[str, ...]:
    """``profile_ids`` (list), or the legacy single ``profile_id``; profile_ids wins if both."""
    ids: list[str] = []
    if "profile_id" in d:
        pid = d["profile_id"]
        if not is_id(pid):
            fail(f"invalid profile_id {show(pid)}")
        ids = [pid]
    if "profile_ids" in d:
        ids = []
        for pid in _list(d["profile_ids"], "profile_ids"):
            if not is_id(pid):
                fail(f"invalid profile id {show(pid)}")
            ids.append(pid)
    return _dedupe(ids)


def parse_labels(raw: object) -> FrozenDict:
    if not isinstance(raw, dict):
        fail(f"labels must be an object, got {show(raw)}")
    for name, value in raw.items():
        if not is_label_name(name):
            fail(f"invalid label name {show(name)}")
        if not is_label_value(value):
            fail(f"invalid value for label {name!r}: {show(value)}")
    return FrozenDict(raw) if raw else EMPTY


def _nets(raw: object, version: int, what: str) -> tuple[str, ...]:
    return _dedupe([canonical_net(n, version, what) for n in _list(raw, what)])


def _nat(raw: object, version: int, nets: tuple[str, ...], what: str) -> tuple[NatMapping, ...]:
    own = set(nets)
    out = []
    for m in _list(raw, what):
        if not isinstance(m, dict):
            fail(f"{what}: entries must be objects, got {show(m)}")
        if "int_ip" not in m or "ext_ip" not in m:
            fail(f"{what}: entries need int_ip and ext_ip")
        int_ip = canonical_addr(m["int_ip"], version, f"{what} int_ip")
        ext_ip = canonical_addr(m["ext_ip"], version, f"{what} ext_ip")
        host_len = 32 if version == 4 else 128
        if f"{int_ip}/{host_len}" not in own:
            fail(f"{what}: int_ip {int_ip} is not one of the endpoint's ipv{version}_nets")
        out.append(NatMapping(int_ip, ext_ip))
    return tuple(dict.fromkeys(out))


def _optional(d: dict[str, Any], key: str, conv: Callable[[Any], Any], null_ok: bool = False
              ) -> Any:
    if key not in d or (null_ok and d[key] is None):
        return None
    return conv(d[key])


def parse_workload_endpoint(key: WorkloadEndpointKey, d: object,
                            prefixes: tuple[str, ...]) -> WorkloadEndpoint:
    if not isinstance(d, dict):
        fail(f"endpoint must be a JSON object, got {show(d)}")
    if "name" not in d:
        fail("missing name")
    if not is_workload_iface(d["name"], prefixes):
        fail(f"invalid interface name {show(d['name'])} (1-15 chars [a-zA-Z0-9_-] "
             f"starting with one of {','.join(prefixes)})")
    if "state" not in d:
        fail("missing state")
    if d["state"] not in ("active", "inactive"):
        fail(f"state must be active or inactive, got {show(d['state'])}")
    mac = None
    if "mac" in d:
        mac = canonical_mac(d["mac"])
        if mac is None:
            fail(f"invalid mac {show(d['mac'])}")
    v4 = _optional(d, "ipv4_nets", lambda r: _nets(r, 4, "ipv4_nets")) or ()
    v6 = _optional(d, "ipv6_nets", lambda r: _nets(r, 6, "ipv6_nets")) or ()
    return WorkloadEndpoint(
        key=key,
        name=d["name"],
        state=d["state"],
        mac=mac,
        profile_ids=parse_profile_ids(d),
        labels=_optional(d, "labels", parse_labels) or EMPTY,
        ipv4_nets=v4,
        ipv6_nets=v6,
        ipv4_nat=_optional(d, "ipv4_nat", lambda r: _nat(r, 4, v4, "ipv4_nat")) or (),
        ipv6_nat=_optional(d, "ipv6_nat", lambda r: _nat(r, 6, v6, "ipv6_nat")) or (),
        ipv4_gateway=_optional(d, "ipv4_gateway", lambda r: canonical_addr(r, 4, "ipv4_gateway"),
                               null_ok=True),
        ipv6_gateway=_optional(d, "ipv6_gateway", lambda r: canonical_addr(r, 6, "ipv6_gateway"),
                               null_ok=True),
    )


_WORKLOAD_ONLY = ("state", "mac", "ipv4_nets", "ipv6_nets", "ipv4_nat", "ipv6_nat")


def _addrs(raw: object, version: int, what: str) -> tuple[str, ...]:
    return _dedupe([canonical_addr(a, version, what) for a in _list(raw, what)])


def parse_host_endpoint(key: HostEndpointKey, d: object) -> HostEndpoint:
    if not isinstance(d, dict):
        fail(f"host endpoint must be a JSON object, got {show(d)}")
    # A workload-only field on a host endpoint means its writer expects enforcement (e.g.
    # anti-spoofing) that host endpoints don't get: refuse rather than silently ignore.
    for k in _WORKLOAD_ONLY:
        if k in d:
            fail(f"{k} is not allowed on a host endpoint")
    name = None
    if "name" in d:
        name = d["name"]
        if not is_host_iface(name):
            fail(f"invalid interface name {show(name)}")
    v4 = _optional(d, "expected_ipv4_addrs", lambda r: _addrs(r, 4, "expected_ipv4_addrs")) or ()
    v6 = _optional(d, "expected_ipv6_addrs", lambda r: _addrs(r, 6, "expected_ipv6_addrs")) or ()
    if name is None and not v4 and not v6:
        fail("host endpoint needs name or expected_ipv4_addrs/expected_ipv6_addrs")
    return HostEndpoint(
        key=key,
        name=name,
        expected_ipv4_addrs=v4,
        expected_ipv6_addrs=v6,
        profile_ids=parse_profile_ids(d),
        labels=_optional(d, "labels", parse_labels) or EMPTY,
    )
