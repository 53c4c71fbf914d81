"""Raw etcd (path, value) → ``ModelUpdate``: the single entry point from datastore to model.

Invalid data is reported as absent (``value`` None) with ``error`` set and one WARNING line;
the parser never raises, whatever bytes arrive. See /work/shared/datamodel.md for semantics.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from felix.model.endpoints import parse_host_endpoint, parse_labels, parse_workload_endpoint
from felix.model.keys import (GlobalConfigKey, HostConfigKey, HostEndpointKey, HostIPKey,
                              PolicyKey, PoolKey, ProfileLabelsKey, ProfileRulesKey,
                              ProfileTagsKey, ReadyKey, TierKey, WorkloadEndpointKey)
from felix.model.nets import canonical_addr, canonical_net
from felix.model.objects import (ConfigValue, HostIP, ModelUpdate, Policy, Pool, ProfileLabels,
                                 ProfileRules, ProfileTags, Tier)
from felix.model.paths import key_for_path
from felix.model.rules import parse_selector_value, parse_rule_list
from felix.model.validate import (CONTROL_CHARS_RE, Invalid, fail, is_config_value, is_host_iface,
                                  is_iface_prefix, is_tag, show)

_log = logging.getLogger(__name__)

MAX_VALUE_LEN = 1 << 20  # etcd's default request limit is 1.5 MiB; nothing legit is close


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _DuplicateKey("duplicate key in JSON object")
    return d


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    f = float(text)
    if not math.isfinite(f):
        raise ValueError(f"number {text[:20]} out of range")
    return f


def load_json(value: str) -> Any:
    """Strict JSON: no NaN/Infinity, no overflowing floats, no duplicate object keys."""
    try:
        return json.loads(value, object_pairs_hook=_no_duplicates,
                          parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        fail("JSON nested too deeply")
    except ValueError as e:  # includes JSONDecodeError and int digit-limit errors
        fail(f"bad JSON: {str(e)[:80]}")


def _order(d: dict[str, Any]) -> float | None:
    o = d.get("order")
    if o is None or o == "default":
        return None
    if isinstance(o, bool) or not isinstance(o, (int, float)):
        fail(f"order must be a number or \"default\", got {show(o)}")
    try:
        f = float(o)
    except OverflowError:
        fail(f"order out of range: {show(o)}")
    if not math.isfinite(f):
        fail(f"order out of range: {show(o)}")
    return f


def _object(raw: object, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        fail(f"{what} must be a JSON object, got {show(raw)}")
    return raw


def _rules_of(d: dict[str, Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    for direction in ("inbound_rules", "outbound_rules"):
        if direction not in d:
            fail(f"missing {direction}")
    return (parse_rule_list(d["inbound_rules"], "inbound_rules"),
            parse_rule_list(d["outbound_rules"], "outbound_rules"))


def _bool(d: dict[str, Any], name: str) -> bool:
    v = d.get(name, False)
    if not isinstance(v, bool):
        fail(f"{name} must be true or false, got {show(v)}")
    return v


class ModelParser:
    def __init__(self, interface_prefixes: tuple[str, ...] = ("cali",)) -> None:
        bad = [p for p in interface_prefixes if not is_iface_prefix(p)]
        if bad or not interface_prefixes:
            raise ValueError(f"invalid interface prefixes: {interface_prefixes!r}")
        self.interface_prefixes = tuple(interface_prefixes)

    def parse(self, path: str, value: str | None, received_at: float = 0.0
              ) -> ModelUpdate | None:
        try:
            return self._parse(path, value, received_at)
        except Exception as e:  # noqa: BLE001 - the contract is "never raise"
            _log.warning("Ignoring %s: internal error parsing it: %s", show(path, 200),
                         show(e, 200))
            return None

    def _parse(self, path: object, value: object, received_at: float) -> ModelUpdate | None:
        if isinstance(path, bytes):
            try:
                path = path.decode("utf-8")
            except UnicodeDecodeError:
                return None
        if not isinstance(path, str):
            return None
        try:
            found = key_for_path(path)
        except Invalid as e:
            _log.warning("Ignoring %s: %s", show(path, 200), e)
            return None
        if found is None:
            return None
        key, unsafe = found
        if value is None:
            return ModelUpdate(key, None, path=path, received_at=received_at)
        if unsafe is not None:
            return self._invalid(key, path, unsafe, received_at)
        try:
            model = self._value(key, self._text(value))
        except Invalid as e:
            return self._invalid(key, path, str(e), received_at)
        except RecursionError:
            return self._invalid(key, path, "data nested too deeply", received_at)
        return ModelUpdate(key, model, path=path, received_at=received_at)

    @staticmethod
    def _invalid(key: object, path: str, reason: str, received_at: float) -> ModelUpdate:
        if CONTROL_CHARS_RE.search(reason):  # keep it one log line, whatever got quoted in
            reason = repr(reason)[1:-1]
        _log.warning("Invalid data at %s, treating as absent: %s", show(path, 200), reason)
        return ModelUpdate(key, None, error=reason, path=path, received_at=received_at)

    @staticmethod
    def _text(value: object) -> str:
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                fail("value is not UTF-8")
        if not isinstance(value, str):
            fail(f"value must be a string, got {type(value).__name__}")
        if len(value) > MAX_VALUE_LEN:
            fail(f"value too large ({len(value)} chars)")
        return value

    def _value(self, key: object, text: str) -> object:
        if isinstance(key, ReadyKey):
            return True if text == "true" else None
        if isinstance(key, WorkloadEndpointKey):
            return parse_workload_endpoint(key, load_json(text), self.interface_prefixes)
        if isinstance(key, HostEndpointKey):
            return parse_host_endpoint(key, load_json(text))
        if isinstance(key, ProfileRulesKey):
            inbound, outbound = _rules_of(_object(load_json(text), "profile rules"))
            return ProfileRules(key.profile_id, inbound, outbound)
        if isinstance(key, ProfileTagsKey):
            return ProfileTags(key.profile_id, _tags(load_json(text)))
        if isinstance(key, ProfileLabelsKey):
            return ProfileLabels(key.profile_id, parse_labels(load_json(text)))
        if isinstance(key, TierKey):
            return Tier(key.tier, _order(_object(load_json(text), "tier metadata")))
        if isinstance(key, PolicyKey):
            return _policy(key, _object(load_json(text), "policy"))
        if isinstance(key, PoolKey):
            return _pool(key, _object(load_json(text), "pool"))
        if isinstance(key, HostIPKey):
            return HostIP(key.hostname, canonical_addr(text, 4, "bird_ip"))
        if isinstance(key, (GlobalConfigKey, HostConfigKey)):
            if not is_config_value(text):
                fail(f"config value contains control characters or is too long: {show(text)}")
            host = key.hostname if isinstance(key, HostConfigKey) else None
            return ConfigValue(key.name, text, host)
        fail(f"no parser for {type(key).__name__}")


def _tags(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        fail(f"tags must be a JSON list, got {show(raw)}")
    for t in raw:
        if not is_tag(t):
            fail(f"invalid tag {show(t)}")
    return tuple(dict.fromkeys(raw))


def _policy(key: PolicyKey, d: dict[str, Any]) -> Policy:
    if "selector" not in d:
        fail("missing selector")
    try:
        selector = parse_selector_value(d["selector"])
    except Invalid as e:
        fail(f"selector: {e}")
    inbound, outbound = _rules_of(d)
    return Policy(key, selector, _order(d), inbound, outbound)  # type: ignore[arg-type]


def _pool(key: PoolKey, d: dict[str, Any]) -> Pool:
    if "cidr" not in d:
        fail("missing cidr")
    net = canonical_net(d["cidr"], key.ip_version, "cidr")
    if net != key.cidr:
        fail(f"cidr {show(d['cidr'])} does not match the key's {key.cidr}")
    ipip = None
    if "ipip" in d:
        ipip = d["ipip"]
        if not is_host_iface(ipip):
            fail(f"ipip must be an interface name, got {show(ipip)}")
    return Pool(key.cidr, key.ip_version, _bool(d, "masquerade"), ipip, _bool(d, "disabled"))
