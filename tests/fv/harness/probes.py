"""Real-packet probes, poll-until-expected and a continuous prober.

A probe is (source, proto, destination IP, port). Sources are Workloads (probing from inside
their namespace through their agent) or HOST (the test process itself, which runs in the test
host namespace).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from tests.fv.harness import wlagent
from tests.fv.harness.workload import Workload

HOST = "host"


def probe(src: Workload | str, proto: str, dst: str, port: int = 0, timeout: float = 0.5) -> bool:
    if isinstance(src, Workload):
        return src.can_reach(proto, dst, port, timeout)
    if proto == "tcp":
        return wlagent.probe_tcp(dst, port, timeout, None, None)[0]
    if proto == "udp":
        return wlagent.probe_udp(dst, port, timeout, None, None)[0]
    return wlagent.probe_icmp(dst, timeout, None)[0]


@dataclass(frozen=True)
class Check:
    src: Workload | str
    proto: str
    dst: str
    port: int = 0
    label: str = ""

    def describe(self) -> str:
        src = self.src.name if isinstance(self.src, Workload) else self.src
        return self.label or f"{src} -> {self.dst}:{self.proto}/{self.port}"


def run_checks(checks: Sequence[Check], timeout: float = 0.5) -> dict[Check, bool]:
    return {c: probe(c.src, c.proto, c.dst, c.port, timeout) for c in checks}


def wait_for(expected: Mapping[Check, bool], timeout: float = 15, probe_timeout: float = 0.4) -> float:
    """Poll until every check gives its expected result; returns the seconds it took. Raises
    AssertionError listing the mismatches when the bounded timeout expires."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        got = run_checks(list(expected), probe_timeout)
        wrong = {c: g for c, g in got.items() if g != expected[c]}
        if not wrong:
            return time.monotonic() - start
        if time.monotonic() > deadline:
            lines = [f"  {c.describe()}: expected {'OK' if expected[c] else 'BLOCKED'}, got "
                     f"{'OK' if g else 'BLOCKED'}" for c, g in wrong.items()]
            raise AssertionError("connectivity did not converge in %.1fs:\n%s" % (timeout, "\n".join(lines)))
        time.sleep(0.1)


def wait_until(cond: Callable[[], object], timeout: float = 15, interval: float = 0.1,
               what: str = "condition") -> float:
    start = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class ContinuousProber:
    """Probes checks in a background thread until stopped; counts failures. Only
    connection-per-probe (TCP connect, UDP and ICMP round trips), so a conntrack-established
    flow cannot hide a policy hole or an outage."""

    checks: Sequence[Check]
    interval: float = 0.1
    timeout: float = 0.5
    attempts: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for c in self.checks:
                ok = probe(c.src, c.proto, c.dst, c.port, self.timeout)
                self.attempts += 1
                if not ok:
                    self.failures.append((time.time(), c.describe()))
            self._stop.wait(self.interval)

    def __enter__(self) -> "ContinuousProber":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
