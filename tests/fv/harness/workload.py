"""Workloads: a namespace each, attached to the host namespace by a veth whose host side is
``cali<id>`` and whose workload side is ``eth0`` with the workload's /32 (and /128), routed via
the link-scoped next hop 169.254.1.1 (IPv6: via the host veth's link-local address), exactly as
Calico's CNI/libnetwork plugins wire them.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from tests.fv.harness.netns import HostNamespace, Netns

TCP_PORTS = (8080, 8081)
UDP_PORTS = (5353, 5354)
WLAGENT = os.path.join(os.path.dirname(__file__), "wlagent.py")


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    err: str


class ProbeClient:
    """Talks to a wlagent over its unix socket; one connection per thread, so a background
    prober and the test body can probe the same workload at once."""

    def __init__(self, sock_path: str) -> None:
        self.sock_path = sock_path
        self._local = threading.local()
        self._all: list[socket.socket] = []

    def _file(self):  # type: ignore[no-untyped-def]
        f = getattr(self._local, "file", None)
        if f is not None:
            return f
        deadline = time.monotonic() + 10
        while True:
            try:
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect(self.sock_path)
                break
            except OSError:
                c.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._all.append(c)
        self._local.file = c.makefile("rwb")
        return self._local.file

    def request(self, **req: object) -> ProbeResult:
        f = self._file()
        f.write((json.dumps(req) + "\n").encode())
        f.flush()
        reply = json.loads(f.readline())
        return ProbeResult(bool(reply["ok"]), str(reply["err"]))

    def close(self) -> None:
        for c in self._all:
            c.close()
        self._all.clear()
        self._local = threading.local()


class Workload:
    """A workload namespace on ``host``. ``ip`` is required; ``ip6`` optional."""

    def __init__(self, host: HostNamespace, name: str, ip: str, ip6: str | None = None,
                 *, ifname: str | None = None, mac: str | None = None,
                 create_interface: bool = True) -> None:
        self.host = host
        self.name = name
        self.ip = ip
        self.ip6 = ip6
        self.ifname = ifname or ("cali" + name)[:15]
        assert len(self.ifname) <= 15
        self.ns = Netns("fvw")
        self.tmp = tempfile.mkdtemp(prefix="fvwl-")
        self.sock = os.path.join(self.tmp, "agent.sock")
        self._mac = mac
        self.agent = self.ns.popen(
            [sys.executable, WLAGENT, "--sock", self.sock,
             "--tcp", ",".join(map(str, TCP_PORTS)), "--udp", ",".join(map(str, UDP_PORTS))],
            stdout=open(os.path.join(self.tmp, "agent.log"), "w"), stderr=subprocess_stdout())
        self.client = ProbeClient(self.sock)
        self.mac: str | None = None
        if create_interface:
            self.create_interface()

    def create_interface(self) -> None:
        """Create the veth pair and the workload-side addressing (the CNI plugin's job)."""
        h, w = self.host, self.ns
        h.exec("ip", "link", "add", self.ifname, "type", "veth", "peer", "name", "eth0",
               "netns", w.name)
        if self._mac:
            w.exec("ip", "link", "set", "eth0", "address", self._mac)
        h.exec("ip", "link", "set", self.ifname, "up")
        w.exec("ip", "link", "set", "eth0", "up")
        w.exec("ip", "addr", "add", f"{self.ip}/32", "dev", "eth0")
        w.exec("ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
        w.exec("ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
        if self.ip6:
            w.exec("ip", "-6", "addr", "add", f"{self.ip6}/128", "dev", "eth0", "nodad")
            w.exec("ip", "-6", "route", "add", "default", "via", self.host_link_local(), "dev", "eth0")
        self.mac = json.loads(w.exec("ip", "-j", "link", "show", "eth0").stdout)[0]["address"]

    def host_link_local(self) -> str:
        out = json.loads(self.host.exec("ip", "-j", "-6", "addr", "show", "dev", self.ifname,
                                        "scope", "link").stdout)
        for link in out:
            for a in link.get("addr_info", []):
                return str(a["local"])
        raise RuntimeError(f"no link-local address on {self.ifname}")

    def delete_interface(self) -> None:
        self.host.exec("ip", "link", "del", self.ifname, check=False)

    def endpoint(self, *, profile_ids: tuple[str, ...] = (), labels: dict[str, str] | None = None,
                 state: str = "active", **extra: object) -> dict[str, object]:
        """The workload-endpoint JSON for this workload (datastore contract)."""
        data: dict[str, object] = {
            "state": state, "name": self.ifname, "profile_ids": list(profile_ids),
            "labels": labels or {}, "ipv4_nets": [f"{self.ip}/32"],
            "ipv4_gateway": "169.254.1.1",
        }
        if self.mac:
            data["mac"] = self.mac
        if self.ip6:
            data["ipv6_nets"] = [f"{self.ip6}/128"]
            data["ipv6_gateway"] = "fe80::1"
        data.update(extra)
        return data

    def probe(self, proto: str, dst: str, port: int = 0, timeout: float = 0.5,
              src: str | None = None, sport: int | None = None) -> ProbeResult:
        return self.client.request(op=proto, dst=dst, port=port, timeout=timeout, src=src,
                                   sport=sport)

    def can_reach(self, proto: str, dst: str, port: int = 0, timeout: float = 0.5) -> bool:
        return self.probe(proto, dst, port, timeout).ok

    def stop(self) -> None:
        self.client.close()
        self.agent.kill()
        self.agent.wait()
        self.delete_interface()
        self.ns.delete()


def subprocess_stdout() -> int:
    import subprocess
    return subprocess.STDOUT
