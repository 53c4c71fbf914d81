"""The contract between calculation (felix/calc) and dataplane (felix/dataplane).

The calculation emits these immutable messages as *deltas*, in dependency order: an ipset is set
before a rule that references it, a chain before a jump to it; removals come in reverse (jumps
removed before their chains, chains before the sets they reference). The dataplane only records
them and programs the kernel in its own apply(); it may coalesce freely.

Rules are rendered iptables-restore rule bodies, i.e. everything after ``-A <chain> ``, for
example ``-p tcp -m multiport --dports 80,443 -j ACCEPT``. The dataplane adds its own hash
comment to each. Chain names start with ``cali`` ; ipset names start with ``cali4`` or ``cali6``
and are at most 31 characters; anything with those prefixes in the kernel is felix's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Table = Literal["filter", "nat", "raw", "mangle"]


@dataclass(frozen=True)
class ChainSet:
    """Desired full contents of one of felix's own chains."""

    ip_version: int
    table: Table
    name: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class ChainRemoved:
    ip_version: int
    table: Table
    name: str


@dataclass(frozen=True)
class HookSet:
    """Rules felix keeps at the very top of a kernel-owned chain (INPUT, FORWARD, OUTPUT,
    PREROUTING, POSTROUTING), in this order. An empty tuple removes felix's hook rules."""

    ip_version: int
    table: Table
    kernel_chain: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class IpsetSet:
    """Desired full membership of an ipset (first sight of the set, or a full rewrite)."""

    ip_version: int
    name: str
    set_type: Literal["hash:ip", "hash:net"]
    members: frozenset[str]


@dataclass(frozen=True)
class IpsetDelta:
    """Incremental change to a set previously given by IpsetSet."""

    ip_version: int
    name: str
    added: frozenset[str]
    removed: frozenset[str]


@dataclass(frozen=True)
class IpsetRemoved:
    ip_version: int
    name: str


@dataclass(frozen=True)
class RoutesSet:
    """Routes down a local endpoint's interface: one /32 or /128 route per address in
    ``dests`` (workload nets and 1:1 NAT external IPs), plus the interface's sysctls and a static
    neighbour entry for ``mac`` when given."""

    ip_version: int
    ifname: str
    dests: frozenset[str]
    mac: str | None = None


@dataclass(frozen=True)
class RoutesRemoved:
    ip_version: int
    ifname: str


@dataclass(frozen=True)
class EndpointSet:
    """A local endpoint and the kernel objects that make it programmed. The dataplane reports it
    programmed once every listed chain is in the kernel and its routes are in place (or failed
    if one of them failed). ``endpoint_key`` is a WorkloadEndpointKey or HostEndpointKey."""

    endpoint_key: object
    ifname: str | None
    active: bool
    chains: frozenset[tuple[int, Table, str]]  # (ip_version, table, chain name)


@dataclass(frozen=True)
class EndpointRemoved:
    endpoint_key: object


@dataclass(frozen=True)
class InSync:
    """The calculation has processed a complete datastore snapshot: destructive clean-up of
    state the messages have not mentioned may begin (after StartupCleanupDelay)."""


Message = (ChainSet | ChainRemoved | HookSet | IpsetSet | IpsetDelta | IpsetRemoved
           | RoutesSet | RoutesRemoved | EndpointSet | EndpointRemoved | InSync)
