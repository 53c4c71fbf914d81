"""Expected connectivity to any address (host, floating IP, metadata IP, outside network), not
only between workloads: ``Flow``s with an expected result, proven with real packets by
``converge``, which records its convergence time alongside the truth-table harness's."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from tests.fv.conformance.matrix import CONVERGENCE
from tests.fv.harness import wlagent
from tests.fv.harness.workload import Workload

HOST = "host"
PROBE_TIMEOUT = 0.3
# (proto, port) columns: one TCP, one UDP (the wlagent's echo ports) and ICMP.
TCP, UDP, ICMP = ("tcp", 8080), ("udp", 5353), ("icmp", 0)
ALL = (TCP, UDP, ICMP)

# Workload probes go over unix sockets, so any thread may send them; HOST probes must run on
# the calling thread, the one inside the test's host namespace.
_POOL = ThreadPoolExecutor(max_workers=12, thread_name_prefix="net-flow")


@dataclass(frozen=True)
class Flow:
    """One probe: ``src`` (a Workload, or HOST = the test's host namespace) to ``dst``:``port``
    over ``proto``; ``from_ip`` sends from another source address (anti-spoofing), ``sport``
    from a fixed source port (UDP: DHCP)."""

    src: Workload | str
    proto: str
    dst: str
    port: int = 0
    from_ip: str | None = None
    sport: int | None = None

    def describe(self) -> str:
        src = self.src.name if isinstance(self.src, Workload) else self.src
        via = f" (from {self.from_ip})" if self.from_ip else ""
        via += f" (sport {self.sport})" if self.sport else ""
        port = f":{self.port}" if self.proto != "icmp" else ""
        return f"{src}{via} -> {self.dst}{port} {self.proto}"

    def run(self, timeout: float = PROBE_TIMEOUT) -> bool:
        if isinstance(self.src, Workload) and self.proto == "icmp" and self.from_ip \
                and ":" in self.from_ip:
            # The agent's raw ICMPv6 socket cannot take a source (it sets the IPv4-level
            # IP_FREEBIND, ENOPROTOOPT on IPv6): ping binds an address the workload holds.
            return self.src.ns.exec("ping", "-6", "-n", "-q", "-c", "1", "-W", "1",
                                    "-I", self.from_ip, self.dst, check=False).returncode == 0
        if isinstance(self.src, Workload):
            return self.src.probe(self.proto, self.dst, self.port, timeout, src=self.from_ip,
                                  sport=self.sport).ok
        if self.proto == "tcp":
            return wlagent.probe_tcp(self.dst, self.port, timeout, self.from_ip, self.sport)[0]
        if self.proto == "udp":
            return wlagent.probe_udp(self.dst, self.port, timeout, self.from_ip, self.sport)[0]
        return wlagent.probe_icmp(self.dst, timeout, self.from_ip)[0]


def flows(src: Workload | str, dsts: Iterable[str | None],
          ports: Sequence[tuple[str, int]] = ALL, from_ips: Iterable[str | None] = ()) -> list[Flow]:
    """Every (dst, port) from ``src``; ``dsts`` may hold None (a family the peer lacks), which is
    skipped. ``from_ips`` pairs with ``dsts`` position by position when given."""
    dst_list = list(dsts)
    froms = list(from_ips) or [None] * len(dst_list)
    return [Flow(src, proto, dst, port, frm) for dst, frm in zip(dst_list, froms)
            if dst is not None for proto, port in ports]


def expect(ok: bool, *groups: Iterable[Flow]) -> dict[Flow, bool]:
    return {f: ok for g in groups for f in g}


def probe_all(fs: Iterable[Flow]) -> dict[Flow, bool]:
    fs = list(fs)
    futures = {f: _POOL.submit(f.run) for f in fs if isinstance(f.src, Workload)}
    got = {f: f.run() for f in fs if not isinstance(f.src, Workload)}
    got.update({f: fut.result() for f, fut in futures.items()})
    return got


def converge(scenario: str, expected: Mapping[Flow, bool], timeout: float = 20.0) -> float:
    """Poll until every flow gives its expected result; returns and records the seconds it
    took. Raises AssertionError listing the flows that disagree at the deadline."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        got = probe_all(expected)
        wrong = {f: g for f, g in got.items() if g != expected[f]}
        if not wrong:
            took = time.monotonic() - start
            CONVERGENCE.append((scenario, took))
            print(f"[flows] {scenario}: converged in {took:.2f}s ({len(expected)} flows)")
            return took
        if time.monotonic() > deadline:
            CONVERGENCE.append((scenario, math.inf))
            lines = [f"  {f.describe()}: expected {'OK' if expected[f] else 'BLOCKED'}, got "
                     f"{'OK' if g else 'BLOCKED'}" for f, g in wrong.items()]
            raise AssertionError(f"{scenario}: did not converge in {timeout:.1f}s "
                                 f"({len(wrong)}/{len(expected)} wrong):\n" + "\n".join(lines))
        time.sleep(0.1)
