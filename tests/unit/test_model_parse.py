"""ModelParser: key paths and the value semantics of every object in the datastore contract."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from felix.model.frozen import FrozenDict
from felix.model.keys import (GlobalConfigKey, HostConfigKey, HostEndpointKey, HostIPKey,
                              PolicyKey, PoolKey, ProfileLabelsKey, ProfileRulesKey,
                              ProfileTagsKey, ReadyKey, TierKey, WorkloadEndpointKey)
from felix.model.objects import (ConfigValue, HostEndpoint, HostIP, ModelUpdate, NatMapping,
                                 Policy, Pool, ProfileLabels, ProfileRules, ProfileTags, Rule,
                                 Tier, WorkloadEndpoint)
from felix.model.parse import ModelParser
from felix.model.selector import parse_selector

P = ModelParser()
WEP_PATH = "/calico/v1/host/h1/workload/k8s/ns.pod-1/endpoint/eth0"
WEP_KEY = WorkloadEndpointKey("h1", "k8s", "ns.pod-1", "eth0")
HEP_PATH = "/calico/v1/host/h1/endpoint/eth0"
HEP_KEY = HostEndpointKey("h1", "eth0")
WEP: dict[str, Any] = {
    "state": "active", "name": "cali12345678901", "mac": "ee:ee:ee:ee:ee:ee",
    "profile_ids": ["web"], "labels": {"role": "web"},
    "ipv4_nets": ["10.65.0.2/32"], "ipv6_nets": ["fd00:65::2/128"],
    "ipv4_gateway": "169.254.1.1", "ipv6_gateway": "fe80::1",
    "ipv4_nat": [{"int_ip": "10.65.0.2", "ext_ip": "172.18.0.9"}]}


def parse(path: str, value: object) -> ModelUpdate | None:
    text = value if isinstance(value, (str, type(None))) else json.dumps(value)
    return P.parse(path, text, received_at=1.5)


def valid(path: str, value: object) -> object:
    u = parse(path, value)
    assert u is not None and u.error is None, u
    assert u.value is not None
    return u.value


def invalid(path: str, value: object) -> str:
    u = parse(path, value)
    assert u is not None and u.value is None and u.error, u
    return u.error


# --- keys -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path,key", [
    ("/calico/v1/Ready", ReadyKey()),
    ("/calico/v1/config/LogSeverityScreen", GlobalConfigKey("LogSeverityScreen")),
    ("/calico/v1/host/h1/config/InterfacePrefix", HostConfigKey("h1", "InterfacePrefix")),
    ("/calico/v1/host/h1.example.com/bird_ip", HostIPKey("h1.example.com")),
    (WEP_PATH, WEP_KEY),
    (HEP_PATH, HEP_KEY),
    ("/calico/v1/policy/profile/web/rules", ProfileRulesKey("web")),
    ("/calico/v1/policy/profile/web/tags", ProfileTagsKey("web")),
    ("/calico/v1/policy/profile/web/labels", ProfileLabelsKey("web")),
    ("/calico/v1/policy/tier/t1/metadata", TierKey("t1")),
    ("/calico/v1/policy/tier/t1/policy/p1", PolicyKey("t1", "p1")),
    ("/calico/v1/ipam/v4/pool/10.65.0.0-16", PoolKey(4, "10.65.0.0/16")),
    ("/calico/v1/ipam/v6/pool/fd00:65::-64", PoolKey(6, "fd00:65::/64")),
])
def test_keys_round_trip(path: str, key: object) -> None:
    u = P.parse(path, None, received_at=2.0)
    assert u == ModelUpdate(key, None, path=path)
    assert u.received_at == 2.0
    assert key.path == path  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", [
    "/calico/v1", "/calico/v1/", "/calico/v1/host", "/calico/v1/host/h1",
    "/calico/v1/host/h1/workload", "/calico/v1/host/h1/workload/k8s/w",
    "/calico/v1/host/h1/workload/k8s/w/endpoint", "/calico/v1/host/h1/workload/k8s/w/x/eth0",
    "/calico/v1/host/h1/something", "/calico/v1/policy/profile/web",
    "/calico/v1/policy/profile/web/future", "/calico/v1/policy/tier/t1",
    "/calico/v1/policy/tier/t1/policy", "/calico/v1/ipam/v5/pool/10.0.0.0-8",
    "/calico/v1/ipam/v4/pool", "/calico/v1/Ready/x", "/calico/v2/Ready", "/calico/felix/v1/x",
    "calico/v1/Ready", "", "/calico/v1/ready", "/calico/v1/future/thing",
])
def test_paths_outside_the_contract_are_ignored(path: str, caplog: pytest.LogCaptureFixture
                                                 ) -> None:
    assert P.parse(path, "{}") is None
    assert P.parse(path, None) is None
    assert not caplog.records


@pytest.mark.parametrize("path,key", [
    ("/calico/v1/policy/profile/a b/rules", ProfileRulesKey("a b")),
    ("/calico/v1/policy/profile/-x/tags", ProfileTagsKey("-x")),
    ("/calico/v1/policy/profile/../labels", ProfileLabelsKey("..")),
    ("/calico/v1/policy/profile//rules", ProfileRulesKey("")),
    ("/calico/v1/policy/tier/t$1/metadata", TierKey("t$1")),
    ("/calico/v1/policy/tier/t1/policy/p;1", PolicyKey("t1", "p;1")),
    ("/calico/v1/host/h 1/bird_ip", HostIPKey("h 1")),
    ("/calico/v1/host/h1/workload/k8s/w\n/endpoint/e", WorkloadEndpointKey("h1", "k8s", "w\n", "e")),
    ("/calico/v1/host/h1/endpoint/é", HostEndpointKey("h1", "é")),
    ("/calico/v1/config/a b", GlobalConfigKey("a b")),
    ("/calico/v1/ipam/v4/pool/fd00::-64", PoolKey(4, "fd00::/64")),
])
def test_unsafe_key_segments_make_the_value_invalid(
        path: str, key: object, caplog: pytest.LogCaptureFixture) -> None:
    u = P.parse(path, "{}")
    assert u is not None and u.key == key and u.value is None and u.error
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.WARNING
    assert repr(path) in caplog.records[0].getMessage()
    assert "\n" not in caplog.records[0].getMessage()


@pytest.mark.parametrize("path", ["/calico/v1/ipam/v4/pool/10.0.0.1-16",
                                  "/calico/v1/ipam/v4/pool/bogus",
                                  "/calico/v1/ipam/v4/pool/10.0.0.0-08",
                                  "/calico/v6/ipam/v4/pool/10.0.0.0-8x"])
def test_unformable_pool_keys_give_none_and_a_log_line(
        path: str, caplog: pytest.LogCaptureFixture) -> None:
    assert P.parse(path, '{"cidr": "10.0.0.0/16"}') is None
    assert len(caplog.records) == (0 if path.startswith("/calico/v6") else 1)


# --- Ready and config -----------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [("true", True), ("false", None), ("True", None),
                                            (" true", None), ("", None), ("1", None)])
def test_ready(value: str, expected: object) -> None:
    u = P.parse("/calico/v1/Ready", value)
    assert u == ModelUpdate(ReadyKey(), expected, path="/calico/v1/Ready")


def test_config_values() -> None:
    assert valid("/calico/v1/config/LogSeverityScreen", "debug") == ConfigValue(
        "LogSeverityScreen", "debug")
    assert valid("/calico/v1/host/h1/config/FailsafeInboundHostPorts", "22, 179") == ConfigValue(
        "FailsafeInboundHostPorts", "22, 179", "h1")
    assert valid("/calico/v1/config/MetadataAddr", "") == ConfigValue("MetadataAddr", "")
    for bad in ["a\nb", "x\x00", "\x1b[31m", "a\u2028b", "x" * 5000]:
        invalid("/calico/v1/config/LogFilePath", bad)


# --- workload endpoints ---------------------------------------------------------------------

def test_workload_endpoint_full() -> None:
    assert valid(WEP_PATH, WEP) == WorkloadEndpoint(
        key=WEP_KEY, name="cali12345678901", state="active", mac="ee:ee:ee:ee:ee:ee",
        profile_ids=("web",), labels=FrozenDict({"role": "web"}),
        ipv4_nets=("10.65.0.2/32",), ipv6_nets=("fd00:65::2/128",),
        ipv4_nat=(NatMapping("10.65.0.2", "172.18.0.9"),), ipv6_nat=(),
        ipv4_gateway="169.254.1.1", ipv6_gateway="fe80::1")


def test_workload_endpoint_minimal() -> None:
    assert valid(WEP_PATH, {"name": "cali1", "state": "inactive"}) == WorkloadEndpoint(
        key=WEP_KEY, name="cali1", state="inactive")


def wep(**changes: Any) -> dict[str, Any]:
    d = dict(WEP)
    for k, v in changes.items():
        if v is DEL:
            d.pop(k, None)
        else:
            d[k] = v
    return d


DEL = object()


@pytest.mark.parametrize("changes,field,expected", [
    ({"mac": "EE-EE-EE-EE-EE-0A"}, "mac", "ee:ee:ee:ee:ee:0a"),
    ({"mac": DEL}, "mac", None),
    ({"profile_ids": DEL, "profile_id": "legacy"}, "profile_ids", ("legacy",)),
    ({"profile_ids": ["a", "b"], "profile_id": "legacy"}, "profile_ids", ("a", "b")),
    ({"profile_ids": ["b", "a", "b"]}, "profile_ids", ("b", "a")),
    ({"profile_ids": []}, "profile_ids", ()),
    ({"labels": {}}, "labels", FrozenDict()),
    ({"labels": {"k8s.io/app": "", "a": "b-c.d_e"}}, "labels",
     FrozenDict({"k8s.io/app": "", "a": "b-c.d_e"})),
    ({"ipv4_nets": ["10.0.0.5/24", "10.1.1.1"], "ipv4_nat": DEL}, "ipv4_nets",
     ("10.0.0.0/24", "10.1.1.1/32")),
    ({"ipv4_nets": ["10.1.1.1", "10.1.1.1/32"], "ipv4_nat": DEL}, "ipv4_nets", ("10.1.1.1/32",)),
    ({"ipv6_nets": ["FD00:0:0::2", "fd00::5/64"]}, "ipv6_nets", ("fd00::2/128", "fd00::/64")),
    ({"ipv6_nets": ["fd00::2"], "ipv6_nat": [{"int_ip": "fd00::2", "ext_ip": "2001:db8::1"}]},
     "ipv6_nat", (NatMapping("fd00::2", "2001:db8::1"),)),
    ({"ipv4_nat": [{"int_ip": "10.65.0.2", "ext_ip": "1.2.3.4", "extra": 1}]}, "ipv4_nat",
     (NatMapping("10.65.0.2", "1.2.3.4"),)),
    ({"ipv4_gateway": None}, "ipv4_gateway", None),
    ({"ipv6_gateway": "FE80:0::1"}, "ipv6_gateway", "fe80::1"),
    ({"some_future_field": {"x": [1, None]}}, "name", "cali12345678901"),
    ({"name": "cali"}, "name", "cali"),
])
def test_workload_endpoint_fields_accepted(changes: dict[str, Any], field: str,
                                           expected: object) -> None:
    assert getattr(valid(WEP_PATH, wep(**changes)), field) == expected


@pytest.mark.parametrize("changes", [
    {"name": DEL}, {"state": DEL}, {"name": None}, {"name": 5}, {"name": "tap123"},
    {"name": "cali1234567890ab"}, {"name": "cali 1"}, {"name": "cali.1"}, {"name": "calié"},
    {"state": "up"}, {"state": None}, {"state": "ACTIVE"}, {"state": True},
    {"mac": None}, {"mac": "ee:ee:ee:ee:ee"}, {"mac": "zz:ee:ee:ee:ee:ee"}, {"mac": 5},
    {"mac": "ee:ee:ee:ee:ee:ee\n"},
    {"profile_ids": "web"}, {"profile_ids": None}, {"profile_ids": ["a b"]},
    {"profile_ids": [5]}, {"profile_ids": ["-x"]}, {"profile_id": 5},
    {"profile_id": "bad id"}, {"profile_ids": DEL, "profile_id": ["web"]},
    {"labels": None}, {"labels": []}, {"labels": {"a": 5}}, {"labels": {"a": None}},
    {"labels": {"a b": "x"}}, {"labels": {"a": "x y"}}, {"labels": {"a": "x" * 64}},
    {"labels": {"": "x"}}, {"labels": {"-a": "x"}}, {"labels": {"a": "-x"}},
    {"ipv4_nets": "10.0.0.1/32"}, {"ipv4_nets": None}, {"ipv4_nets": ["fd00::1/128"]},
    {"ipv4_nets": ["10.0.0.0/33"]}, {"ipv4_nets": [167772161]}, {"ipv4_nets": ["10.0.0.01"]},
    {"ipv6_nets": ["10.0.0.1/32"]}, {"ipv6_nets": ["fe80::1%eth0"]}, {"ipv6_nets": [None]},
    {"ipv4_nat": [{"int_ip": "10.9.9.9", "ext_ip": "1.2.3.4"}]},
    {"ipv4_nat": [{"int_ip": "10.65.0.2"}]}, {"ipv4_nat": [{"ext_ip": "1.2.3.4"}]},
    {"ipv4_nat": [{"int_ip": "10.65.0.2", "ext_ip": "fd00::1"}]},
    {"ipv4_nat": [{"int_ip": "10.65.0.2", "ext_ip": "1.2.3"}]},
    {"ipv4_nat": [{"int_ip": "10.65.0.2/32", "ext_ip": "1.2.3.4"}]},
    {"ipv4_nat": {"int_ip": "10.65.0.2", "ext_ip": "1.2.3.4"}}, {"ipv4_nat": [None]},
    {"ipv4_nat": None}, {"ipv6_nat": [{"int_ip": "10.65.0.2", "ext_ip": "1.2.3.4"}]},
    {"ipv4_nets": ["10.65.0.0/24"]},  # the nat int_ip is no longer one of the nets (a /32)
    {"ipv4_gateway": "fe80::1"}, {"ipv4_gateway": "10.0.0.0/24"}, {"ipv4_gateway": 5},
    {"ipv6_gateway": "169.254.1.1"}, {"ipv6_gateway": ""},
])
def test_workload_endpoint_fields_rejected(changes: dict[str, Any],
                                           caplog: pytest.LogCaptureFixture) -> None:
    reason = invalid(WEP_PATH, wep(**changes))
    assert len(caplog.records) == 1
    msg = caplog.records[0].getMessage()
    assert caplog.records[0].levelno == logging.WARNING
    assert WEP_PATH in msg and reason in msg


def test_interface_prefixes_are_configurable() -> None:
    p = ModelParser(("tap", "veth"))
    u = p.parse(WEP_PATH, json.dumps(wep(name="tap0")))
    assert u is not None and u.value is not None
    u = p.parse(WEP_PATH, json.dumps(wep(name="cali0")))
    assert u is not None and u.value is None and u.error
    with pytest.raises(ValueError):
        ModelParser(("ca li",))
    with pytest.raises(ValueError):
        ModelParser(())


# --- host endpoints -------------------------------------------------------------------------

def test_host_endpoint() -> None:
    assert valid(HEP_PATH, {"name": "eth0.100", "expected_ipv4_addrs": ["10.0.0.1"],
                            "expected_ipv6_addrs": ["FD00::0:1"], "profile_ids": ["h"],
                            "labels": {"role": "gw"}, "future": 1}) == HostEndpoint(
        key=HEP_KEY, name="eth0.100", expected_ipv4_addrs=("10.0.0.1",),
        expected_ipv6_addrs=("fd00::1",), profile_ids=("h",), labels=FrozenDict({"role": "gw"}))
    assert valid(HEP_PATH, {"expected_ipv4_addrs": ["10.0.0.1"]}) == HostEndpoint(
        key=HEP_KEY, expected_ipv4_addrs=("10.0.0.1",))
    assert valid(HEP_PATH, {"name": "eth0", "profile_id": "legacy"}) == HostEndpoint(
        key=HEP_KEY, name="eth0", profile_ids=("legacy",))


@pytest.mark.parametrize("value", [
    {}, {"expected_ipv4_addrs": []}, {"name": None}, {"name": ""}, {"name": "-eth0"},
    {"name": "eth 0"}, {"name": "x" * 16}, {"name": "eth0", "state": "active"},
    {"name": "eth0", "mac": "ee:ee:ee:ee:ee:ee"}, {"name": "eth0", "ipv4_nets": []},
    {"name": "eth0", "ipv4_nat": []}, {"expected_ipv4_addrs": ["fd00::1"]},
    {"expected_ipv4_addrs": ["10.0.0.0/24"]}, {"expected_ipv6_addrs": ["10.0.0.1"]},
    {"expected_ipv4_addrs": "10.0.0.1"}, {"name": "eth0", "profile_ids": ["a b"]},
    {"name": "eth0", "labels": {"a": "b c"}}, [], "eth0",
])
def test_host_endpoint_rejected(value: object) -> None:
    invalid(HEP_PATH, value)


# --- profiles -------------------------------------------------------------------------------

RULES_PATH = "/calico/v1/policy/profile/web/rules"


def test_profile_rules() -> None:
    value = {"id": "web", "inbound_rules": [{"action": "allow", "src_tag": "web"}],
             "outbound_rules": [{"action": "deny", "protocol": "tcp", "dst_ports": [22]}, {}]}
    got = valid(RULES_PATH, value)
    assert isinstance(got, ProfileRules)
    assert got.profile_id == "web"
    assert got.inbound == (Rule(src_tag="web"),)
    assert [r.action for r in got.outbound] == ["deny", "allow"]
    assert valid(RULES_PATH, {"inbound_rules": [], "outbound_rules": []}) == ProfileRules("web")


@pytest.mark.parametrize("value", [
    {"inbound_rules": []}, {"outbound_rules": []}, {"inbound_rules": None, "outbound_rules": []},
    {"inbound_rules": [], "outbound_rules": [{"protocol": "tcp", "dst_ports": [70000]}]},
    {"inbound_rules": [{"bogus": 1}], "outbound_rules": []},
    {"inbound_rules": [{"src_selector": "has("}], "outbound_rules": []},
    [], "x", "null",
])
def test_profile_rules_rejected(value: object) -> None:
    invalid(RULES_PATH, value)


def test_profile_tags_and_labels() -> None:
    assert valid("/calico/v1/policy/profile/web/tags", ["a", "b.c", "a"]) == ProfileTags(
        "web", ("a", "b.c"))
    assert valid("/calico/v1/policy/profile/web/tags", []) == ProfileTags("web")
    assert valid("/calico/v1/policy/profile/web/labels", {"a": "b"}) == ProfileLabels(
        "web", FrozenDict({"a": "b"}))
    for bad in [["a b"], [5], [None], "a", {"a": "b"}, ["$(reboot)"], ["-j"]]:
        invalid("/calico/v1/policy/profile/web/tags", bad)
    for bad in [["a"], {"a": 1}, {"a b": "c"}, {"a": "é"}, "x"]:
        invalid("/calico/v1/policy/profile/web/labels", bad)


# --- tiers and policies ---------------------------------------------------------------------

TIER_PATH = "/calico/v1/policy/tier/t1/metadata"
POLICY_PATH = "/calico/v1/policy/tier/t1/policy/p1"


@pytest.mark.parametrize("value,order", [
    ({"order": 10}, 10.0), ({"order": -2.5}, -2.5), ({"order": "default"}, None), ({}, None),
    ({"order": None}, None), ({"order": 1, "future": True}, 1.0), ({"order": 10 ** 300}, 1e300),
])
def test_tier(value: object, order: float | None) -> None:
    assert valid(TIER_PATH, value) == Tier("t1", order)


@pytest.mark.parametrize("value", [{"order": "10"}, {"order": True}, {"order": [1]},
                                   {"order": 10 ** 400}, "1e999", '{"order": 1e999}',
                                   '{"order": NaN}', '{"order": Infinity}',
                                   '{"order": 1, "order": 2}', [], 5])
def test_tier_rejected(value: object) -> None:
    invalid(TIER_PATH, value)


def test_policy() -> None:
    got = valid(POLICY_PATH, {"order": 5, "selector": "role == 'web'",
                              "inbound_rules": [{"action": "next-tier"}], "outbound_rules": []})
    assert got == Policy(PolicyKey("t1", "p1"), parse_selector("role == 'web'"), 5.0,
                         (Rule(action="next-tier"),), ())
    got = valid(POLICY_PATH, {"selector": "", "inbound_rules": [], "outbound_rules": []})
    assert isinstance(got, Policy) and got.order is None
    assert got.selector == parse_selector("all()")


@pytest.mark.parametrize("value", [
    {"inbound_rules": [], "outbound_rules": []},
    {"selector": None, "inbound_rules": [], "outbound_rules": []},
    {"selector": "role ==", "inbound_rules": [], "outbound_rules": []},
    {"selector": "all()", "order": "x", "inbound_rules": [], "outbound_rules": []},
    {"selector": "all()", "outbound_rules": []},
    {"selector": "all()", "inbound_rules": [{"action": "accept"}], "outbound_rules": []},
])
def test_policy_rejected(value: object) -> None:
    invalid(POLICY_PATH, value)


# --- pools and host IPs ---------------------------------------------------------------------

def test_pools() -> None:
    assert valid("/calico/v1/ipam/v4/pool/10.65.0.0-16",
                 {"cidr": "10.65.0.0/16", "masquerade": True, "ipip": "tunl0",
                  "disabled": False, "ipam": True}) == Pool("10.65.0.0/16", 4, True, "tunl0")
    assert valid("/calico/v1/ipam/v6/pool/fd00:65::-64",
                 {"cidr": "FD00:65::1/64", "disabled": True}) == Pool(
        "fd00:65::/64", 6, disabled=True)


@pytest.mark.parametrize("value", [
    {}, {"cidr": "10.66.0.0/16"}, {"cidr": "10.65.0.0/24"}, {"cidr": None},
    {"cidr": "10.65.0.0/16", "masquerade": "true"}, {"cidr": "10.65.0.0/16", "masquerade": 1},
    {"cidr": "10.65.0.0/16", "masquerade": None}, {"cidr": "10.65.0.0/16", "disabled": "no"},
    {"cidr": "10.65.0.0/16", "ipip": True}, {"cidr": "10.65.0.0/16", "ipip": "tun l0"},
    {"cidr": "10.65.0.0/16", "ipip": None}, ["10.65.0.0/16"],
])
def test_pool_rejected(value: object) -> None:
    invalid("/calico/v1/ipam/v4/pool/10.65.0.0-16", value)


def test_bird_ip() -> None:
    assert valid("/calico/v1/host/h1/bird_ip", "10.0.0.1") == HostIP("h1", "10.0.0.1")
    for bad in ["", "10.0.0.1 ", "10.0.0.1/32", "fd00::1", "x", '"10.0.0.1"']:
        invalid("/calico/v1/host/h1/bird_ip", bad)


# --- garbage --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "", "{", "null", "true", "[1, 2", "\x00", "{\"name\": \"cali1\", \"state\": \"active\"",
    "[" * 100000, "{\"a\":" * 50000, "1" * 5000, "{\"name\": \"cali1\", \"state\": \"active\","
    " \"name\": \"cali2\"}", "\ud800", "{\"state\": NaN}", "-Infinity",
])
def test_garbage_is_invalid_never_raises(text: str) -> None:
    for path in [WEP_PATH, HEP_PATH, RULES_PATH, POLICY_PATH, TIER_PATH,
                 "/calico/v1/ipam/v4/pool/10.65.0.0-16", "/calico/v1/policy/profile/web/tags",
                 "/calico/v1/policy/profile/web/labels"]:
        invalid(path, text)


@pytest.mark.parametrize("value", [b"\xff\xfe", b'{"name": "cali1", "state": "active"}', 5,
                                   ["x"], 1.5])
def test_non_string_values_never_raise(value: object) -> None:
    u = P.parse(WEP_PATH, value)  # type: ignore[arg-type]
    assert u is not None and u.key == WEP_KEY
    if value == b'{"name": "cali1", "state": "active"}':
        assert u.value == WorkloadEndpoint(WEP_KEY, "cali1", "active")
    else:
        assert u.value is None and u.error


@pytest.mark.parametrize("path", [b"/calico/v1/Ready", b"\xff", None, 5, ["x"]])
def test_non_string_paths_never_raise(path: object) -> None:
    u = P.parse(path, "true")  # type: ignore[arg-type]
    if path == b"/calico/v1/Ready":
        assert u is not None and u.value is True
    else:
        assert u is None


def test_exactly_one_warning_per_invalid_update(caplog: pytest.LogCaptureFixture) -> None:
    invalid(RULES_PATH, {"inbound_rules": [{"protocol": "tcp -j ACCEPT"}], "outbound_rules": []})
    assert len(caplog.records) == 1
    msg = caplog.records[0].getMessage()
    assert RULES_PATH in msg and "inbound_rules[0]" in msg and "protocol" in msg
    assert "\n" not in msg


def test_valid_updates_and_deletes_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    valid(WEP_PATH, WEP)
    valid(RULES_PATH, {"inbound_rules": [], "outbound_rules": []})
    assert P.parse(WEP_PATH, None) == ModelUpdate(WEP_KEY, None, path=WEP_PATH)
    assert P.parse("/calico/v1/policy/profile/a b/rules", None) == ModelUpdate(
        ProfileRulesKey("a b"), None, path="/calico/v1/policy/profile/a b/rules")
    assert not caplog.records


def test_reason_with_control_characters_stays_on_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    # The selector text (with a raw newline and U+2028) gets quoted into the reason.
    invalid(POLICY_PATH, {"selector": "a == 'x\n\u2028' &&", "inbound_rules": [],
                          "outbound_rules": []})
    (record,) = caplog.records
    msg = record.getMessage()
    assert "selector" in msg
    assert "\n" not in msg and "\u2028" not in msg
