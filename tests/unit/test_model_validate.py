"""Table tests for the safe-token predicates in felix/model/validate.py."""

from __future__ import annotations

import pytest

from felix.model import validate as v

# Strings that must never be accepted as any token.
HOSTILE = ["", " ", "a b", "a\nb", "a\tb", "a\"b", "a'b", "a;b", "$(reboot)", "`id`", "a|b",
           "a&b", "a>b", "--dport", "-j", "é", "caf\u00e9", "a\x00b", "a\u2028b", "x" * 10000,
           "tcp -j ACCEPT", "a,b", "a*b", "a\\b"]


@pytest.mark.parametrize("s", HOSTILE)
@pytest.mark.parametrize("pred", [v.is_id, v.is_tag, v.is_hostname, v.is_label_name,
                                  v.is_log_prefix, v.is_host_iface, v.is_iface_prefix,
                                  v.is_config_name])
def test_hostile_strings_rejected_everywhere(pred: object, s: str) -> None:
    assert not pred(s)  # type: ignore[operator]


@pytest.mark.parametrize("s", [x for x in HOSTILE if x != ""])
def test_hostile_label_values_rejected(s: str) -> None:
    assert not v.is_label_value(s)


@pytest.mark.parametrize("s,ok", [
    ("web", True), ("Web_1.2-3", True), ("a", True), ("_x", True), (".x", True),
    ("x" * 128, True), ("x" * 129, False), ("-x", False), (".", False), ("..", False),
    ("a/b", False), ("a:b", False), (5, False), (None, False), (b"web", False),
])
def test_ids(s: object, ok: bool) -> None:
    assert v.is_id(s) is ok
    assert v.is_tag(s) is ok


@pytest.mark.parametrize("s,ok", [
    ("host1", True), ("host1.example.com", True), ("h" * 253, True), ("h" * 254, False),
    ("-h", False), ("..", False), ("h/1", False),
])
def test_hostnames(s: str, ok: bool) -> None:
    assert v.is_hostname(s) is ok


@pytest.mark.parametrize("s,ok", [
    ("role", True), ("k8s.io/app", True), ("a_b-c.d", True), ("1abc", True),
    ("a" * 253, True), ("a" * 254, False), ("_a", False), ("-a", False), ("/a", False),
    (".a", False), ("a=b", False), ("a:b", False),
])
def test_label_names(s: str, ok: bool) -> None:
    assert v.is_label_name(s) is ok


@pytest.mark.parametrize("s,ok", [
    ("", True), ("web", True), ("a.b_c-d", True), ("a" * 63, True), ("a" * 64, False),
    ("-a", False), ("a-", False), ("_a", False), ("a/b", False), ("1", True), (5, False),
    (None, False), (True, False),
])
def test_label_values(s: object, ok: bool) -> None:
    assert v.is_label_value(s) is ok


@pytest.mark.parametrize("s,ok", [
    ("DROP:", True), ("calico-drop", True), ("a.b_c:d", True), ("a" * 27, True),
    ("a" * 28, False), ("-a", False), ("a/b", False), ("", False),
])
def test_log_prefixes(s: str, ok: bool) -> None:
    assert v.is_log_prefix(s) is ok


@pytest.mark.parametrize("s,ok", [
    ("cali1234567890a", True), ("cali", True), ("cali_x-y", True), ("cali1234567890ab", False),
    ("tap1234", False), ("cali.1", False), ("cali 1", False), ("Cali1", False),
])
def test_workload_ifaces(s: str, ok: bool) -> None:
    assert v.is_workload_iface(s, ("cali",)) is ok


def test_workload_iface_multiple_prefixes() -> None:
    assert v.is_workload_iface("tap1", ("cali", "tap"))
    assert not v.is_workload_iface("veth1", ("cali", "tap"))


@pytest.mark.parametrize("s,ok", [
    ("eth0", True), ("eth0.100", True), ("tunl0", True), ("x" * 15, True), ("x" * 16, False),
    ("-eth0", False), (".eth0", False), ("..", False), ("eth/0", False),
])
def test_host_ifaces(s: str, ok: bool) -> None:
    assert v.is_host_iface(s) is ok


@pytest.mark.parametrize("s,ok", [
    ("DROP", True), ("a b, c", True), ("/var/log/calico/felix.log", True), ("", True),
    ("a\nb", False), ("a\rb", False), ("a\x00", False), ("a\x7f", False), ("a\x85", False),
    ("a\u2028", False), ("x" * 4097, False), (5, False),
])
def test_config_values(s: object, ok: bool) -> None:
    assert v.is_config_value(s) is ok


@pytest.mark.parametrize("s,expect", [
    ("EE:EE:EE:EE:EE:EE", "ee:ee:ee:ee:ee:ee"), ("00-11-22-33-44-aa", "00:11:22:33:44:aa"),
    ("00:11-22:33:44:55", None), ("00:11:22:33:44", None), ("0011.2233.4455", None),
    ("00:11:22:33:44:55\n", None), ("gg:11:22:33:44:55", None), (None, None), (5, None),
])
def test_canonical_mac(s: object, expect: str | None) -> None:
    assert v.canonical_mac(s) == expect


def test_safe_token_regex_is_strict() -> None:
    for s in HOSTILE:
        if s:
            assert not v.is_safe_token(s)
    assert v.is_safe_token("10.0.0.0/24")
    assert v.is_safe_token("fd00::/64")
