"""Rule JSON (profiles and policies) → ``felix.model.objects.Rule``.

Fail closed: any unknown key, wrong type, out-of-range value or family mismatch raises
``Invalid``, which invalidates the whole profile or policy. JSON null is a wrong type here too:
dropping a null match would make an allow rule broader than its writer meant.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from felix.model.nets import canonical_net, version_of
from felix.model.objects import PortRange, Rule
from felix.model.selector import SelectorError, parse_selector
from felix.model.validate import Invalid, fail, is_log_prefix, is_tag, show

ACTIONS = ("allow", "deny", "next-tier", "log")
PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 136: "udplite"}
NAMED_PROTOCOLS = frozenset(PROTOCOL_NAMES.values())
PORT_PROTOCOLS = frozenset({"tcp", "udp", "sctp", "udplite"})
ICMP_PROTOCOLS = {"icmp": 4, "icmpv6": 6}
MAX_PORTS = 1024


def _is_int(v: object) -> bool:
    # bool is an int subclass; JSON true must not pass as 1.
    return isinstance(v, int) and not isinstance(v, bool)


def _protocol(v: object) -> str:
    if isinstance(v, str):
        if v.lower() in NAMED_PROTOCOLS:
            return v.lower()
        fail(f"unknown protocol {show(v)}")
    if _is_int(v):
        assert isinstance(v, int)
        if 1 <= v <= 255:
            return PROTOCOL_NAMES.get(v, str(v))
    fail(f"protocol must be a name or 1-255, got {show(v)}")


def _port(v: object) -> int:
    if _is_int(v) and 0 <= v <= 65535:  # type: ignore[operator]
        return v  # type: ignore[return-value]
    fail(f"port out of range or not an int: {show(v)}")


def _port_entry(v: object) -> PortRange:
    if isinstance(v, str):
        lo_s, sep, hi_s = v.partition(":")
        if (sep and lo_s.isascii() and lo_s.isdigit() and hi_s.isascii() and hi_s.isdigit()
                and len(lo_s) <= 5 and len(hi_s) <= 5):
            lo, hi = _port(int(lo_s)), _port(int(hi_s))
            if lo < hi:
                return PortRange(lo, hi)
        fail(f"port range must be \"N:M\" with N < M, got {show(v)}")
    p = _port(v)
    return PortRange(p, p)


def _ports(v: object) -> tuple[PortRange, ...]:
    if not isinstance(v, list) or not v:
        fail(f"ports must be a non-empty list, got {show(v)}")
    if len(v) > MAX_PORTS:
        fail(f"too many ports ({len(v)})")
    return tuple(_port_entry(p) for p in v)


def _icmp(v: object) -> int:
    if _is_int(v) and 0 <= v <= 254:  # type: ignore[operator]
        return v  # type: ignore[return-value]
    fail(f"ICMP type/code must be an int 0-254, got {show(v)}")


def _tag(v: object) -> str:
    if not is_tag(v):
        fail(f"invalid tag {show(v)}")
    return v  # type: ignore[return-value]


def parse_selector_value(v: object) -> object:
    if not isinstance(v, str):
        fail(f"selector must be a string, got {show(v)}")
    try:
        return parse_selector(v)
    except SelectorError as e:
        fail(f"bad selector {show(v)}: {show(str(e), 120)}")
    except RecursionError:
        fail(f"selector too deeply nested: {show(v)}")


# Match keys: each also has a "!"-prefixed form, stored in the not_ field.
_MATCHES: Mapping[str, Callable[[object], object]] = {
    "protocol": _protocol,
    "src_net": lambda v: canonical_net(v, what="net"),
    "dst_net": lambda v: canonical_net(v, what="net"),
    "src_tag": _tag,
    "dst_tag": _tag,
    "src_selector": parse_selector_value,
    "dst_selector": parse_selector_value,
    "src_ports": _ports,
    "dst_ports": _ports,
    "icmp_type": _icmp,
    "icmp_code": _icmp,
}
_NETS = ("src_net", "not_src_net", "dst_net", "not_dst_net")
_PORTS = ("src_ports", "not_src_ports", "dst_ports", "not_dst_ports")


def parse_rule(raw: object) -> Rule:
    if not isinstance(raw, dict):
        fail(f"rule must be an object, got {show(raw)}")
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "action":
            if value not in ACTIONS:
                fail(f"unknown action {show(value)}")
            fields["action"] = value
        elif key == "ip_version":
            if not (_is_int(value) and value in (4, 6)):
                fail(f"ip_version must be 4 or 6, got {show(value)}")
            fields["ip_version"] = value
        elif key == "log_prefix":
            if not is_log_prefix(value):
                fail(f"invalid log_prefix {show(value)}")
            fields["log_prefix"] = value
        else:
            negated = key.startswith("!")
            base = key[1:] if negated else key
            parser = _MATCHES.get(base)
            if parser is None:
                fail(f"unknown rule key {show(key)}")
            try:
                fields[("not_" if negated else "") + base] = parser(value)
            except Invalid as e:
                fail(f"{key}: {e}")
    _check_consistency(fields)
    return Rule(**fields)


def _check_consistency(f: dict[str, Any]) -> None:
    ip_version: int | None = f.get("ip_version")
    protocol: str | None = f.get("protocol")
    if any(k in f for k in _PORTS) and protocol not in PORT_PROTOCOLS:
        fail("ports need protocol tcp, udp, sctp or udplite")
    for neg in ("", "not_"):
        if neg + "icmp_code" in f and neg + "icmp_type" not in f:
            fail(f"{'!' if neg else ''}icmp_code needs {'!' if neg else ''}icmp_type")
        if neg + "icmp_type" in f and protocol not in ICMP_PROTOCOLS:
            fail("icmp_type/icmp_code need protocol icmp or icmpv6")
    versions: set[int] = set()
    if ip_version is not None:
        versions.add(ip_version)
    if protocol in ICMP_PROTOCOLS:
        versions.add(ICMP_PROTOCOLS[protocol])
    versions.update(version_of(f[k]) for k in _NETS if k in f)
    if len(versions) > 1:
        fail("rule mixes IPv4 and IPv6 (ip_version, protocol and nets disagree)")


def parse_rule_list(raw: object, what: str) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        fail(f"{what} must be a list, got {show(raw)}")
    rules = []
    for i, r in enumerate(raw):
        try:
            rules.append(parse_rule(r))
        except Invalid as e:
            fail(f"{what}[{i}]: {e}")
    return tuple(rules)
