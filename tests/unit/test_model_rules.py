"""Table tests for rule parsing: every key of the contract's rule table and its "!" form."""

from __future__ import annotations

from typing import Any

import pytest

from felix.model.objects import PortRange, Rule
from felix.model.rules import parse_rule, parse_rule_list
from felix.model.selector import parse_selector
from felix.model.validate import Invalid

MATCH_KEYS = ["protocol", "src_net", "dst_net", "src_tag", "dst_tag", "src_selector",
              "dst_selector", "src_ports", "dst_ports", "icmp_type", "icmp_code"]


def _field(key: str) -> str:
    return "not_" + key[1:] if key.startswith("!") else key


# (rule JSON, field name, expected value) — every match key in both forms.
def _accept_cases() -> list[tuple[dict[str, Any], str, object]]:
    cases: list[tuple[dict[str, Any], str, object]] = []
    for neg in ("", "!"):
        cases += [
            ({neg + "protocol": "tcp"}, neg + "protocol", "tcp"),
            ({neg + "protocol": "UDP"}, neg + "protocol", "udp"),
            ({neg + "protocol": 6}, neg + "protocol", "tcp"),
            ({neg + "protocol": 1}, neg + "protocol", "icmp"),
            ({neg + "protocol": 17}, neg + "protocol", "udp"),
            ({neg + "protocol": 58}, neg + "protocol", "icmpv6"),
            ({neg + "protocol": 132}, neg + "protocol", "sctp"),
            ({neg + "protocol": 136}, neg + "protocol", "udplite"),
            ({neg + "protocol": 47}, neg + "protocol", "47"),
            ({neg + "protocol": 255}, neg + "protocol", "255"),
            ({neg + "src_net": "10.0.0.5/24"}, neg + "src_net", "10.0.0.0/24"),
            ({neg + "src_net": "10.0.0.5"}, neg + "src_net", "10.0.0.5/32"),
            ({neg + "dst_net": "FD00::1/64"}, neg + "dst_net", "fd00::/64"),
            ({neg + "dst_net": "fd00::1"}, neg + "dst_net", "fd00::1/128"),
            ({neg + "src_tag": "web.tag-1"}, neg + "src_tag", "web.tag-1"),
            ({neg + "dst_tag": "db"}, neg + "dst_tag", "db"),
            ({neg + "src_selector": "role == 'web'"}, neg + "src_selector",
             parse_selector("role == 'web'")),
            ({neg + "dst_selector": "has(x)"}, neg + "dst_selector", parse_selector("has(x)")),
            ({"protocol": "tcp", neg + "src_ports": [80, "1000:2000", 0, 65535]},
             neg + "src_ports",
             (PortRange(80, 80), PortRange(1000, 2000), PortRange(0, 0),
              PortRange(65535, 65535))),
            ({"protocol": "udplite", neg + "dst_ports": ["0:65535"]}, neg + "dst_ports",
             (PortRange(0, 65535),)),
            ({"protocol": "icmp", neg + "icmp_type": 8}, neg + "icmp_type", 8),
            ({"protocol": "icmpv6", neg + "icmp_type": 0, neg + "icmp_code": 254},
             neg + "icmp_code", 254),
        ]
    cases += [
        ({}, "action", "allow"),
        ({"action": "deny"}, "action", "deny"),
        ({"action": "next-tier"}, "action", "next-tier"),
        ({"action": "log", "log_prefix": "calico-log:"}, "log_prefix", "calico-log:"),
        ({"ip_version": 4}, "ip_version", 4),
        ({"ip_version": 6, "protocol": "icmpv6"}, "ip_version", 6),
        ({"ip_version": 4, "src_net": "10.0.0.0/8", "!dst_net": "10.1.0.0/16"}, "not_dst_net",
         "10.1.0.0/16"),
        ({"protocol": "sctp", "dst_ports": [1]}, "dst_ports", (PortRange(1, 1),)),
        ({"protocol": "tcp", "!protocol": "udp"}, "not_protocol", "udp"),
        ({"ip_version": 6, "!protocol": "icmp"}, "not_protocol", "icmp"),
        ({"protocol": "icmp", "icmp_type": 3, "!icmp_type": 4}, "not_icmp_type", 4),
    ]
    return cases


@pytest.mark.parametrize("raw,field,expected", _accept_cases())
def test_accept(raw: dict[str, Any], field: str, expected: object) -> None:
    rule = parse_rule(raw)
    assert getattr(rule, _field(field)) == expected


def test_every_match_key_and_negation_is_covered() -> None:
    covered = {k for raw, _, _ in _accept_cases() for k in raw}
    for k in MATCH_KEYS:
        assert k in covered and "!" + k in covered


def test_rule_defaults() -> None:
    assert parse_rule({}) == Rule()


REJECT: list[dict[str, Any]] = []
for _neg in ("", "!"):
    REJECT += [
        {_neg + "protocol": "tcpx"}, {_neg + "protocol": 0}, {_neg + "protocol": 256},
        {_neg + "protocol": -6}, {_neg + "protocol": True}, {_neg + "protocol": "6"},
        {_neg + "protocol": 6.0}, {_neg + "protocol": None}, {_neg + "protocol": ["tcp"]},
        {_neg + "protocol": "tcp -j ACCEPT"},
        {_neg + "src_net": "10.0.0.0/33"}, {_neg + "src_net": "10.0.0"},
        {_neg + "src_net": 167772160}, {_neg + "src_net": "fe80::1%eth0/64"},
        {_neg + "dst_net": "10.0.0.0/255.255.0.0"}, {_neg + "dst_net": None},
        {_neg + "dst_net": " 10.0.0.0/8"}, {_neg + "dst_net": "10.0.0.0/8\n"},
        {_neg + "src_tag": "a b"}, {_neg + "src_tag": "-x"}, {_neg + "dst_tag": ""},
        {_neg + "dst_tag": 5}, {_neg + "dst_tag": "é"},
        {_neg + "src_selector": "role =="}, {_neg + "src_selector": 5},
        {_neg + "dst_selector": "has("}, {_neg + "dst_selector": None},
        {"protocol": "tcp", _neg + "src_ports": []}, {"protocol": "tcp", _neg + "src_ports": 80},
        {"protocol": "tcp", _neg + "src_ports": [65536]},
        {"protocol": "tcp", _neg + "src_ports": [-1]},
        {"protocol": "tcp", _neg + "src_ports": ["80"]},
        {"protocol": "tcp", _neg + "src_ports": ["2000:1000"]},
        {"protocol": "tcp", _neg + "dst_ports": ["80:80"]},
        {"protocol": "tcp", _neg + "dst_ports": ["80-90"]},
        {"protocol": "tcp", _neg + "dst_ports": ["1:65536"]},
        {"protocol": "tcp", _neg + "dst_ports": [True]},
        {"protocol": "tcp", _neg + "dst_ports": [80.0]},
        {"protocol": "tcp", _neg + "dst_ports": ["٨:٩"]},
        {"protocol": "tcp", _neg + "dst_ports": ["--dport"]},
        {_neg + "dst_ports": [80]},
        {"protocol": "icmp", _neg + "dst_ports": [80]},
        {"!protocol": "tcp", _neg + "dst_ports": [80]},
        {"protocol": 47, _neg + "dst_ports": [80]},
        {"protocol": "icmp", _neg + "icmp_type": 255},
        {"protocol": "icmp", _neg + "icmp_type": -1},
        {"protocol": "icmp", _neg + "icmp_type": "8"},
        {"protocol": "icmp", _neg + "icmp_code": 0},
        {"protocol": "icmp", _neg + "icmp_type": 8, _neg + "icmp_code": 255},
        {_neg + "icmp_type": 8},
        {"protocol": "tcp", _neg + "icmp_type": 8},
        {"!protocol": "icmp", _neg + "icmp_type": 8},
    ]
REJECT += [
    {"action": "accept"}, {"action": "ALLOW"}, {"action": None}, {"action": 1},
    {"!action": "deny"}, {"ip_version": 5}, {"ip_version": "4"}, {"ip_version": True},
    {"ip_version": 4.0}, {"!ip_version": 4}, {"log_prefix": "a b"}, {"log_prefix": "x" * 28},
    {"log_prefix": "-x"}, {"!log_prefix": "x"}, {"bogus": 1}, {"!bogus": 1}, {"!!protocol": 6},
    {"id": "x"},
    # family mismatches
    {"protocol": "icmp", "ip_version": 6}, {"protocol": "icmpv6", "ip_version": 4},
    {"protocol": 1, "ip_version": 6}, {"protocol": 58, "ip_version": 4},
    {"ip_version": 4, "src_net": "fd00::/64"}, {"ip_version": 6, "dst_net": "10.0.0.0/8"},
    {"ip_version": 4, "!src_net": "fd00::/64"}, {"ip_version": 6, "!dst_net": "10.0.0.0/8"},
    {"src_net": "10.0.0.0/8", "dst_net": "fd00::/64"},
    {"!src_net": "10.0.0.0/8", "dst_net": "fd00::/64"},
    {"protocol": "icmp", "src_net": "fd00::/64"}, {"protocol": "icmpv6", "dst_net": "10.0.0.1"},
]


@pytest.mark.parametrize("raw", REJECT, ids=[repr(r)[:60] for r in REJECT])
def test_reject(raw: dict[str, Any]) -> None:
    with pytest.raises(Invalid):
        parse_rule(raw)


@pytest.mark.parametrize("raw", [None, [], "allow", 5, ["action"]])
def test_rule_must_be_object(raw: object) -> None:
    with pytest.raises(Invalid):
        parse_rule(raw)


def test_one_bad_rule_invalidates_the_list_and_says_where() -> None:
    with pytest.raises(Invalid, match=r"inbound_rules\[1\]: .*protocol"):
        parse_rule_list([{}, {"protocol": "bogus"}, {}], "inbound_rules")


def test_rule_list_must_be_list() -> None:
    with pytest.raises(Invalid):
        parse_rule_list({"action": "allow"}, "inbound_rules")
    assert parse_rule_list([], "x") == ()
