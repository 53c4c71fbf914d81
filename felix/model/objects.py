"""Validated, immutable model objects: the only form in which datastore data reaches the
calculation. Construct them only through felix/model/parse.py, which guarantees that every
string in them is a safe token (nothing iptables or ipset could misread).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from felix.model.frozen import EMPTY, FrozenDict
from felix.model.keys import HostEndpointKey, PolicyKey, WorkloadEndpointKey

if TYPE_CHECKING:
    from felix.model.selector import Selector

Action = Literal["allow", "deny", "next-tier", "log"]


@dataclass(frozen=True, order=True)
class PortRange:
    """An inclusive port range; a single port has lo == hi."""

    lo: int
    hi: int


@dataclass(frozen=True)
class Rule:
    """One rule. Each match has a positive field and a negated ``not_`` field (the `!` form).

    ``protocol`` is canonical: a known name (tcp, udp, icmp, icmpv6, sctp, udplite) even when
    the datastore gave its number, otherwise the decimal number as a string.
    Nets are canonical CIDRs. ``ip_version`` is 4, 6 or None (both families; a rule whose
    nets/protocol pin a family is only rendered for that family).
    """

    action: Action = "allow"
    ip_version: int | None = None
    protocol: str | None = None
    not_protocol: str | None = None
    src_net: str | None = None
    not_src_net: str | None = None
    dst_net: str | None = None
    not_dst_net: str | None = None
    src_tag: str | None = None
    not_src_tag: str | None = None
    dst_tag: str | None = None
    not_dst_tag: str | None = None
    src_selector: Selector | None = None
    not_src_selector: Selector | None = None
    dst_selector: Selector | None = None
    not_dst_selector: Selector | None = None
    src_ports: tuple[PortRange, ...] = ()
    not_src_ports: tuple[PortRange, ...] = ()
    dst_ports: tuple[PortRange, ...] = ()
    not_dst_ports: tuple[PortRange, ...] = ()
    icmp_type: int | None = None
    icmp_code: int | None = None
    not_icmp_type: int | None = None
    not_icmp_code: int | None = None
    log_prefix: str | None = None


@dataclass(frozen=True)
class NatMapping:
    int_ip: str
    ext_ip: str


@dataclass(frozen=True)
class WorkloadEndpoint:
    key: WorkloadEndpointKey
    name: str  # host-side interface name
    state: Literal["active", "inactive"]
    mac: str | None = None  # canonical lower-case aa:bb:cc:dd:ee:ff
    profile_ids: tuple[str, ...] = ()
    labels: FrozenDict = EMPTY
    ipv4_nets: tuple[str, ...] = ()  # canonical CIDRs
    ipv6_nets: tuple[str, ...] = ()
    ipv4_nat: tuple[NatMapping, ...] = ()
    ipv6_nat: tuple[NatMapping, ...] = ()
    ipv4_gateway: str | None = None
    ipv6_gateway: str | None = None

    def nets(self, ip_version: int) -> tuple[str, ...]:
        return self.ipv4_nets if ip_version == 4 else self.ipv6_nets

    def nat(self, ip_version: int) -> tuple[NatMapping, ...]:
        return self.ipv4_nat if ip_version == 4 else self.ipv6_nat


@dataclass(frozen=True)
class HostEndpoint:
    key: HostEndpointKey
    name: str | None = None  # interface name, or None: resolved from expected addresses
    expected_ipv4_addrs: tuple[str, ...] = ()  # canonical addresses (no prefix length)
    expected_ipv6_addrs: tuple[str, ...] = ()
    profile_ids: tuple[str, ...] = ()
    labels: FrozenDict = EMPTY

    def addrs(self, ip_version: int) -> tuple[str, ...]:
        return self.expected_ipv4_addrs if ip_version == 4 else self.expected_ipv6_addrs


@dataclass(frozen=True)
class ProfileRules:
    profile_id: str
    inbound: tuple[Rule, ...] = ()
    outbound: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class ProfileTags:
    profile_id: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProfileLabels:
    profile_id: str
    labels: FrozenDict = EMPTY


@dataclass(frozen=True)
class Tier:
    name: str
    order: float | None = None  # None = "default"/missing: sorts last


@dataclass(frozen=True)
class Policy:
    key: PolicyKey
    selector: Selector
    order: float | None = None  # None sorts last within the tier
    inbound: tuple[Rule, ...] = ()
    outbound: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Pool:
    cidr: str  # canonical
    ip_version: int
    masquerade: bool = False
    ipip: str | None = None
    disabled: bool = False


@dataclass(frozen=True)
class HostIP:
    hostname: str
    ip: str


@dataclass(frozen=True)
class ConfigValue:
    name: str  # as written in the datastore
    value: str
    hostname: str | None = None  # None = global


@dataclass(frozen=True)
class ModelUpdate:
    """One parsed datastore update. ``value`` None means absent: deleted, or invalid (then
    ``error`` says why, and for endpoints status must report ``error``)."""

    key: object  # a felix.model.keys.ModelKey
    value: object | None
    error: str | None = None
    path: str = ""  # the raw etcd key, for logs
    received_at: float = field(default=0.0, compare=False)  # monotonic time of the etcd event
