"""Names of felix's chains and ipsets.

Chains start with ``cali-`` and are at most 28 characters (the kernel's limit); ipsets start
with ``cali4``/``cali6`` and are at most 31. Ids that may be too long are shortened to a
readable head plus a hash of the whole id, so two ids can only collide through a hash
collision (the hashed forms contain ``:``, which ids and tags never do).
"""

from __future__ import annotations

import base64
import functools
import hashlib

from felix.model.keys import PolicyKey

MAX_CHAIN_LEN = 28
MAX_IPSET_LEN = 31

# Top-level chains, jumped to from the kernel's own chains.
FILTER_INPUT = "cali-INPUT"
FILTER_FORWARD = "cali-FORWARD"
FILTER_OUTPUT = "cali-OUTPUT"
NAT_PREROUTING = "cali-PREROUTING"
NAT_POSTROUTING = "cali-POSTROUTING"
NAT_OUTPUT = "cali-OUTPUT"

WL_TO_HOST = "cali-wl-to-host"
FAILSAFE_IN = "cali-failsafe-in"
FAILSAFE_OUT = "cali-failsafe-out"
# Dispatch roots; the tree's inner nodes extend these with an interface-name prefix.
TO_WL_DISPATCH = "cali-to-wl-dispatch"
FROM_WL_DISPATCH = "cali-from-wl-dispatch"
TO_HOST_DISPATCH = "cali-to-host-endpoint"
FROM_HOST_DISPATCH = "cali-from-host-endpoint"
DISPATCH_NODE_PREFIX = {
    TO_WL_DISPATCH: "cali-dt-",
    FROM_WL_DISPATCH: "cali-df-",
    TO_HOST_DISPATCH: "cali-dth-",
    FROM_HOST_DISPATCH: "cali-dfh-",
}
FIP_DNAT = "cali-fip-dnat"
FIP_SNAT = "cali-fip-snat"
NAT_OUTGOING = "cali-nat-outgoing"

# Endpoint chains: "tw" = traffic to the workload (its inbound policy), "fw" = from it. For host
# endpoints "fh" = traffic from the interface into the host (the host endpoint's inbound
# policy, on INPUT), "th" = from the host out of the interface (outbound policy, on OUTPUT).
TO_WORKLOAD = "cali-tw-"
FROM_WORKLOAD = "cali-fw-"
TO_HOST = "cali-th-"
FROM_HOST = "cali-fh-"

POLICY_IN = "cali-pi-"
POLICY_OUT = "cali-po-"
PROFILE_IN = "cali-pri-"
PROFILE_OUT = "cali-pro-"


def _hash(text: str, n: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode().lower()[:n]


def shortened(prefix: str, ident: str, max_len: int, hash_len: int = 12) -> str:
    """``prefix + ident`` when it fits and ``ident`` has no ``:``; otherwise the prefix, as much
    of ``ident`` as fits, ``:`` and a hash of the full ident."""
    if len(prefix) + len(ident) <= max_len and ":" not in ident:
        return prefix + ident
    head_len = max_len - len(prefix) - hash_len - 1
    if head_len < 0:
        raise ValueError(f"prefix {prefix!r} leaves no room for a hash")
    return f"{prefix}{ident[:head_len]}:{_hash(ident, hash_len)}"


def hashed(prefix: str, readable: str, ident: str, max_len: int, hash_len: int = 12) -> str:
    """Always prefix + head of ``readable`` + ``:`` + hash of ``ident``: used where ids can be
    arbitrarily long, so the name's shape never depends on the id's length."""
    head_len = max_len - len(prefix) - hash_len - 1
    return f"{prefix}{readable[:head_len]}:{_hash(ident, hash_len)}"


# Pure and called for every jump of every endpoint chain: worth caching.
@functools.lru_cache(maxsize=65536)
def policy_chain(key: PolicyKey, inbound: bool) -> str:
    # "/" cannot occur in tier names or policy ids, so the pair is hashed unambiguously.
    return hashed(POLICY_IN if inbound else POLICY_OUT, key.policy_id,
                  f"{key.tier}/{key.policy_id}", MAX_CHAIN_LEN)


@functools.lru_cache(maxsize=65536)
def profile_chain(profile_id: str, inbound: bool) -> str:
    return hashed(PROFILE_IN if inbound else PROFILE_OUT, profile_id, profile_id, MAX_CHAIN_LEN)


def endpoint_chain(ifname: str, inbound: bool, host: bool) -> str:
    if host:
        prefix = FROM_HOST if inbound else TO_HOST
    else:
        prefix = TO_WORKLOAD if inbound else FROM_WORKLOAD
    return shortened(prefix, ifname, MAX_CHAIN_LEN)


def dispatch_node(root: str, name_prefix: str) -> str:
    return shortened(DISPATCH_NODE_PREFIX[root], name_prefix, MAX_CHAIN_LEN)


def tag_set(ip_version: int, tag: str) -> str:
    return shortened(f"cali{ip_version}-t:", tag, MAX_IPSET_LEN)


def selector_set(ip_version: int, uid: str) -> str:
    return shortened(f"cali{ip_version}-s:", uid, MAX_IPSET_LEN)


def masq_pools_set(ip_version: int) -> str:
    return f"cali{ip_version}-masq-ipam-pools"


def all_pools_set(ip_version: int) -> str:
    return f"cali{ip_version}-all-ipam-pools"


def all_hosts_set(ip_version: int) -> str:
    return f"cali{ip_version}-all-hosts"
