"""The kernel floor: the time the raw tools need to load the state felix produced. Captured
after felix converged (iptables-save per table and IP version, ipset save, proto-80 routes),
then loaded into a fresh namespace (with the same cali* veths, created untimed) by one
`ipset restore`, one `iptables-restore` per table and one `ip -batch` of routes."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field

from tests.fv.harness.netns import Netns

from bench.env import ip_batch

TABLES = ("raw", "mangle", "nat", "filter")


@dataclass(frozen=True)
class Capture:
    backend: str
    tables: dict[tuple[int, str], str]   # (ip version, table) -> save text
    ipsets: str
    routes: dict[int, list[str]]          # ip version -> route lines
    ifaces: tuple[str, ...]

    @property
    def iptables_lines(self) -> int:
        return sum(len(t.splitlines()) for t in self.tables.values())

    @property
    def ipset_lines(self) -> int:
        return len(self.ipsets.splitlines())


def _tool(v: int, backend: str, what: str) -> str:
    return f"{'ip6' if v == 6 else 'ip'}tables-{backend}-{what}"


def capture(backend: str) -> Capture:
    tables: dict[tuple[int, str], str] = {}
    for v in (4, 6):
        for t in TABLES:
            out = subprocess.run([_tool(v, backend, "save"), "-t", t], capture_output=True,
                                 text=True).stdout
            if "cali" in out:
                tables[(v, t)] = out
    ipsets = subprocess.run(["ipset", "save"], capture_output=True, text=True, check=True).stdout
    routes: dict[int, list[str]] = {}
    ifaces: set[str] = set()
    for v in (4, 6):
        out = subprocess.run(["ip", f"-{v}", "route", "show", "proto", "80"],
                             capture_output=True, text=True, check=True).stdout
        routes[v] = [l.strip() for l in out.splitlines() if l.strip()]
        for line in routes[v]:
            m = re.search(r"\bdev (\S+)", line)
            if m:
                ifaces.add(m.group(1))
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for m in re.finditer(r"^\d+: (cali[^:@]+)", links, re.M):
        ifaces.add(m.group(1))
    return Capture(backend, tables, ipsets, routes, tuple(sorted(ifaces)))


@dataclass
class FloorResult:
    total: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)


def _timed(argv: list[str], data: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, input=data, text=True, check=True, capture_output=True)
    return time.perf_counter() - t0


class FloorNamespace:
    """A fresh namespace with the capture's interfaces, in which loads are timed."""

    def __init__(self, cap: Capture) -> None:
        self.cap = cap
        self.ns = Netns("bnf")
        self.peer = Netns("bnp")
        lines = []
        for n in cap.ifaces:
            lines += [f"link add {n} type veth peer name p{n[4:]} netns {self.peer.name}",
                      f"link set {n} up"]
        ip_batch(lines, self.ns.name)

    def load(self) -> FloorResult:
        """Time to load the whole captured state with the raw tools."""
        r = FloorResult()
        with self.ns.entered():
            r.parts["ipset restore"] = _timed(["ipset", "restore"], self.cap.ipsets)
            for (v, t), text in sorted(self.cap.tables.items()):
                r.parts[f"ip{v}tables-restore {t}"] = _timed(
                    [_tool(v, self.cap.backend, "restore")], text)
            for v, lines in self.cap.routes.items():
                if lines:
                    batch = "".join(f"route replace {l} proto 80\n".replace(" proto 80 proto 80", " proto 80")
                                    for l in lines)
                    r.parts[f"ip -{v} -batch routes"] = _timed(["ip", f"-{v}", "-batch", "-"], batch)
        r.total = sum(r.parts.values())
        return r

    def timed_restore(self, v: int, table: str, text: str, noflush: bool = True) -> float:
        """Time one (incremental) iptables-restore in the loaded namespace."""
        argv = [_tool(v, self.cap.backend, "restore")] + (["--noflush"] if noflush else [])
        with self.ns.entered():
            return _timed(argv, text)

    def timed_ipset(self, text: str) -> float:
        with self.ns.entered():
            return _timed(["ipset", "restore"], text)

    def close(self) -> None:
        self.ns.delete()
        self.peer.delete()


def chain_rewrite(cap: Capture, v: int, table: str, chain: str) -> str:
    """restore --noflush input that rewrites one chain as it is in the capture: the minimal
    raw-tool equivalent of changing one rule in it."""
    text = cap.tables[(v, table)]
    body = [l for l in text.splitlines() if l.startswith(f"-A {chain} ")]
    return f"*{table}\n-F {chain}\n" + "\n".join(body) + "\nCOMMIT\n"


def timed_chain_rewrite(floor: "FloorNamespace", chain: str, old: str, new: str) -> float:
    """Floor for changing one rule of `chain`: rewrite it in every IP version's filter table
    that holds it (felix must too), `old` replaced by `new`."""
    total = 0.0
    for v in (4, 6):
        text = floor.cap.tables.get((v, "filter"), "")
        if f":{chain} " in text:
            total += floor.timed_restore(v, "filter",
                                         chain_rewrite(floor.cap, v, "filter", chain).replace(old, new))
    return total
