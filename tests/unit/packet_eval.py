"""Test support: the desired state a message stream describes, an interpreter for the rendered
iptables rules, and a direct (reference) evaluation of the datastore contract's semantics.

``DesiredState.apply`` checks the stream's ordering contract as it goes (sets and jump targets
exist before a chain refers to them; nothing is removed while still referenced).

``Interpreter`` walks rule-body strings the way netfilter would for the subset felix emits; it
raises on anything it does not understand, so a rendering change cannot silently pass.

``reference_verdict`` evaluates "Semantics felix must enforce" directly on the model objects,
with no knowledge of chains, marks or ipsets.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from felix.messages import (ChainRemoved, ChainSet, EndpointRemoved, EndpointSet, HookSet,
                            InSync, IpsetDelta, IpsetRemoved, IpsetSet, Message, RoutesRemoved,
                            RoutesSet)
from felix.model.objects import (HostEndpoint, Policy, PortRange, ProfileRules, Rule, Tier,
                                 WorkloadEndpoint)

BUILTIN_TARGETS = {"ACCEPT", "DROP", "RETURN", "LOG", "MARK", "MASQUERADE", "DNAT", "SNAT"}
PROTO_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132,
                 "udplite": 136, "ipencap": 4}


def proto_number(p: str) -> int:
    return PROTO_NUMBERS[p] if p in PROTO_NUMBERS else int(p)


# --- desired state ------------------------------------------------------------------------


@dataclass
class DesiredState:
    chains: dict[tuple[int, str, str], tuple[str, ...]] = field(default_factory=dict)
    hooks: dict[tuple[int, str, str], tuple[str, ...]] = field(default_factory=dict)
    sets: dict[tuple[int, str], set[str]] = field(default_factory=dict)
    routes: dict[tuple[int, str], RoutesSet] = field(default_factory=dict)
    endpoints: dict[object, EndpointSet] = field(default_factory=dict)
    in_sync: bool = False
    strict: bool = True

    def apply_all(self, msgs: Iterable[Message]) -> None:
        for m in msgs:
            self.apply(m)

    def _check_refs(self, v: int, table: str, rules: Iterable[str]) -> None:
        for rule in rules:
            toks = rule.split()
            for i, t in enumerate(toks[:-1]):
                if t in ("-j", "-g") and toks[i + 1] not in BUILTIN_TARGETS:
                    assert (v, table, toks[i + 1]) in self.chains, \
                        f"jump to missing chain {toks[i + 1]} ({v}, {table})"
                if t == "--match-set":
                    assert (v, toks[i + 1]) in self.sets, f"missing ipset {toks[i + 1]}"

    def _referrers(self, v: int, table: str | None, name: str, token: str) -> list[str]:
        out = []
        for (cv, ct, cn), rules in list(self.chains.items()) + [
                (k, r) for k, r in self.hooks.items()]:
            if cv != v or (table is not None and ct != table):
                continue
            for rule in rules:
                toks = rule.split()
                if any(toks[i] == token and toks[i + 1] == name for i in range(len(toks) - 1)):
                    out.append(cn)
        return out

    def apply(self, m: Message) -> None:
        if isinstance(m, ChainSet):
            if self.strict:
                self.chains[(m.ip_version, m.table, m.name)] = m.rules  # allow self-reference
                self._check_refs(m.ip_version, m.table, m.rules)
            self.chains[(m.ip_version, m.table, m.name)] = m.rules
        elif isinstance(m, ChainRemoved):
            if self.strict:
                refs = [r for r in self._referrers(m.ip_version, m.table, m.name, "-j")
                        + self._referrers(m.ip_version, m.table, m.name, "-g") if r != m.name]
                assert not refs, f"chain {m.name} removed while {refs} jump to it"
            self.chains.pop((m.ip_version, m.table, m.name))
        elif isinstance(m, HookSet):
            if self.strict:
                self._check_refs(m.ip_version, m.table, m.rules)
            self.hooks[(m.ip_version, m.table, m.kernel_chain)] = m.rules
        elif isinstance(m, IpsetSet):
            assert m.name.startswith(f"cali{m.ip_version}") and len(m.name) <= 31
            self.sets[(m.ip_version, m.name)] = set(m.members)
        elif isinstance(m, IpsetDelta):
            members = self.sets[(m.ip_version, m.name)]
            if self.strict:
                assert not (m.added & members), "delta adds present members"
                assert m.removed <= members, "delta removes absent members"
                assert not (m.added & m.removed)
            members |= m.added
            members -= m.removed
        elif isinstance(m, IpsetRemoved):
            if self.strict:
                refs = self._referrers(m.ip_version, None, m.name, "--match-set")
                assert not refs, f"set {m.name} removed while {refs} use it"
            del self.sets[(m.ip_version, m.name)]
        elif isinstance(m, RoutesSet):
            self.routes[(m.ip_version, m.ifname)] = m
        elif isinstance(m, RoutesRemoved):
            del self.routes[(m.ip_version, m.ifname)]
        elif isinstance(m, EndpointSet):
            self.endpoints[m.endpoint_key] = m
        elif isinstance(m, EndpointRemoved):
            del self.endpoints[m.endpoint_key]
        elif isinstance(m, InSync):
            self.in_sync = True
        else:
            raise AssertionError(f"unknown message {m!r}")

    def snapshot(self) -> tuple[object, ...]:
        return (dict(self.chains), dict(self.hooks),
                {k: frozenset(v) for k, v in self.sets.items()}, dict(self.routes),
                dict(self.endpoints))


# --- the interpreter ----------------------------------------------------------------------


@dataclass(frozen=True)
class Packet:
    ip_version: int
    src: str
    dst: str
    protocol: str  # name or number
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    iif: str | None = None
    oif: str | None = None
    src_mac: str | None = None


def _iface_match(pattern: str, name: str | None) -> bool:
    if name is None:
        return False
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _in_net(ip: str, net: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(net, strict=False)


def _ports_match(spec: str, port: int | None) -> bool:
    if port is None:
        return False
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


class UnknownSyntax(Exception):
    pass


@dataclass
class Outcome:
    verdict: str  # ACCEPT, DROP or FALLTHROUGH (the top chain returned)
    logs: list[str] = field(default_factory=list)


class Interpreter:
    def __init__(self, chains: Mapping[str, tuple[str, ...]],
                 sets: Mapping[str, Iterable[str]]) -> None:
        self.chains = chains
        self.sets = {k: [ipaddress.ip_network(m, strict=False) for m in v]
                     for k, v in sets.items()}
        self._parsed: dict[str, tuple[list[str], list[str]]] = {}

    def _split(self, rule: str) -> tuple[list[str], list[str]]:
        if rule not in self._parsed:
            toks = shlex.split(rule)
            for flag in ("-j", "-g"):
                if flag in toks:
                    i = toks.index(flag)
                    self._parsed[rule] = (toks[:i], toks[i:])
                    break
            else:
                self._parsed[rule] = (toks, [])
        return self._parsed[rule]

    def _matches(self, toks: list[str], p: Packet, mark: int) -> bool:
        for flag in ("-p", "-s", "-d"):
            if toks.count(flag) > 1:
                raise UnknownSyntax(f"iptables allows one {flag}: {toks}")
        i = 0
        neg = False
        ok = True
        module = None
        while i < len(toks):
            t = toks[i]
            if t == "!":
                neg = True
                i += 1
                continue
            arg = toks[i + 1] if i + 1 < len(toks) else ""
            if t == "-m":
                module = arg
                i += 2
                continue
            if t == "-i":
                res = _iface_match(arg, p.iif)
            elif t == "-o":
                res = _iface_match(arg, p.oif)
            elif t == "-s":
                res = _in_net(p.src, arg)
            elif t == "-d":
                res = _in_net(p.dst, arg)
            elif t == "-p":
                res = proto_number(p.protocol) == proto_number(arg)
            elif t == "--ctstate":
                res = "NEW" in arg.split(",")
            elif t == "--mark":
                v, _, m = arg.partition("/")
                res = (mark & int(m, 16)) == int(v, 16)
            elif t == "--match-set":
                addr = ipaddress.ip_address(p.src if toks[i + 2] == "src" else p.dst)
                res = any(addr in n for n in self.sets[arg])
                i += 1
            elif t in ("--sports", "--dports") and module == "multiport":
                # The kernel's limit: 15 slots, a range taking two.
                if sum(2 if ":" in x else 1 for x in arg.split(",")) > 15:
                    raise UnknownSyntax(f"multiport list too long: {arg}")
                res = _ports_match(arg, p.sport if t == "--sports" else p.dport)
            elif t in ("--sport", "--dport") and module in ("tcp", "udp"):
                res = _ports_match(arg, p.sport if t == "--sport" else p.dport)
            elif (t == "--icmp-type" and module == "icmp") or (
                    t == "--icmpv6-type" and module == "icmp6"):
                ty, _, code = arg.partition("/")
                res = p.icmp_type == int(ty) and (not code or p.icmp_code == int(code))
            elif t in ("--src-range", "--dst-range") and module == "iprange":
                lo, hi = (ipaddress.ip_address(x) for x in arg.split("-"))
                addr = ipaddress.ip_address(p.src if t == "--src-range" else p.dst)
                res = (addr.version == lo.version
                       and int(lo) <= int(addr) <= int(hi))
            elif t == "--mac-source" and module == "mac":
                res = p.src_mac is not None and p.src_mac == arg
            else:
                raise UnknownSyntax(f"unknown match {t!r} in {toks}")
            ok = ok and (res != neg)
            neg = False
            i += 2
        return ok

    def run(self, chain: str, p: Packet) -> Outcome:
        """Walk ``chain`` (as if jumped to from a kernel chain) with a fresh mark."""
        out = Outcome("FALLTHROUGH")
        mark = 0
        stack: list[tuple[str, int]] = []
        cur, pos = chain, 0
        steps = 0
        while True:
            steps += 1
            assert steps < 100_000, "rule loop"
            rules = self.chains[cur]
            if pos >= len(rules):
                if not stack:
                    return out
                cur, pos = stack.pop()
                continue
            rule = rules[pos]
            pos += 1
            matches, target = self._split(rule)
            if not self._matches(matches, p, mark):
                continue
            if not target:
                continue
            verb, name = target[0], target[1]
            if name in ("ACCEPT", "DROP"):
                out.verdict = name
                return out
            if name == "RETURN":
                if not stack:
                    return out
                cur, pos = stack.pop()
            elif name == "LOG":
                out.logs.append(rule)
            elif name == "MARK":
                assert target[2] == "--set-xmark"
                v, _, m = target[3].partition("/")
                mark = (mark & ~int(m, 16)) ^ int(v, 16)
            elif name in BUILTIN_TARGETS:
                raise UnknownSyntax(f"target {name} not expected in a filter chain")
            else:
                if name not in self.chains:
                    raise AssertionError(f"jump to missing chain {name}")
                if verb == "-j":
                    stack.append((cur, pos))
                cur, pos = name, 0


# --- reference semantics ------------------------------------------------------------------


@dataclass
class Model:
    """Plain model objects, valid ones only."""

    hostname: str
    endpoints: dict[object, WorkloadEndpoint | HostEndpoint] = field(default_factory=dict)
    profile_rules: dict[str, ProfileRules] = field(default_factory=dict)
    profile_tags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    profile_labels: dict[str, Mapping[str, str]] = field(default_factory=dict)
    tiers: dict[str, Tier] = field(default_factory=dict)
    policies: dict[object, Policy] = field(default_factory=dict)

    def labels(self, ep: WorkloadEndpoint | HostEndpoint) -> dict[str, str]:
        merged: dict[str, str] = {}
        for pid in reversed(ep.profile_ids):
            merged.update(self.profile_labels.get(pid, {}))
        merged.update(ep.labels)
        return merged

    def ips(self, ep: WorkloadEndpoint | HostEndpoint, v: int) -> list[str]:
        if isinstance(ep, WorkloadEndpoint):
            return list(ep.nets(v))
        return list(ep.addrs(v))


def _ip_in(model: Model, ip: str, v: int, pred) -> bool:  # type: ignore[no-untyped-def]
    addr = ipaddress.ip_address(ip)
    for ep in model.endpoints.values():
        if pred(ep) and any(addr in ipaddress.ip_network(n, strict=False)
                            for n in model.ips(ep, v)):
            return True
    return False


def _in_ranges(port: int | None, ranges: tuple[PortRange, ...]) -> bool:
    return port is not None and any(r.lo <= port <= r.hi for r in ranges)


def _rule_family_ok(rule: Rule, v: int) -> bool:
    pins = set()
    if rule.ip_version:
        pins.add(rule.ip_version)
    if rule.protocol == "icmp":
        pins.add(4)
    if rule.protocol == "icmpv6":
        pins.add(6)
    for n in (rule.src_net, rule.not_src_net, rule.dst_net, rule.not_dst_net):
        if n:
            pins.add(ipaddress.ip_network(n).version)
    return not pins or pins == {v}


def rule_matches(model: Model, rule: Rule, p: Packet) -> bool:
    v = p.ip_version
    if not _rule_family_ok(rule, v):
        return False
    checks: list[bool] = []
    if rule.protocol is not None:
        checks.append(proto_number(p.protocol) == proto_number(rule.protocol))
    if rule.not_protocol is not None:
        checks.append(proto_number(p.protocol) != proto_number(rule.not_protocol))
    for net, ip, want in ((rule.src_net, p.src, True), (rule.not_src_net, p.src, False),
                          (rule.dst_net, p.dst, True), (rule.not_dst_net, p.dst, False)):
        if net is not None:
            checks.append(_in_net(ip, net) == want)
    for tag, ip, want in ((rule.src_tag, p.src, True), (rule.not_src_tag, p.src, False),
                          (rule.dst_tag, p.dst, True), (rule.not_dst_tag, p.dst, False)):
        if tag is not None:
            has = _ip_in(model, ip, v, lambda e, t=tag: any(
                t in model.profile_tags.get(pid, ()) for pid in e.profile_ids))
            checks.append(has == want)
    for sel, ip, want in ((rule.src_selector, p.src, True),
                          (rule.not_src_selector, p.src, False),
                          (rule.dst_selector, p.dst, True),
                          (rule.not_dst_selector, p.dst, False)):
        if sel is not None:
            has = _ip_in(model, ip, v, lambda e, s=sel: s.evaluate(model.labels(e)))
            checks.append(has == want)
    for ranges, port, want in ((rule.src_ports, p.sport, True),
                               (rule.not_src_ports, p.sport, False),
                               (rule.dst_ports, p.dport, True),
                               (rule.not_dst_ports, p.dport, False)):
        if ranges:
            checks.append(_in_ranges(port, ranges) == want)
    if rule.icmp_type is not None:
        checks.append(p.icmp_type == rule.icmp_type
                      and (rule.icmp_code is None or p.icmp_code == rule.icmp_code))
    if rule.not_icmp_type is not None:
        checks.append(not (p.icmp_type == rule.not_icmp_type
                           and (rule.not_icmp_code is None
                                or p.icmp_code == rule.not_icmp_code)))
    return all(checks)


def policy_allows(model: Model, ep: WorkloadEndpoint | HostEndpoint, inbound: bool,
                  p: Packet) -> bool:
    labels = model.labels(ep)
    tiers = sorted(model.tiers.values(),
                   key=lambda t: (t.order is None, t.order or 0.0, t.name))
    for tier in tiers:
        pols = sorted((pol for k, pol in model.policies.items()
                       if pol.key.tier == tier.name and pol.selector.evaluate(labels)),
                      key=lambda pol: (pol.order is None, pol.order or 0.0, pol.key.policy_id))
        if not pols:
            continue
        passed = False
        for pol in pols:
            for rule in (pol.inbound if inbound else pol.outbound):
                if not rule_matches(model, rule, p):
                    continue
                if rule.action == "allow":
                    return True
                if rule.action == "deny":
                    return False
                if rule.action == "next-tier":
                    passed = True
                    break
            if passed:
                break
        if not passed:
            return False
    for pid in ep.profile_ids:
        prof = model.profile_rules.get(pid)
        if prof is None:
            return False  # a missing/invalid profile allows nothing and ends the list
        for rule in (prof.inbound if inbound else prof.outbound):
            if not rule_matches(model, rule, p):
                continue
            if rule.action == "allow":
                return True
            if rule.action == "deny":
                return False
            if rule.action == "next-tier":
                break  # ends this profile
    return False


def local_by_iface(model: Model, ifname: str | None) -> WorkloadEndpoint | None:
    for k, ep in sorted(model.endpoints.items(), key=lambda kv: repr(kv[0])):
        if (isinstance(ep, WorkloadEndpoint) and ep.name == ifname
                and k.hostname == model.hostname):  # type: ignore[attr-defined]
            return ep
    return None


def reference_verdict(model: Model, p: Packet, prefixes: tuple[str, ...] = ("cali",)) -> str:
    """ACCEPT or DROP for a NEW forwarded packet, per the contract."""
    def ours(ifname: str | None) -> bool:
        return ifname is not None and any(ifname.startswith(x) for x in prefixes)

    if ours(p.iif):
        src = local_by_iface(model, p.iif)
        if src is None or src.state != "active":
            return "DROP"
        if src.mac is not None and p.src_mac != src.mac:
            return "DROP"
        if not any(_in_net(p.src, n) for n in src.nets(p.ip_version)):
            return "DROP"
        if not policy_allows(model, src, False, p):
            return "DROP"
    if ours(p.oif):
        dst = local_by_iface(model, p.oif)
        if dst is None or dst.state != "active":
            return "DROP"
        if not policy_allows(model, dst, True, p):
            return "DROP"
    return "ACCEPT"


# --- random models (hypothesis) -----------------------------------------------------------

from hypothesis import strategies as st  # noqa: E402

from felix.model.frozen import FrozenDict  # noqa: E402
from felix.model.keys import (HostEndpointKey, PolicyKey, ProfileLabelsKey,  # noqa: E402
                              ProfileRulesKey, ProfileTagsKey, TierKey, WorkloadEndpointKey)
from felix.model.objects import ModelUpdate, ProfileLabels, ProfileTags  # noqa: E402
from felix.model.selector import parse_selector  # noqa: E402

LOCAL = "h1"
V4_IPS = [f"10.0.0.{i}" for i in range(1, 9)]
V6_IPS = [f"fd00::{i}" for i in range(1, 9)]
HOST_V4 = ["192.168.0.1", "10.0.0.7"]
HOST_V6 = ["fd00:ffff::1"]
V4_NETS = ["10.0.0.0/30", "10.0.0.4/31", "10.0.0.1/32", "10.0.0.0/29"]
V6_NETS = ["fd00::/126", "fd00::4/127", "fd00::1/128"]
SELECTORS = ['all()', 'a == "x"', 'a != "y"', 'has(b)', 'a in {"x", "y"}', '!has(a)',
             'a == "x" && has(b)', 'a == "y" || b == "x"', 'a not in {"x"}']
PORTS = [22, 53, 80, 443, 8080]
TAGS = ["t0", "t1"]
PROFILES = ["p0", "p1", "p2"]
MACS = ["ee:ee:ee:ee:ee:01", "ee:ee:ee:ee:ee:02"]


def draw_ports(draw) -> tuple[PortRange, ...]:  # type: ignore[no-untyped-def]
    if draw(st.integers(0, 5)) == 0:
        # Long lists: more than one multiport chunk.
        n = draw(st.integers(14, 24))
        base = draw(st.sampled_from([20, 50, 75]))
        return tuple(PortRange(base + 2 * i, base + 2 * i + (i % 3 == 0)) for i in range(n))
    out = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            p = draw(st.sampled_from(PORTS))
            out.append(PortRange(p, p))
        else:
            lo = draw(st.sampled_from([20, 50, 79, 440]))
            out.append(PortRange(lo, lo + draw(st.integers(1, 10))))
    return tuple(out)


def draw_rule(draw, is_policy: bool) -> Rule:  # type: ignore[no-untyped-def]
    f: dict[str, object] = {}
    if draw(st.integers(0, 3)) == 0:
        # Broad rules, so that decisions are often reached by an allow.
        f["action"] = draw(st.sampled_from(["allow", "allow", "next-tier"]))
        if draw(st.booleans()):
            f["protocol"] = draw(st.sampled_from(["tcp", "udp"]))
        return Rule(**f)  # type: ignore[arg-type]
    f["action"] = draw(st.sampled_from(["allow", "allow", "deny", "next-tier", "log"]))
    if f["action"] == "log" and draw(st.booleans()):
        f["log_prefix"] = "pfx"
    fam = draw(st.sampled_from([None, None, 4, 6]))
    if fam is not None and draw(st.booleans()):
        f["ip_version"] = fam
    protos = ["tcp", "udp", "47"] + (["icmp"] if fam != 6 else []) + (
        ["icmpv6"] if fam != 4 else [])
    if draw(st.booleans()):
        f["protocol"] = draw(st.sampled_from(protos))
    if draw(st.integers(0, 5)) == 0:
        f["not_protocol"] = draw(st.sampled_from(["tcp", "udp"]))
    if fam is not None:
        nets = V4_NETS if fam == 4 else V6_NETS
        for k in ("src_net", "not_src_net", "dst_net", "not_dst_net"):
            if draw(st.integers(0, 5)) == 0:
                f[k] = draw(st.sampled_from(nets))
    for k in ("src_tag", "not_src_tag", "dst_tag", "not_dst_tag"):
        if draw(st.integers(0, 8)) == 0:
            f[k] = draw(st.sampled_from(TAGS))
    for k in ("src_selector", "not_src_selector", "dst_selector", "not_dst_selector"):
        if draw(st.integers(0, 7)) == 0:
            f[k] = parse_selector(draw(st.sampled_from(SELECTORS)))
    if f.get("protocol") in ("tcp", "udp"):
        for k in ("src_ports", "not_src_ports", "dst_ports", "not_dst_ports"):
            if draw(st.integers(0, 3)) == 0:
                f[k] = draw_ports(draw)
    if f.get("protocol") in ("icmp", "icmpv6"):
        types = [0, 8] if f["protocol"] == "icmp" else [128, 129]
        if draw(st.booleans()):
            f["icmp_type"] = draw(st.sampled_from(types))
            if draw(st.booleans()):
                f["icmp_code"] = draw(st.integers(0, 1))
        if draw(st.integers(0, 3)) == 0:
            f["not_icmp_type"] = draw(st.sampled_from(types))
            if draw(st.booleans()):
                f["not_icmp_code"] = draw(st.integers(0, 1))
    return Rule(**f)  # type: ignore[arg-type]


def draw_labels(draw) -> FrozenDict:  # type: ignore[no-untyped-def]
    out = {}
    for k in ("a", "b"):
        if draw(st.booleans()):
            out[k] = draw(st.sampled_from(["x", "y"]))
    return FrozenDict(out)


def draw_model(draw) -> tuple[Model, list[ModelUpdate]]:  # type: ignore[no-untyped-def]
    """A small random valid model and the updates that describe it."""
    model = Model(LOCAL)
    ups: list[ModelUpdate] = []
    n_eps = draw(st.integers(2, 4))
    for i in range(n_eps):
        host = LOCAL if i == 0 or draw(st.booleans()) else "h2"
        key = WorkloadEndpointKey(host, "k8s", f"w{i}", "eth0")
        v4 = tuple(sorted({f"{ip}/32" for ip in draw(
            st.lists(st.sampled_from(V4_IPS), min_size=draw(st.sampled_from([0, 1, 1, 1])),
                     max_size=2))}))
        v6 = tuple(sorted({f"{ip}/128" for ip in draw(
            st.lists(st.sampled_from(V6_IPS), min_size=0, max_size=1))}))
        ep = WorkloadEndpoint(
            key=key, name=draw(st.sampled_from([f"cali{i}", f"cali{i}x", f"cali1{i}", "cali0"])),
            state="active" if draw(st.integers(0, 9)) else "inactive",
            mac=draw(st.sampled_from([None, None] + MACS)),
            profile_ids=tuple(draw(st.lists(st.sampled_from(PROFILES), min_size=draw(
                st.sampled_from([0, 1, 1])), max_size=3, unique=True))),
            labels=draw_labels(draw), ipv4_nets=v4, ipv6_nets=v6)
        model.endpoints[key] = ep
        ups.append(ModelUpdate(key, ep))
    for host in (LOCAL, "h2"):
        if draw(st.booleans()):
            hkey = HostEndpointKey(host, "hep0")
            hep = HostEndpoint(
                hkey, name=draw(st.sampled_from(["eth0", "eth0", None])),
                expected_ipv4_addrs=tuple(draw(st.lists(st.sampled_from(HOST_V4), max_size=1))),
                expected_ipv6_addrs=tuple(draw(st.lists(st.sampled_from(HOST_V6), max_size=1))),
                profile_ids=tuple(draw(st.lists(st.sampled_from(PROFILES), max_size=2,
                                                unique=True))),
                labels=draw_labels(draw))
            model.endpoints[hkey] = hep
            ups.append(ModelUpdate(hkey, hep))
    for pid in PROFILES:
        if draw(st.integers(0, 3)):
            pr = ProfileRules(pid, tuple(draw_rule(draw, False)
                                         for _ in range(draw(st.integers(0, 3)))),
                              tuple(draw_rule(draw, False)
                                    for _ in range(draw(st.integers(0, 3)))))
            model.profile_rules[pid] = pr
            ups.append(ModelUpdate(ProfileRulesKey(pid), pr))
        if draw(st.booleans()):
            tags = tuple(draw(st.lists(st.sampled_from(TAGS), min_size=1, unique=True)))
            model.profile_tags[pid] = tags
            ups.append(ModelUpdate(ProfileTagsKey(pid), ProfileTags(pid, tags)))
        if draw(st.booleans()):
            labels = draw_labels(draw)
            model.profile_labels[pid] = labels
            ups.append(ModelUpdate(ProfileLabelsKey(pid), ProfileLabels(pid, labels)))
    for t in range(draw(st.integers(0, 2))):
        name = f"tier{t}"
        has_meta = draw(st.integers(0, 4)) > 0
        if has_meta:
            tier = Tier(name, draw(st.sampled_from([None, 1.0, 2.0])))
            model.tiers[name] = tier
            ups.append(ModelUpdate(TierKey(name), tier))
        for j in range(draw(st.integers(0, 3))):
            pkey = PolicyKey(name, f"pol{j}")
            pol = Policy(pkey, parse_selector(draw(st.sampled_from(SELECTORS))),
                         draw(st.sampled_from([None, 1.0, 5.0])),
                         tuple(draw_rule(draw, True) for _ in range(draw(st.integers(0, 3)))),
                         tuple(draw_rule(draw, True) for _ in range(draw(st.integers(0, 3)))))
            if has_meta:
                model.policies[pkey] = pol
            ups.append(ModelUpdate(pkey, pol))  # ignored by the calc without tier metadata
    return model, ups


def draw_packet(draw, model: Model) -> Packet:  # type: ignore[no-untyped-def]
    v = draw(st.sampled_from([4, 4, 6]))
    pool = V4_IPS if v == 4 else V6_IPS
    eps = sorted(model.endpoints.items(), key=lambda kv: repr(kv[0]))
    wls = [(k, e) for k, e in eps if isinstance(e, WorkloadEndpoint)]
    local = [e for k, e in wls if k.hostname == LOCAL]  # type: ignore[attr-defined]
    remote = [e for k, e in wls if k.hostname != LOCAL]  # type: ignore[attr-defined]

    def ip_of(ep: WorkloadEndpoint | HostEndpoint | None) -> str:
        if ep is not None and draw(st.integers(0, 9)):
            nets = model.ips(ep, v)
            if nets:
                return str(ipaddress.ip_network(draw(st.sampled_from(nets))).network_address)
        return draw(st.sampled_from(pool + (["192.168.9.9"] + HOST_V4 if v == 4
                                            else ["2001:db8::9"] + HOST_V6)))

    src_kind = draw(st.sampled_from(["local"] * 5 + ["remote"] * 3 + ["external"] * 2
                                    + ["unknown"]))
    if src_kind == "local":
        src = draw(st.sampled_from(local))
        iif: str = src.name  # type: ignore[union-attr, assignment]
        mac = src.mac if draw(st.integers(0, 9)) else MACS[0]  # type: ignore[union-attr]
    else:
        src = draw(st.sampled_from(remote)) if src_kind == "remote" and remote else None
        iif = "cali99" if src_kind == "unknown" else "eth0"
        mac = None
    src_ip = ip_of(src)
    if src_kind == "local" and draw(st.booleans()):
        dst = draw(st.sampled_from(remote)) if remote and draw(st.booleans()) else None
        oif = "eth0"
    else:
        dst = draw(st.sampled_from(local))
        oif = dst.name  # type: ignore[union-attr, assignment]
    dst_ip = ip_of(dst)
    proto = draw(st.sampled_from(["tcp", "udp", "47", "icmp" if v == 4 else "ipv6-icmp"]))
    sport = dport = icmp_type = icmp_code = None
    if proto in ("tcp", "udp"):
        sport = draw(st.sampled_from(PORTS + [21, 51, 100, 1234]))
        dport = draw(st.sampled_from(PORTS + [21, 51, 100, 1234]))
    elif proto in ("icmp", "ipv6-icmp"):
        icmp_type = draw(st.sampled_from([0, 8] if v == 4 else [128, 129]))
        icmp_code = draw(st.integers(0, 1))
    return Packet(v, src_ip, dst_ip, "icmpv6" if proto == "ipv6-icmp" else proto, sport, dport,
                  icmp_type, icmp_code, iif, oif, mac)
