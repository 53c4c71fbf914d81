"""Rendering details: names, port chunking, ICMP, negations, families, marks, drop override,
the dispatch tree and the settings-driven chains."""

from __future__ import annotations

import pytest

from felix.model.keys import PolicyKey
from felix.model.objects import Policy, PortRange, ProfileRules, Rule
from felix.model.selector import parse_selector
from felix.rules import dispatch, names
from felix.rules.endpoint import EndpointPolicy
from felix.rules.marks import Marks
from felix.rules.matches import port_chunks, render_matches, rule_families
from felix.rules.renderer import make_renderers
from felix.rules.settings import RuleSettings

R4, R6 = make_renderers(RuleSettings("h")).values()


def ports(*spec: int | tuple[int, int]) -> tuple[PortRange, ...]:
    return tuple(PortRange(p, p) if isinstance(p, int) else PortRange(*p) for p in spec)


def test_names_fit_kernel_limits_and_are_deterministic() -> None:
    long_id = "x" * 200
    key = PolicyKey("tier-" + long_id, "pol-" + long_id)
    for inbound in (True, False):
        n = names.policy_chain(key, inbound)
        assert len(n) <= 28 and n.startswith("cali-p") and n == names.policy_chain(key, inbound)
        assert len(names.profile_chain(long_id, inbound)) <= 28
    assert names.policy_chain(PolicyKey("a", "b-c"), True) != names.policy_chain(
        PolicyKey("a-b", "c"), True)
    assert names.tag_set(4, "short") == "cali4-t:short"
    long_tag = names.tag_set(6, "t" * 100)
    assert len(long_tag) == 31 and long_tag.startswith("cali6-t:")
    assert long_tag != names.tag_set(6, "t" * 99)
    assert names.selector_set(4, "abcdefghijklmnop") == "cali4-s:abcdefghijklmnop"
    assert names.endpoint_chain("cali0123456789a", True, False) == "cali-tw-cali0123456789a"
    assert names.endpoint_chain("eth0", True, True) == "cali-fh-eth0"


def test_port_chunks_count_ranges_twice() -> None:
    assert port_chunks(ports(*range(1, 16))) == [",".join(map(str, range(1, 16)))]
    assert len(port_chunks(ports(*range(1, 17)))) == 2
    assert port_chunks(ports((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), 15,
                             16)) == ["1:2,3:4,5:6,7:8,9:10,11:12,13:14,15", "16"]


def test_src_and_dst_chunks_form_a_product_and_negations_conjoin() -> None:
    rule = Rule(protocol="tcp", src_ports=ports(*range(1, 20)), dst_ports=ports(*range(100, 131)),
                not_dst_ports=ports(*range(200, 220)))
    bodies = render_matches(rule, 4)
    assert len(bodies) == 2 * 3
    for b in bodies:
        assert b.count("! --dports") == 2 and b.count(" --sports") == 1


def test_every_negation_and_family_filtering() -> None:
    sel = parse_selector('role == "db"')
    rule = Rule(not_protocol="udp", not_src_net="10.0.0.0/8",
                not_dst_net="10.1.0.0/16", not_src_tag="a", not_dst_tag="b",
                not_src_selector=sel, not_dst_selector=sel)
    (body,) = render_matches(rule, 4)
    for frag in ("! -p udp", "! -s 10.0.0.0/8", "! -d 10.1.0.0/16",
                 "-m set ! --match-set cali4-t:a src", "-m set ! --match-set cali4-t:b dst",
                 f"-m set ! --match-set cali4-s:{sel.uid} src",
                 f"-m set ! --match-set cali4-s:{sel.uid} dst",
                 ):
        assert frag in body
    assert render_matches(rule, 6) == []  # pinned to v4 by its nets
    (body,) = render_matches(Rule(protocol="udp", not_src_ports=ports(1),
                                  not_dst_ports=ports(2)), 6)
    assert "-m multiport ! --sports 1" in body and "-m multiport ! --dports 2" in body
    assert rule_families(Rule(ip_version=6)) == {6}
    assert rule_families(Rule(protocol="icmp")) == {4}
    assert rule_families(Rule()) == {4, 6}


def test_protocol_and_negated_protocol_render_one_p() -> None:
    assert render_matches(Rule(protocol="tcp", not_protocol="udp"), 4) == ["-p tcp "]
    assert render_matches(Rule(protocol="tcp", not_protocol="tcp"), 4) == []


def test_icmp_per_family() -> None:
    assert render_matches(Rule(protocol="icmp", icmp_type=8, icmp_code=0), 4) == [
        "-p icmp -m icmp --icmp-type 8/0 "]
    assert render_matches(Rule(protocol="icmpv6", icmp_type=128, not_icmp_type=129), 6) == [
        "-p ipv6-icmp -m icmp6 --icmpv6-type 128 -m icmp6 ! --icmpv6-type 129 "]


def test_marks_from_mask() -> None:
    assert Marks.from_mask(0xFF000000) == Marks(0x1000000, 0x2000000)
    assert Marks.from_mask(0x5) == Marks(0x1, 0x4)
    with pytest.raises(ValueError, match="at least 2 bits"):
        Marks.from_mask(0x100)
    with pytest.raises(ValueError):
        make_renderers(RuleSettings("h", mark_mask=0))


def test_policy_actions_and_drop_override() -> None:
    pol = Policy(PolicyKey("t", "p"), parse_selector("all()"), inbound=(
        Rule(action="log", log_prefix="hello"), Rule(action="deny", protocol="udp"),
        Rule(action="next-tier", protocol="tcp"), Rule(action="allow")))
    (r6,) = make_renderers(RuleSettings("h", drop_action_override="LOG-and-DROP",
                                        ipv6_enabled=False)).values()
    rules = r6.policy_chains(pol)[names.policy_chain(pol.key, True)]
    assert rules == (
        '-j LOG --log-prefix "hello"',
        '-p udp -j LOG --log-prefix "calico-drop:"',
        "-p udp -j DROP",
        "-p tcp -j MARK --set-xmark 0x2000000/0x2000000",
        "-m mark --mark 0x2000000/0x2000000 -j RETURN",
        "-j MARK --set-xmark 0x1000000/0x1000000",
        "-m mark --mark 0x1000000/0x1000000 -j RETURN")
    prof = R4.profile_chains(ProfileRules("p", inbound=(Rule(action="next-tier"),)))
    assert prof[names.profile_chain("p", True)] == ("-j RETURN",)


def test_endpoint_chain_layout() -> None:
    pol = EndpointPolicy(tiers=((PolicyKey("t", "a"), PolicyKey("t", "b")),),
                         profile_ids=("p",))
    chains = R4.workload_chains("cali1", True, pol, ("10.0.0.1/32", "10.0.0.2/32"),
                                "ee:ee:ee:ee:ee:ee")
    out = chains["cali-fw-cali1"]
    assert out[1] == "-m mac ! --mac-source ee:ee:ee:ee:ee:ee -j DROP"
    assert "-s 10.0.0.2/32 -j MARK --set-xmark 0x1000000/0x1000000" in out
    assert out[-1] == "-j DROP"
    jumps = [r.split()[-1] for r in out if "-j cali-p" in r]
    assert jumps == [names.policy_chain(PolicyKey("t", "a"), False),
                     names.policy_chain(PolicyKey("t", "b"), False),
                     names.profile_chain("p", False)]
    assert "-m mark --mark 0x0/0x2000000 -j DROP" in out  # tier end
    assert not any("-s " in r for r in chains["cali-tw-cali1"])
    assert R4.workload_chains("cali1", False, pol, (), None)["cali-tw-cali1"] == ("-j DROP",)
    # No nets of this family: nothing from the workload passes anti-spoofing.
    assert R6.workload_chains("cali1", True, pol, (), None)["cali-fw-cali1"][1] == "-j DROP"


def _walk(chains: dict[str, tuple[str, ...]], root: str, ifname: str) -> list[str]:
    """Chains a packet on ``ifname`` visits from ``root``, and the final target."""
    path, cur = [root], root
    while True:
        for rule in chains[cur]:
            toks = rule.split()
            if toks[0] == "-o":
                pat = toks[1]
                if pat.endswith("+") and ifname.startswith(pat[:-1]) or pat == ifname:
                    cur = toks[3]
                    break
            else:
                return path + [toks[-1]]
        if cur not in chains:
            return path + [cur]
        path.append(cur)


def test_dispatch_tree_is_shallow_and_changes_locally() -> None:
    ifnames = [f"cali{i:011x}" for i in range(0, 2000 * 7919, 7919)]
    tree = dispatch.render_dispatch(names.TO_WL_DISPATCH, ifnames, True,
                                    lambda n: "cali-tw-" + n, ["-j DROP"])
    assert max(len(r) for r in tree.values()) <= dispatch.LEAF_MAX + 1
    for n in ifnames[::37]:
        path = _walk(tree, names.TO_WL_DISPATCH, n)
        assert path[-1] == "cali-tw-" + n and len(path) <= 6
    assert _walk(tree, names.TO_WL_DISPATCH, "cali-unknown")[-1] == "DROP"
    bigger = dispatch.render_dispatch(names.TO_WL_DISPATCH, ifnames + ["cali0000000ffff"],
                                      True, lambda n: "cali-tw-" + n, ["-j DROP"])
    changed = {k for k in bigger if tree.get(k) != bigger[k]} | (tree.keys() - bigger.keys())
    assert 1 <= len(changed) <= 5


def test_dispatch_tree_does_not_depend_on_name_order_or_repeats() -> None:
    ifnames = [f"cali{i:011x}" for i in range(0, 300 * 7919, 7919)]
    shuffled = ifnames[::-1] + ifnames[:50]
    target = lambda n: "cali-tw-" + n  # noqa: E731
    assert (dispatch.render_dispatch(names.TO_WL_DISPATCH, shuffled, True, target, ["-j DROP"])
            == dispatch.render_dispatch(names.TO_WL_DISPATCH, ifnames, True, target,
                                        ["-j DROP"]))


def test_static_chains_follow_settings() -> None:
    s = RuleSettings("h", default_endpoint_to_host_action="ACCEPT", metadata_addr=None,
                     failsafe_inbound_ports=tuple(range(1, 20)), interface_prefixes=("tap", "cali"),
                     ipip_enabled=True)
    r4, r6 = make_renderers(s).values()
    f4 = r4.static_filter_chains()
    assert f4[names.WL_TO_HOST][-1] == "-j ACCEPT"
    assert not any("8775" in r for r in f4[names.WL_TO_HOST])
    assert len(f4[names.FAILSAFE_IN]) == 2
    assert "-i tap+ -j cali-from-wl-dispatch" in f4[names.FILTER_FORWARD]
    assert any("cali4-all-hosts" in r for r in f4[names.FILTER_INPUT])
    assert not any("all-hosts" in r for r in r6.static_filter_chains()[names.FILTER_INPUT])
    d = make_renderers(RuleSettings("h"))[4]
    nat = d.static_nat_chains()[names.NAT_PREROUTING]
    assert any("169.254.169.254/32 --dport 80 -j DNAT --to-destination 127.0.0.1:8775" in r
               for r in nat)
    assert d.static_filter_chains()[names.WL_TO_HOST][-1] == "-j DROP"
