"""etcd paths under /calico/v1 → typed keys (felix/model/keys.py).

``key_for_path`` returns None for paths outside the contract (directories, future keys), which
callers ignore silently. A path of a known shape whose id segments are unsafe still yields its
key, with the reason, so the update can be treated as invalid (absent); only a path whose key
cannot be formed at all (a pool CIDR that is no CIDR) raises ``Invalid``.
"""

from __future__ import annotations

from felix.model.keys import (ROOT, GlobalConfigKey, HostConfigKey, HostEndpointKey, HostIPKey,
                              PolicyKey, PoolKey, ProfileLabelsKey, ProfileRulesKey,
                              ProfileTagsKey, ReadyKey, TierKey, WorkloadEndpointKey)
from felix.model.nets import canonical_net, version_of
from felix.model.validate import fail, is_config_name, is_hostname, is_id, show

_PREFIX = ROOT + "/"
_PROFILE_KEYS = {"rules": ProfileRulesKey, "tags": ProfileTagsKey, "labels": ProfileLabelsKey}


def _check(checks: list[tuple[str, str, bool]]) -> str | None:
    for what, value, ok in checks:
        if not ok:
            return f"unsafe {what} {show(value)} in key"
    return None


def key_for_path(path: str) -> tuple[object, str | None] | None:
    """(key, reason the key's ids are unsafe or None), or None if not a contract path."""
    if not path.startswith(_PREFIX):
        return None
    s = path[len(_PREFIX):].split("/")
    n = len(s)
    if s == ["Ready"]:
        return ReadyKey(), None
    if n == 2 and s[0] == "config":
        return GlobalConfigKey(s[1]), _check([("config name", s[1], is_config_name(s[1]))])
    if n >= 3 and s[0] == "host":
        host = s[1]
        host_ok = ("hostname", host, is_hostname(host))
        if n == 4 and s[2] == "config":
            return HostConfigKey(host, s[3]), _check(
                [host_ok, ("config name", s[3], is_config_name(s[3]))])
        if n == 3 and s[2] == "bird_ip":
            return HostIPKey(host), _check([host_ok])
        if n == 4 and s[2] == "endpoint":
            return HostEndpointKey(host, s[3]), _check(
                [host_ok, ("endpoint id", s[3], is_id(s[3]))])
        if n == 7 and s[2] == "workload" and s[5] == "endpoint":
            return WorkloadEndpointKey(host, s[3], s[4], s[6]), _check(
                [host_ok, ("orchestrator", s[3], is_id(s[3])),
                 ("workload id", s[4], is_id(s[4])), ("endpoint id", s[6], is_id(s[6]))])
        return None
    if n == 4 and s[0] == "policy" and s[1] == "profile" and s[3] in _PROFILE_KEYS:
        return _PROFILE_KEYS[s[3]](s[2]), _check([("profile id", s[2], is_id(s[2]))])
    if n == 4 and s[0] == "policy" and s[1] == "tier" and s[3] == "metadata":
        return TierKey(s[2]), _check([("tier", s[2], is_id(s[2]))])
    if n == 5 and s[0] == "policy" and s[1] == "tier" and s[3] == "policy":
        return PolicyKey(s[2], s[4]), _check(
            [("tier", s[2], is_id(s[2])), ("policy id", s[4], is_id(s[4]))])
    if n == 4 and s[0] == "ipam" and s[1] in ("v4", "v6") and s[2] == "pool":
        return _pool_key(int(s[1][1]), s[3])
    return None


def _pool_key(version: int, segment: str) -> tuple[PoolKey, str | None]:
    cidr_text = segment.replace("-", "/", 1)
    net = canonical_net(cidr_text, what="pool CIDR in key")
    # Only a canonically written CIDR gets a key of its own: mapping "10.0.0.1-16" onto the
    # key of "10.0.0.0-16" would let a bad or deleted twin delete a good pool.
    if net != cidr_text:
        fail(f"pool CIDR in key {show(segment)} is not canonical (expected "
             f"{net.replace('/', '-')})")
    if version_of(net) != version:
        return PoolKey(version, net), f"pool CIDR {show(segment)} is not IPv{version}"
    return PoolKey(version, net), None
