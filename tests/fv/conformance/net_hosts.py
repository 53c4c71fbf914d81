"""Non-workload ends of the networking scenarios: echo servers in the test's host namespace,
and peer namespaces (a "client" behind a host interface, an "outside" network) attached to the
host namespace by a plain veth, each with the workload agent for probes."""

from __future__ import annotations

import select
import socket
import threading
from typing import Any

from tests.fv.harness.netns import HostNamespace
from tests.fv.harness.workload import Workload


class HostServers:
    """TCP and UDP echo servers in the host namespace. Sockets are created on the calling
    thread (the one inside the test's host namespace); threads only serve them."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def tcp(self, port: int, addrs: tuple[str, ...] = ("0.0.0.0", "::")) -> None:
        for addr in addrs:
            s = self._bind(socket.SOCK_STREAM, addr, port)
            s.listen(64)
            self._serve(self._tcp_loop, s)

    def udp(self, port: int, addrs: tuple[str, ...] = ("0.0.0.0", "::")) -> None:
        for addr in addrs:
            self._serve(self._udp_loop, self._bind(socket.SOCK_DGRAM, addr, port))

    def _bind(self, kind: int, addr: str, port: int) -> socket.socket:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
        self._socks.append(s)
        return s

    def _serve(self, loop: Any, s: socket.socket) -> None:
        t = threading.Thread(target=loop, args=(s,), daemon=True)
        t.start()
        self._threads.append(t)

    def _ready(self, s: socket.socket) -> bool:
        # Poll so close() can stop the loop: a blocked accept() is not woken by close().
        while not self._stop.is_set():
            if select.select([s], [], [], 0.2)[0]:
                return True
        return False

    def _tcp_loop(self, s: socket.socket) -> None:
        while self._ready(s):
            try:
                c, _ = s.accept()
            except OSError:
                return
            with c:
                c.settimeout(2)
                try:
                    data = c.recv(1024)
                    if data:
                        c.sendall(data)
                except OSError:
                    pass

    def _udp_loop(self, s: socket.socket) -> None:
        while self._ready(s):
            try:
                data, addr = s.recvfrom(2048)
                s.sendto(data, addr)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for s in self._socks:
            s.close()


class Peer(Workload):
    """A namespace on a plain veth: host end ``ifname`` (not a workload prefix) holds
    ``host_ip``/24 and ``host_ip6``/64, the peer's eth0 ``ip``/24 and ``ip6``/64. The peer only
    has its connected routes unless ``route_via_host`` adds some; everything else goes into a
    veth whose other end is in the same namespace and ignores it, so a reply to an address it cannot reach is lost silently instead of failing
    the agent's echo server with ENETUNREACH."""

    def __init__(self, host: HostNamespace, name: str, ip: str, ip6: str, *, ifname: str,
                 host_ip: str, host_ip6: str) -> None:
        self.host_ip = host_ip
        self.host_ip6 = host_ip6
        super().__init__(host, name, ip, ip6, ifname=ifname)

    def create_interface(self) -> None:
        h, w = self.host, self.ns
        h.exec("ip", "link", "add", self.ifname, "type", "veth", "peer", "name", "eth0",
               "netns", w.name)
        h.exec("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.ifname)
        h.exec("ip", "-6", "addr", "add", f"{self.host_ip6}/64", "dev", self.ifname, "nodad")
        w.exec("ip", "addr", "add", f"{self.ip}/24", "dev", "eth0")
        w.exec("ip", "-6", "addr", "add", f"{self.ip6}/64", "dev", "eth0", "nodad")
        h.exec("ip", "link", "set", self.ifname, "up")
        w.exec("ip", "link", "set", "eth0", "up")
        # (No dummy module here; frames to a made-up MAC are dropped by void1.)
        w.exec("ip", "link", "add", "void0", "type", "veth", "peer", "name", "void1")
        for dev in ("void0", "void1"):
            w.exec("ip", "link", "set", dev, "up")
        w.exec("ip", "addr", "add", "10.97.0.1/30", "dev", "void0")
        for gw in ("10.97.0.2", "fe80::2"):
            w.exec("ip", "neigh", "replace", gw, "lladdr", "02:00:00:00:00:02", "dev", "void0",
                   "nud", "permanent")
            w.exec("ip", "route", "add", "default", "via", gw, "dev", "void0")
        self.mac = None

    def route_via_host(self, cidr: str) -> None:
        via = self.host_ip6 if ":" in cidr else self.host_ip
        self.ns.exec("ip", "route", "replace", cidr, "via", via, "dev", "eth0")

    def unroute(self, cidr: str) -> None:
        self.ns.exec("ip", "route", "del", cidr, check=False)
