"""B1-B8 on one environment (1,000 local endpoints in full mode), in an order where each
scenario leaves the state the next expects. Each adds its figures to the report."""

from __future__ import annotations

import copy
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench import observe as ob
from bench import workload_gen as gen
from bench.env import HEALTH_PORT, METRICS_PORT, BenchEnv
from bench.floor import Capture, FloorNamespace, capture, chain_rewrite
from bench.report import Report


@dataclass(frozen=True)
class Scale:
    local: int
    remote: int
    policies: int
    big_tag: int
    idle_secs: float
    churn_secs: float
    churn_rates: tuple[int, ...]
    sweep_rules: tuple[int, ...]
    sweep_backends: tuple[str, ...]


QUICK = Scale(local=200, remote=2000, policies=200, big_tag=10_000, idle_secs=20,
              churn_secs=3, churn_rates=(10, 50, 100, 200), sweep_rules=(1000, 10_000),
              sweep_backends=("legacy",))
FULL = Scale(local=1000, remote=10_000, policies=200, big_tag=100_000, idle_secs=60,
             churn_secs=10, churn_rates=(10, 50, 100, 200),
             sweep_rules=(1000, 5000, 10_000, 25_000, 50_000), sweep_backends=("legacy", "nft"))


@dataclass
class Ctx:
    env: BenchEnv
    report: Report
    scale: Scale
    rng: random.Random
    local: dict[str, dict[str, Any]] = field(default_factory=dict)
    cap: Capture | None = None
    floor_ns: FloorNamespace | None = None

    @property
    def backend(self) -> str:
        return self.env.backend

    def metrics(self) -> dict[str, float]:
        return ob.scrape(METRICS_PORT)

    def lines(self) -> tuple[float, float]:
        return ob.kernel_lines(self.metrics())

    def wait_programmed(self, names: set[str], timeout: float, poll: float = 0.02) -> float:
        return ob.wait_until(lambda: names <= ob.programmed_ifaces(self.backend), timeout, poll)

    def wait_quiet(self, settle: float = 0.5, timeout: float = 30) -> None:
        """Until felix has written nothing to the kernel for `settle` seconds."""
        deadline = time.monotonic() + timeout
        last = self.lines()
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.lines()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= settle:
                return


def b1_cold_start(c: Ctx) -> None:
    s, r = c.scale, c.report
    t0 = time.monotonic()
    c.local = c.env.populate(c.rng, s.local, s.remote, s.policies)
    r.extra["populate_secs"] = time.monotonic() - t0
    names = set(c.local)
    t0 = time.monotonic()
    c.env.start_felix()
    pid = c.env.felix_pid
    elapsed = c.wait_programmed(names, timeout=600, poll=0.05) + 0.0
    elapsed = time.monotonic() - t0
    at_prog = ob.ProcSample.of(pid)
    ob.wait_until(lambda: ob.health_ready(HEALTH_PORT), 120, 0.1)
    c.wait_quiet(settle=1.0)
    time.sleep(2.5)  # past StartupCleanupDelay, so the capture is the steady state
    c.wait_quiet()
    m = c.metrics()
    c.cap = capture(c.backend)
    c.floor_ns = FloorNamespace(c.cap)
    fl = c.floor_ns.load()
    r.extra["B1_floor_parts"] = fl.parts
    r.extra["B1_state"] = {"iptables_save_lines": c.cap.iptables_lines,
                           "ipset_save_lines": c.cap.ipset_lines,
                           "routes": sum(len(v) for v in c.cap.routes.values()),
                           "felix_iptables_rules": m.get("felix_iptables_rules"),
                           "felix_ipsets_total": m.get("felix_ipsets_total")}
    r.add("B1", f"cold start to programmed ({s.local} local)", elapsed, "s", fl.total,
          "<= 1.5x floor", lambda v: v <= 1.5 * fl.total)
    r.add("B1", "felix CPU at programmed (own)", at_prog.cpu, "s", fl.total)
    r.add("B1", "children CPU at programmed (iptables/ipset)", at_prog.child_cpu, "s")
    r.add("B1", "peak RSS (VmHWM)", at_prog.hwm_mb, "MB", None, "<= 150 MB", lambda v: v <= 150)
    ipt, ips = ob.kernel_lines(m)
    r.add("B1", "iptables lines written", ipt, "lines", float(c.cap.iptables_lines))
    r.add("B1", "ipset lines written", ips, "lines", float(c.cap.ipset_lines))
    sm, cnt, _ = ob.histogram(m, "felix_endpoint_programming_seconds")
    r.add("B1", "felix_endpoint_programming_seconds mean", sm / cnt if cnt else float("nan"), "s")
    r.note("B1 floor parts: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in fl.parts.items()))
STEPS = [("B1", b1_cold_start)]
