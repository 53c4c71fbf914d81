"""Chains that depend only on the settings (plus the hooks into the kernel's chains)."""

from __future__ import annotations

from felix.rules import names
from felix.rules.actions import drop_rules
from felix.rules.matches import MULTIPORT_MAX
from felix.rules.settings import RuleSettings

METADATA_IP = "169.254.169.254"
METADATA_PORT = 80
Chains = dict[str, tuple[str, ...]]


def _port_rules(ports: tuple[int, ...], target: str) -> list[str]:
    uniq = sorted(set(ports))
    return [f"-p tcp -m multiport --dports {','.join(map(str, uniq[i:i + MULTIPORT_MAX]))} "
            f"-j {target}" for i in range(0, len(uniq), MULTIPORT_MAX)]


def filter_chains(s: RuleSettings, v: int) -> Chains:
    conntrack = ["-m conntrack --ctstate INVALID -j DROP",
                 "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    pfx = s.interface_prefixes
    forward = (conntrack
               + [f"-i {p}+ -j {names.FROM_WL_DISPATCH}" for p in pfx]
               + [f"-o {p}+ -j {names.TO_WL_DISPATCH}" for p in pfx]
               # Both directions' endpoint chains returned: the packet is allowed.
               + [f"-i {p}+ -j ACCEPT" for p in pfx]
               + [f"-o {p}+ -j ACCEPT" for p in pfx])
    ipip = ([f"-p 4 -m set ! --match-set {names.all_hosts_set(4)} src -j DROP"]
            if s.ipip_enabled and v == 4 else [])
    inp = (conntrack + ipip
           + [f"-i {p}+ -g {names.WL_TO_HOST}" for p in pfx]
           + [f"-j {names.FAILSAFE_IN}", f"-j {names.FROM_HOST_DISPATCH}"])
    out = (conntrack
           # Host → local workload: not host-endpoint traffic.
           + [f"-o {p}+ -j RETURN" for p in pfx]
           + [f"-j {names.FAILSAFE_OUT}", f"-j {names.TO_HOST_DISPATCH}"])
    wl_to_host: list[str] = []
    if v == 6:
        # Neighbour discovery and MLD: IPv6 does not work without them.
        wl_to_host += [f"-p ipv6-icmp -m icmp6 --icmpv6-type {t} -j ACCEPT"
                       for t in (130, 131, 132, 133, 135, 136)]
        wl_to_host.append("-p udp -m udp --sport 546 --dport 547 -j ACCEPT")
    else:
        wl_to_host.append("-p udp -m udp --sport 68 --dport 67 -j ACCEPT")
    wl_to_host += ["-p udp -m udp --dport 53 -j ACCEPT", "-p tcp -m tcp --dport 53 -j ACCEPT"]
    if s.metadata_addr is not None and v == 4:
        wl_to_host.append(f"-p tcp -m tcp -d {s.metadata_addr} --dport {s.metadata_port} "
                          f"-j ACCEPT")
    # The workload's outbound policy first: returns only if it allows the packet.
    wl_to_host.append(f"-j {names.FROM_WL_DISPATCH}")
    action = s.default_endpoint_to_host_action
    wl_to_host += (drop_rules("", s.drop_action_override) if action == "DROP"
                   else [f"-j {action}"])
    return {
        names.FILTER_FORWARD: tuple(forward),
        names.FILTER_INPUT: tuple(inp),
        names.FILTER_OUTPUT: tuple(out),
        names.WL_TO_HOST: tuple(wl_to_host),
        names.FAILSAFE_IN: tuple(_port_rules(s.failsafe_inbound_ports, "ACCEPT")),
        names.FAILSAFE_OUT: tuple(_port_rules(s.failsafe_outbound_ports, "ACCEPT")),
    }


def nat_chains(s: RuleSettings, v: int) -> Chains:
    pre = [f"-j {names.FIP_DNAT}"]
    if s.metadata_addr is not None and v == 4:
        pre += [f"-i {p}+ -p tcp -m tcp -d {METADATA_IP}/32 --dport {METADATA_PORT} "
                f"-j DNAT --to-destination {s.metadata_addr}:{s.metadata_port}"
                for p in s.interface_prefixes]
    return {
        names.NAT_PREROUTING: tuple(pre),
        names.NAT_POSTROUTING: (f"-j {names.FIP_SNAT}", f"-j {names.NAT_OUTGOING}"),
        names.NAT_OUTPUT: (f"-j {names.FIP_DNAT}",),
        names.NAT_OUTGOING: (f"-m set --match-set {names.masq_pools_set(v)} src "
                             f"-m set ! --match-set {names.all_pools_set(v)} dst "
                             f"-j MASQUERADE",),
    }


def fip_chains(v: int, mappings: list[tuple[str, str]]) -> Chains:
    """Floating IPs: ``mappings`` of (int_ip, ext_ip), sorted."""
    plen = 32 if v == 4 else 128
    dnat = [f"-d {ext}/{plen} -j DNAT --to-destination {int_ip}" for int_ip, ext in mappings]
    snat: list[str] = []
    for int_ip, ext in mappings:
        # Hairpin (a workload reaching itself through its floating IP), then traffic leaving
        # the pools.
        snat.append(f"-s {int_ip}/{plen} -d {int_ip}/{plen} -j SNAT --to-source {ext}")
        snat.append(f"-s {int_ip}/{plen} -m set ! --match-set {names.all_pools_set(v)} dst "
                    f"-j SNAT --to-source {ext}")
    return {names.FIP_DNAT: tuple(dnat), names.FIP_SNAT: tuple(snat)}


HOOKS: tuple[tuple[str, str, str], ...] = (
    ("filter", "INPUT", names.FILTER_INPUT),
    ("filter", "FORWARD", names.FILTER_FORWARD),
    ("filter", "OUTPUT", names.FILTER_OUTPUT),
    ("nat", "PREROUTING", names.NAT_PREROUTING),
    ("nat", "POSTROUTING", names.NAT_POSTROUTING),
    ("nat", "OUTPUT", names.NAT_OUTPUT),
)
