"""Property tests: random and mutated datastore values never make the parser raise, and every
object it accepts carries only safe tokens (checked with a regex independent of validate.py)."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from felix.model.frozen import FrozenDict
from felix.model.objects import ConfigValue, ModelUpdate, Policy, ProfileRules, Rule
from felix.model.parse import ModelParser
from felix.model.selector import Selector

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
P = ModelParser(("cali", "tap"))

# Independent of felix/model/validate.py on purpose: ASCII letters, digits and _ . : / -,
# never a leading "-", bounded length.
STRICT = re.compile(r"(?!-)[A-Za-z0-9_.:/\-]{0,253}")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

HOSTILE = ["tcp -j ACCEPT", "\n", "$(reboot)", "--dport", "é", "x" * 10000, "", " ", "-1",
           "a;b", "'", '"', "\\", "\x00", "10.0.0.0/8 ", "10.0.0.1\n", "`id`", "a b", "0:0",
           "1:", "65535:65536", "has(", "all()", "-j DROP", "\u2028", "cali 1", "cali1\n",
           "fe80::1%eth0", "10.0.0.0/255.0.0.0", "٣", "ＴＣＰ", "1e999", "-0", "../..", ".."]
PLAUSIBLE: list[Any] = ["tcp", "udp", "icmp", "icmpv6", "sctp", 6, 17, 1, 58, 255, 256, 0, 80,
                        -1, 65535, 65536, "80:90", "10.65.0.2", "10.65.0.2/32", "fd00::2/128",
                        "fd00::1", "cali123", "tap1", "eth0", "web", "active", "inactive",
                        "allow", "deny", "next-tier", "log", 4, 6, True, False, None, [], {},
                        "ee:ee:ee:ee:ee:ee", "role == 'web'", 1.5, 2 ** 70, -(2 ** 70)]
KEYS = ["name", "state", "mac", "profile_id", "profile_ids", "labels", "ipv4_nets",
        "ipv6_nets", "ipv4_nat", "ipv6_nat", "ipv4_gateway", "ipv6_gateway", "int_ip", "ext_ip",
        "expected_ipv4_addrs", "expected_ipv6_addrs", "inbound_rules", "outbound_rules",
        "order", "selector", "cidr", "masquerade", "ipip", "disabled", "action", "ip_version",
        "log_prefix", "protocol", "src_net", "dst_net", "src_tag", "dst_tag", "src_selector",
        "dst_selector", "src_ports", "dst_ports", "icmp_type", "icmp_code"]
KEYS += ["!" + k for k in KEYS[-11:]]

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.sampled_from(HOSTILE), st.sampled_from(PLAUSIBLE))
json_values = st.recursive(
    leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(
        st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), c, max_size=4),
    max_leaves=12)

WEP = {"state": "active", "name": "cali12345678901", "mac": "ee:ee:ee:ee:ee:ee",
       "profile_ids": ["web"], "labels": {"role": "web"},
       "ipv4_nets": ["10.65.0.2/32"], "ipv6_nets": ["fd00:65::2/128"],
       "ipv4_gateway": "169.254.1.1", "ipv6_gateway": "fe80::1",
       "ipv4_nat": [{"int_ip": "10.65.0.2", "ext_ip": "172.18.0.9"}],
       "ipv6_nat": [{"int_ip": "fd00:65::2", "ext_ip": "2001:db8::9"}]}
RULES = [{"action": "allow", "protocol": "tcp", "src_net": "10.0.0.0/8", "!dst_net": "10.1.0.0/16",
          "dst_ports": [80, "1000:2000"], "!src_ports": [22], "src_tag": "web", "!dst_tag": "db",
          "ip_version": 4},
         {"action": "deny", "protocol": "icmpv6", "icmp_type": 128, "icmp_code": 0,
          "!icmp_type": 1, "dst_net": "fd00::/64"},
         {"action": "log", "log_prefix": "calico:", "src_selector": "role == 'web'",
          "!dst_selector": "has(x) && a in {'b', 'c'}", "!protocol": "udp"},
         {"action": "next-tier"}]
BASES: list[tuple[str, Any]] = [
    ("/calico/v1/host/h1/workload/k8s/ns.pod/endpoint/eth0", WEP),
    ("/calico/v1/host/h1/endpoint/eth0", {"name": "eth0", "expected_ipv4_addrs": ["10.0.0.1"],
                                          "expected_ipv6_addrs": ["fd00::1"],
                                          "profile_ids": ["h"], "labels": {"a": "b"}}),
    ("/calico/v1/policy/profile/web/rules", {"inbound_rules": RULES, "outbound_rules": RULES}),
    ("/calico/v1/policy/profile/web/tags", ["web", "db"]),
    ("/calico/v1/policy/profile/web/labels", {"role": "web", "k8s.io/app": ""}),
    ("/calico/v1/policy/tier/t1/metadata", {"order": 10}),
    ("/calico/v1/policy/tier/t1/policy/p1", {"order": 1, "selector": "role == 'web'",
                                             "inbound_rules": RULES, "outbound_rules": RULES}),
    ("/calico/v1/ipam/v4/pool/10.65.0.0-16", {"cidr": "10.65.0.0/16", "masquerade": True,
                                              "ipip": "tunl0", "disabled": False}),
    ("/calico/v1/ipam/v6/pool/fd00:65::-64", {"cidr": "fd00:65::/64"}),
]


def assert_safe(obj: object, where: str = "") -> None:
    """Walk every str inside an accepted model object."""
    if isinstance(obj, str):
        assert STRICT.fullmatch(obj), f"unsafe token {obj!r} at {where}"
    elif isinstance(obj, Selector):
        # Selector text is never rendered; only its uid names an ipset.
        assert STRICT.fullmatch(obj.uid) and obj.uid, obj.uid
    elif isinstance(obj, ConfigValue):
        assert_safe(obj.name, where + ".name")
        assert not CONTROL.search(obj.value)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            assert_safe(getattr(obj, f.name), f"{where}.{f.name}")
    elif isinstance(obj, (tuple, list)):
        for i, x in enumerate(obj):
            assert_safe(x, f"{where}[{i}]")
    elif isinstance(obj, FrozenDict):
        for k, v in obj.items():
            assert_safe(k, f"{where} label name")
            assert_safe(v, f"{where}[{k}]")
    else:
        assert obj is None or isinstance(obj, (int, float, bool)), (where, obj)


def check_nets(obj: object) -> None:
    for r in _rules(obj):
        for f in ("src_net", "not_src_net", "dst_net", "not_dst_net"):
            n = getattr(r, f)
            if n is not None:
                assert str(ipaddress.ip_network(n)) == n


def _rules(obj: object) -> tuple[Rule, ...]:
    if isinstance(obj, (ProfileRules, Policy)):
        return obj.inbound + obj.outbound
    return ()


def parse_raw(path: str, text: object) -> ModelUpdate | None:
    # The inner method: the public parse() swallows internal errors, which would hide them.
    u = P._parse(path, text, 0.0)
    if u is not None and u.value is not None:
        assert u.error is None
        assert_safe(u.value)
        check_nets(u.value)
    return u


def mutate(data: st.DataObject, value: Any) -> Any:
    """Replace, delete or add one entry somewhere inside the JSON tree."""
    slots: list[tuple[Any, Any]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            slots.append((node, None))
            for k, v in node.items():
                slots.append((node, k))
                collect(v)
        elif isinstance(node, list):
            slots.append((node, None))
            for i, v in enumerate(node):
                slots.append((node, i))
                collect(v)

    collect(value)
    if not slots:
        return data.draw(json_values)
    container, k = data.draw(st.sampled_from(slots))
    new = data.draw(json_values)
    if k is None:
        if isinstance(container, dict):
            container[data.draw(st.sampled_from(KEYS))] = new
        else:
            container.append(new)
    elif data.draw(st.booleans()):
        container[k] = new
    else:
        del container[k]
    return value


@SETTINGS
@given(st.data(), st.sampled_from(BASES), st.integers(min_value=1, max_value=4))
def test_mutated_valid_objects(data: st.DataObject, base: tuple[str, Any], n: int) -> None:
    path, value = base
    u = parse_raw(path, json.dumps(value))
    assert u is not None and u.value is not None, u  # the base itself is valid
    value = copy.deepcopy(value)
    for _ in range(n):
        value = mutate(data, value)
    text = json.dumps(value)
    u = parse_raw(path, text)
    assert u is not None
    assert u == parse_raw(path, text)  # deterministic


@SETTINGS
@given(st.sampled_from(BASES), json_values)
def test_random_json(base: tuple[str, Any], value: Any) -> None:
    assert parse_raw(base[0], json.dumps(value)) is not None


@SETTINGS
@given(st.sampled_from(BASES), st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_random_text_and_bytes(base: tuple[str, Any], value: str | bytes) -> None:
    assert parse_raw(base[0], value) is not None


@SETTINGS
@given(st.sampled_from(BASES), st.data())
def test_mutated_paths(base: tuple[str, Any], data: st.DataObject) -> None:
    path, value = base
    segs = path.split("/")
    i = data.draw(st.integers(min_value=1, max_value=len(segs) - 1))
    segs[i] = data.draw(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=10)))
    u = parse_raw("/".join(segs), json.dumps(value))
    if u is not None and u.value is not None:
        # An accepted object from a mutated path: its key must be safe too.
        assert_safe(u.key)


@SETTINGS
@given(st.sampled_from(["/calico/v1/config/LogFilePath", "/calico/v1/host/h1/config/X",
                        "/calico/v1/host/h1/bird_ip", "/calico/v1/Ready"]),
       st.one_of(st.text(max_size=50), st.sampled_from(HOSTILE)))
def test_plain_string_values(path: str, value: str) -> None:
    u = parse_raw(path, value)
    assert u is not None
    if u.value is not None and not isinstance(u.value, bool):
        assert_safe(u.value)
