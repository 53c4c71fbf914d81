"""A rule's match criteria rendered as iptables match fragments, for one IP family.

A rule with more ports than one ``multiport`` match takes (15, a range counting 2) becomes
several iptables rules: the positive src and dst port chunks are ORed, so the rule is the
product src-chunk × dst-chunk; negated chunks are ANDed, so they all go into every rule.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Literal

from felix.model.objects import PortRange, Rule
from felix.rules import names

MULTIPORT_MAX = 15
ICMP_FAMILY = {"icmp": 4, "icmpv6": 6}

SetKind = Literal["tag", "selector"]
SetRef = tuple[SetKind, str]  # ("tag", tag) or ("selector", selector uid)


def _net_version(net: str) -> int:
    return ipaddress.ip_network(net, strict=False).version


def rule_families(rule: Rule) -> frozenset[int]:
    """The families a rule applies to: pinned by ip_version, an ICMP protocol or any net
    (positive or negated); the parser rejects rules whose pins disagree."""
    pins: set[int] = set()
    if rule.ip_version is not None:
        pins.add(rule.ip_version)
    if rule.protocol in ICMP_FAMILY:
        pins.add(ICMP_FAMILY[rule.protocol])
    for net in (rule.src_net, rule.not_src_net, rule.dst_net, rule.not_dst_net):
        if net is not None:
            pins.add(_net_version(net))
    if not pins:
        return frozenset((4, 6))
    return frozenset(pins) if len(pins) == 1 else frozenset()


def rule_set_refs(rule: Rule) -> set[SetRef]:
    refs: set[SetRef] = set()
    for tag in (rule.src_tag, rule.not_src_tag, rule.dst_tag, rule.not_dst_tag):
        if tag is not None:
            refs.add(("tag", tag))
    for sel in (rule.src_selector, rule.not_src_selector, rule.dst_selector,
                rule.not_dst_selector):
        if sel is not None:
            refs.add(("selector", sel.uid))
    return refs


def set_name(ip_version: int, ref: SetRef) -> str:
    kind, value = ref
    return names.tag_set(ip_version, value) if kind == "tag" else names.selector_set(
        ip_version, value)


def port_chunks(ports: tuple[PortRange, ...]) -> list[str]:
    """Comma-joined multiport arguments, each costing at most MULTIPORT_MAX slots."""
    chunks: list[str] = []
    cur: list[str] = []
    used = 0
    for p in ports:
        cost = 1 if p.lo == p.hi else 2
        if used + cost > MULTIPORT_MAX:
            chunks.append(",".join(cur))
            cur, used = [], 0
        cur.append(str(p.lo) if p.lo == p.hi else f"{p.lo}:{p.hi}")
        used += cost
    if cur:
        chunks.append(",".join(cur))
    return chunks


def _proto_arg(protocol: str, ip_version: int) -> str:
    # ip6tables knows the ICMPv6 protocol by this name; "icmp" stays 1 in both families.
    return "ipv6-icmp" if protocol == "icmpv6" and ip_version == 6 else protocol


def _icmp(rule: Rule, ip_version: int, type_: int, code: int | None, negate: bool) -> str:
    val = str(type_) if code is None else f"{type_}/{code}"
    bang = "! " if negate else ""
    if ip_version == 4:
        return f"-m icmp {bang}--icmp-type {val}"
    return f"-m icmp6 {bang}--icmpv6-type {val}"


def _not_range(flag: str, net: str) -> str:
    n = ipaddress.ip_network(net, strict=False)
    return f"-m iprange ! {flag} {n.network_address}-{n.broadcast_address}"


def render_matches(rule: Rule, ip_version: int) -> list[str]:
    """The rule's match fragments for ``ip_version`` (one per iptables rule it needs, each
    empty or ending in a space), or [] when the rule does not apply to that family."""
    if ip_version not in rule_families(rule):
        return []
    v = ip_version
    parts: list[str] = []
    if rule.protocol is not None:
        # iptables takes one -p: a different negated protocol is implied by the positive one,
        # the same one makes the rule match nothing (protocols are canonical, so == works).
        if rule.protocol == rule.not_protocol:
            return []
        parts.append(f"-p {_proto_arg(rule.protocol, v)}")
    elif rule.not_protocol is not None:
        parts.append(f"! -p {_proto_arg(rule.not_protocol, v)}")
    for flag, range_flag, net, not_net in (("-s", "--src-range", rule.src_net, rule.not_src_net),
                                           ("-d", "--dst-range", rule.dst_net, rule.not_dst_net)):
        if net is not None:
            parts.append(f"{flag} {net}")
        if not_net is not None:
            # iptables takes one -s (and one -d) per rule: with a positive net present, the
            # negated one goes through the iprange match instead.
            parts.append(f"! {flag} {not_net}" if net is None else _not_range(range_flag, not_net))
    for direction, tag, sel, neg in (
            ("src", rule.src_tag, rule.src_selector, False),
            ("src", rule.not_src_tag, rule.not_src_selector, True),
            ("dst", rule.dst_tag, rule.dst_selector, False),
            ("dst", rule.not_dst_tag, rule.not_dst_selector, True)):
        bang = "! " if neg else ""
        if tag is not None:
            parts.append(f"-m set {bang}--match-set {names.tag_set(v, tag)} {direction}")
        if sel is not None:
            parts.append(f"-m set {bang}--match-set {names.selector_set(v, sel.uid)} "
                         f"{direction}")
    for flag, ports in (("--sports", rule.not_src_ports), ("--dports", rule.not_dst_ports)):
        for chunk in port_chunks(ports):
            parts.append(f"-m multiport ! {flag} {chunk}")
    if rule.icmp_type is not None:
        parts.append(_icmp(rule, v, rule.icmp_type, rule.icmp_code, False))
    if rule.not_icmp_type is not None:
        parts.append(_icmp(rule, v, rule.not_icmp_type, rule.not_icmp_code, True))
    base = "".join(p + " " for p in parts)
    src = [f"-m multiport --sports {c} " for c in port_chunks(rule.src_ports)] or [""]
    dst = [f"-m multiport --dports {c} " for c in port_chunks(rule.dst_ports)] or [""]
    return [base + s + d for s in src for d in dst]


def referenced_sets(rules: Iterable[Rule], ip_version: int) -> set[SetRef]:
    """The sets that the rendering of ``rules`` for ``ip_version`` references."""
    refs: set[SetRef] = set()
    for rule in rules:
        if ip_version in rule_families(rule):
            refs |= rule_set_refs(rule)
    return refs
