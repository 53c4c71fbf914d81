"""Conformance, networking: anti-spoofing, workload→host actions, host endpoints and failsafe
ports, NAT outgoing, metadata DNAT, floating IPs and endpoint/interface lifecycle, against the
real felix with real packets, IPv4 and IPv6 wherever the datastore contract applies to both.

Every "blocked" expectation is set up so that only felix can be what blocks it: where a
missing route, proxy ARP or strict rp_filter would also stop the packet, the test wires those
by hand first, and each scenario ends with a phase in which the same packets pass.
"""

from __future__ import annotations

import socket
from typing import Iterator

import pytest

from felix.model import keys
from tests.fv.conformance.matrix import ICMP as M_ICMP
from tests.fv.conformance.matrix import TCP1, UDP1, Matrix
from tests.fv.conformance.net_flows import HOST, TCP, UDP, Flow, converge, expect, flows
from tests.fv.conformance.net_hosts import HostServers, Peer
from tests.fv.conftest import FelixEnv
from tests.fv.harness.probes import wait_until
from tests.fv.harness.workload import Workload

# The test host namespace's own addresses (tests/fv/harness/netns.py: HostNamespace).
HOST_IP, HOST_IP6 = "198.18.255.1", "fd99:ffff::1"
OPEN = "open"
# Fast runs use one backend per test; `make test-all` runs the other too.
OTHER_BACKEND_SLOW = pytest.mark.parametrize(
    "backend", ["nft", pytest.param("legacy", marks=pytest.mark.slow)])


@pytest.fixture
def servers(env: FelixEnv) -> Iterator[HostServers]:
    s = HostServers()
    try:
        yield s
    finally:
        s.close()


def open_profile(env: FelixEnv) -> None:
    env.ds.profile(OPEN, inbound=[{}], outbound=[{}])


def add_endpoint(env: FelixEnv, w: Workload, **fields: object) -> None:
    """(Re)write w's endpoint with the open profile; ``fields`` override the JSON's fields."""
    data = w.endpoint(profile_ids=(OPEN,))
    data.update(fields)
    env.ds.endpoint(env.hostname, w.name, data)


def peer(env: FelixEnv, name: str, ip: str, ip6: str, ifname: str, host_ip: str,
         host_ip6: str) -> Peer:
    p = Peer(env.host, name, ip, ip6, ifname=ifname, host_ip=host_ip, host_ip6=host_ip6)
    env.workloads.append(p)  # torn down with the workloads
    return p


def outside(env: FelixEnv) -> Peer:
    return peer(env, "outside", "10.98.0.2", "fd98::2", "fvout0", "10.98.0.1", "fd98::1")


def static_route(env: FelixEnv, ip: str, ifname: str) -> None:
    """A route felix does not own (proto static): it lets a packet through routing and strict
    rp_filter, so only felix's chains can be what drops it."""
    plen = 128 if ":" in ip else 32
    env.host.exec("ip", "route", "replace", f"{ip}/{plen}", "dev", ifname, "proto", "static")


def hand_wire(env: FelixEnv, w: Workload) -> None:
    """What felix would do for a known endpoint (routes, proxy ARP), done by hand."""
    static_route(env, w.ip, w.ifname)
    if w.ip6:
        static_route(env, w.ip6, w.ifname)
    env.host.sysctl(f"net.ipv4.conf.{w.ifname}.proxy_arp", "1")
    env.host.sysctl(f"net.ipv4.neigh.{w.ifname}.proxy_delay", "0")


def felix_routes(env: FelixEnv) -> str:
    return env.host.exec("ip", "route", "show", "proto", "80").stdout + \
        env.host.exec("ip", "-6", "route", "show", "proto", "80").stdout


# --- anti-spoofing -------------------------------------------------------------------------

@OTHER_BACKEND_SLOW
def test_anti_spoofing_source_ip_and_mac(env: FelixEnv, backend: str) -> None:
    a = env.workload("sa", "10.65.0.2", "fd00:65::2")
    b = env.workload("sb", "10.65.0.3", "fd00:65::3")
    spoof, spoof6 = "10.65.0.99", "fd00:65::99"
    # a really holds the foreign addresses (so replies are accepted) and the host routes them
    # back down a's veth: neither routing nor strict rp_filter stops the spoofed packets.
    a.ns.exec("ip", "addr", "add", f"{spoof}/32", "dev", "eth0")
    a.ns.exec("ip", "-6", "addr", "add", f"{spoof6}/128", "dev", "eth0", "nodad")
    static_route(env, spoof, a.ifname)
    static_route(env, spoof6, a.ifname)
    open_profile(env)
    add_endpoint(env, a)  # carries a's real MAC
    add_endpoint(env, b)
    env.start_felix(config={"IptablesBackend": backend})
    own = flows(a, [b.ip, b.ip6], from_ips=[a.ip, a.ip6])
    spoofed = flows(a, [b.ip, b.ip6], from_ips=[spoof, spoof6])
    converge("anti-spoof: foreign source IP dropped, own IP + right MAC pass",
             {**expect(True, own), **expect(False, spoofed)}, timeout=30)
    add_endpoint(env, a, ipv4_nets=[f"{a.ip}/32", f"{spoof}/32"],
                 ipv6_nets=[f"{a.ip6}/128", f"{spoof6}/128"])
    converge("anti-spoof: the address added to the endpoint's nets passes",
             expect(True, own, spoofed))
    add_endpoint(env, a, mac="ee:ee:ee:00:00:01")
    converge("anti-spoof: source MAC other than the endpoint's mac dropped",
             expect(False, own, spoofed))
    add_endpoint(env, a)
    converge("anti-spoof: right MAC again passes",
             {**expect(True, own), **expect(False, spoofed)})


# --- workload → host -----------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["legacy", pytest.param("nft", marks=pytest.mark.slow)])
@pytest.mark.parametrize("action", ["DROP", "RETURN", "ACCEPT"])
def test_workload_to_host_default_action(env: FelixEnv, servers: HostServers, action: str,
                                         backend: str) -> None:
    for port in (7001, 7002, 7003):
        servers.tcp(port)
    for port in (53, 67, 547):
        servers.udp(port)
    # The host's own INPUT rules, behind felix's jump: RETURN must fall through to them.
    for tool in (f"iptables-{backend}", f"ip6tables-{backend}"):
        env.host.exec(tool, "-A", "INPUT", "-p", "tcp", "--dport", "7002", "-j", "DROP")
    a = env.workload("ha", "10.65.0.2", "fd00:65::2")
    # The endpoint's outbound policy comes first; DNS to the host is allowed regardless.
    env.ds.profile("wl", inbound=[{}], outbound=[
        {"action": "deny", "protocol": "tcp", "dst_ports": [7003]},
        {"action": "deny", "protocol": "udp", "dst_ports": [53, 67, 547]}, {}])
    env.ds.endpoint(env.hostname, "ha", a.endpoint(profile_ids=("wl",)))
    env.start_felix(config={"DefaultEndpointToHostAction": action, "IptablesBackend": backend})
    host = [HOST_IP, HOST_IP6]
    # DHCP by its ports (a real client broadcasts from 0.0.0.0, which the probe can't).
    dhcp = [Flow(a, "udp", HOST_IP, 67, sport=68), Flow(a, "udp", HOST_IP6, 547, sport=546)]
    converge(f"workload->host {action} ({backend}): 7001 {action != 'DROP'}, host-dropped 7002 "
             f"{action == 'ACCEPT'}, policy-denied 7003 False, DNS+DHCP True", {
                 **expect(True, dhcp),
                 **expect(action != "DROP", flows(a, host, [("tcp", 7001)])),
                 **expect(action == "ACCEPT", flows(a, host, [("tcp", 7002)])),
                 **expect(False, flows(a, host, [("tcp", 7003)])),
                 **expect(True, flows(a, host, [("udp", 53)]))}, timeout=30)


# --- host endpoints ------------------------------------------------------------------------

@OTHER_BACKEND_SLOW
def test_host_endpoint_policy_and_failsafe_ports(env: FelixEnv, servers: HostServers, backend: str) -> None:
    for port in (7001, 7003, 7022):
        servers.tcp(port)
    client = peer(env, "client", "10.99.0.2", "fd99:1::2", "fvhe0", "10.99.0.1", "fd99:1::1")
    env.start_felix(config={"IptablesBackend": backend, "FailsafeInboundHostPorts": "7022",
                            "FailsafeOutboundHostPorts": "8081"})
    here = [client.host_ip, client.host_ip6]
    there = [client.ip, client.ip6]
    inn = {p: flows(client, here, [("tcp", p)]) for p in (7001, 7003, 7022)}
    out_ok, out_fs, out_udp = (flows(HOST, there, [p]) for p in (TCP, ("tcp", 8081), UDP))

    converge("host endpoint: before it exists the host is not policed",
             expect(True, *inn.values(), out_ok, out_fs, out_udp), timeout=30)
    env.ds.profile("hep", inbound=[{"protocol": "tcp", "dst_ports": [7001]}],
                   outbound=[{"protocol": "tcp", "dst_ports": [8080]}])
    env.ds.host_endpoint(env.hostname, "fvhe0", {"name": "fvhe0", "profile_ids": ["hep"]})
    converge("host endpoint: profile enforced both ways, failsafe ports open", {
        **expect(True, inn[7001], inn[7022], out_ok, out_fs),
        **expect(False, inn[7003], out_udp)})
    env.ds.profile("hep", inbound=[{"action": "deny"}], outbound=[{"action": "deny"}])
    converge("host endpoint: deny-all policy, failsafe ports still open", {
        **expect(True, inn[7022], out_fs),
        **expect(False, inn[7001], inn[7003], out_ok, out_udp)})
    env.ds.delete(keys.HostEndpointKey(env.hostname, "fvhe0").path)
    converge("host endpoint: deleted, host unpoliced again",
             expect(True, *inn.values(), out_ok, out_fs, out_udp))


def test_host_endpoint_resolved_by_expected_address(env: FelixEnv, servers: HostServers) -> None:
    """A host endpoint without ``name`` applies to the interface holding one of its expected
    addresses, including one that only gets the address later."""
    for port in (7001, 7003):
        servers.tcp(port)
    client = peer(env, "client", "10.99.0.2", "fd99:1::2", "fvhe0", "10.99.0.1", "fd99:1::1")
    env.ds.profile("hep", inbound=[{"protocol": "tcp", "dst_ports": [7001]}], outbound=[{}])
    env.ds.host_endpoint(env.hostname, "byaddr", {"expected_ipv4_addrs": ["10.99.0.1"],
                                                  "profile_ids": ["hep"]})
    env.start_felix()
    here = [client.host_ip, client.host_ip6]
    ok, denied = (flows(client, here, [("tcp", p)]) for p in (7001, 7003))
    converge("host endpoint by address: policy on the interface holding it", {
        **expect(True, ok), **expect(False, denied)}, timeout=30)
    env.ds.host_endpoint(env.hostname, "byaddr", {"expected_ipv6_addrs": ["fd99:1::5"],
                                                  "profile_ids": ["hep"]})
    converge("host endpoint by address: no interface holds it, host unpoliced",
             expect(True, ok, denied))
    env.host.exec("ip", "-6", "addr", "add", "fd99:1::5/64", "dev", "fvhe0", "nodad")
    converge("host endpoint by address: the address appears on an interface", {
        **expect(True, ok), **expect(False, denied)})
    env.host.exec("ip", "-6", "addr", "del", "fd99:1::5/64", "dev", "fvhe0")
    converge("host endpoint by address: the address goes away", expect(True, ok, denied))


# --- NAT outgoing --------------------------------------------------------------------------

def seen_source(out: Peer, w: Workload, dst: str | None, port: int = 6001) -> str:
    """The source address a datagram from ``w`` arrives with in ``out``."""
    assert dst is not None
    with out.ns.entered():
        s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((dst, port))
    try:
        s.settimeout(3)
        w.probe("udp", dst, port, 0.3)  # no echo comes back: only the datagram matters
        return str(s.recvfrom(64)[1][0])
    finally:
        s.close()


@OTHER_BACKEND_SLOW
def test_nat_outgoing_from_masquerade_pool_only(env: FelixEnv, backend: str) -> None:
    out = outside(env)
    for cidr, masq in (("10.65.0.0/16", True), ("fd00:65::/64", True),
                       ("10.66.0.0/16", False), ("fd00:66::/64", False)):
        env.ds.pool(cidr, masquerade=masq)
    a = env.workload("na", "10.65.0.2", "fd00:65::2")
    b = env.workload("nb", "10.66.0.2", "fd00:66::2")
    open_profile(env)
    add_endpoint(env, a)
    add_endpoint(env, b)
    env.start_felix(config={"IptablesBackend": backend})
    to_out = {w: flows(w, [out.ip, out.ip6]) for w in (a, b)}
    between = flows(a, [b.ip, b.ip6]) + flows(b, [a.ip, a.ip6])
    # The outside has no route to either pool: only masquerading makes replies come back.
    converge("NAT outgoing: masquerade pool reaches the outside, the other pool does not", {
        **expect(True, to_out[a], between), **expect(False, to_out[b])}, timeout=30)
    assert seen_source(out, a, out.ip) == out.host_ip
    assert seen_source(out, a, out.ip6) == out.host_ip6
    # Control: b's packets do arrive, with b's own address, and a route back is all they lack.
    assert seen_source(out, b, out.ip) == b.ip
    assert seen_source(out, b, out.ip6) == b.ip6
    out.route_via_host("10.66.0.0/16")
    out.route_via_host("fd00:66::/64")
    converge("NAT outgoing: non-masquerade pool with a route back", expect(True, to_out[b]))
    env.ds.pool("10.65.0.0/16", masquerade=False)
    env.ds.pool("fd00:65::/64", masquerade=False)
    converge("NAT outgoing: masquerade turned off on the pool", {
        **expect(False, to_out[a]), **expect(True, between)})
    assert seen_source(out, a, out.ip) == a.ip


# --- metadata ------------------------------------------------------------------------------

@pytest.mark.parametrize("addr", ["127.0.0.1", HOST_IP])
def test_metadata_dnat(env: FelixEnv, servers: HostServers, addr: str) -> None:
    servers.tcp(8775, (addr,))
    servers.tcp(7001)
    a = env.workload("ma", "10.65.0.2", "fd00:65::2")
    open_profile(env)
    add_endpoint(env, a)
    env.start_felix(config={"MetadataAddr": addr, "MetadataPort": 8775})
    converge(f"metadata: 169.254.169.254:80 DNATed to {addr}:8775", {
        **expect(True, flows(a, ["169.254.169.254"], [("tcp", 80)])),
        # Only that port is redirected, and the host stays closed (default action DROP).
        **expect(False, flows(a, ["169.254.169.254"], [("tcp", 81)]),
                 flows(a, [HOST_IP], [("tcp", 7001)]))}, timeout=30)


# --- floating IPs --------------------------------------------------------------------------

@OTHER_BACKEND_SLOW
def test_floating_ip_reaches_the_workload(env: FelixEnv, backend: str) -> None:
    ext, ext6 = "172.18.0.9", "fd00:172::9"
    out = outside(env)
    out.route_via_host(f"{ext}/32")
    out.route_via_host(f"{ext6}/128")
    env.ds.pool("10.65.0.0/16")
    env.ds.pool("fd00:65::/64")
    a = env.workload("fa", "10.65.0.2", "fd00:65::2")
    b = env.workload("fb", "10.65.0.3", "fd00:65::3")
    open_profile(env)
    add_endpoint(env, a)
    add_endpoint(env, b)
    env.start_felix(config={"IptablesBackend": backend})
    # From another workload, the outside, the host itself, and a itself (hairpin).
    to_ext = [f for src in (b, out, HOST, a) for f in flows(src, [ext, ext6])]
    direct = flows(b, [a.ip, a.ip6])
    converge("floating IP: none yet", {**expect(False, to_ext), **expect(True, direct)},
             timeout=30)
    add_endpoint(env, a, ipv4_nat=[{"int_ip": a.ip, "ext_ip": ext}],
                 ipv6_nat=[{"int_ip": a.ip6, "ext_ip": ext6}])
    converge("floating IP: ext_ip reaches the workload", expect(True, to_ext, direct))
    add_endpoint(env, a)
    converge("floating IP: removed", {**expect(False, to_ext), **expect(True, direct)})


# --- endpoint and interface lifecycle ------------------------------------------------------

def connected(ws: list[Workload], among: list[Workload]) -> Matrix:
    """Everyone in ``among`` reaches everyone else in it; every other pair is blocked."""
    return Matrix(ws, ports=(TCP1, UDP1, M_ICMP)).allow(src=among, dst=among)


@OTHER_BACKEND_SLOW
def test_endpoint_and_interface_lifecycle(env: FelixEnv, backend: str) -> None:
    # A fixed MAC: the recreated veth must match the endpoint's mac, as a CNI plugin
    # re-creating it would ensure.
    b = env.workload("lb", "10.65.0.3", "fd00:65::3", mac="ee:ee:ee:00:00:0b")
    e = env.workload("le", "10.65.0.5", "fd00:65::5")
    a = env.workload("la", "10.65.0.2", "fd00:65::2")   # inactive endpoint
    c = env.workload("lc", "10.65.0.4", "fd00:65::4")   # interface, no endpoint (yet)
    d = env.workload("ld", "10.65.0.6", "fd00:65::6", create_interface=False)  # key first
    for w in (a, c):
        hand_wire(env, w)
    open_profile(env)
    for w in (b, e, d):
        add_endpoint(env, w)
    add_endpoint(env, a, state="inactive")
    env.start_felix(config={"IptablesBackend": backend})
    ws = [a, b, c, d, e]
    connected(ws, [b, e]).check(
        "lifecycle: inactive endpoint, cali* without endpoint, key without interface: cut off",
        timeout=30)
    add_endpoint(env, a)
    connected(ws, [a, b, e]).check("lifecycle: inactive -> active")
    add_endpoint(env, c)
    connected(ws, [a, b, c, e]).check("lifecycle: interface first, endpoint key later")
    d.create_interface()
    connected(ws, ws).check("lifecycle: endpoint key first, interface later")
    b.delete_interface()
    wait_until(lambda: b.ip not in felix_routes(env), 5, what="route gone with the interface")
    connected(ws, [a, c, d, e]).check("lifecycle: interface deleted")
    b.create_interface()
    connected(ws, ws).check("lifecycle: interface recreated, routes re-applied")
    assert f"{b.ip} dev {b.ifname}" in felix_routes(env)
    assert f"{b.ip6} dev {b.ifname}" in felix_routes(env)
    # Admin down flushes the kernel's routes over the interface; up must bring them back.
    env.host.exec("ip", "link", "set", b.ifname, "down")
    connected(ws, [a, c, d, e]).check("lifecycle: interface admin down")
    env.host.exec("ip", "link", "set", b.ifname, "up")
    connected(ws, ws).check("lifecycle: interface up again, routes re-applied")
    add_endpoint(env, a, state="inactive")
    connected(ws, [b, c, d, e]).check("lifecycle: active -> inactive")
