"""Watching felix from outside: what the kernel holds (proto-80 routes, cali-tw/fw chains,
ipset sizes), felix's own Prometheus metrics scraped inside the namespace, and the process's
CPU time and peak RSS from /proc."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from typing import Callable, Iterable

from prometheus_client.parser import text_string_to_metric_families

from felix.rules.names import FROM_WORKLOAD, TO_WORKLOAD

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def routed_ifaces() -> set[str]:
    """Interfaces with a felix-owned (proto 80) IPv4 route."""
    out = _run("ip", "-4", "route", "show", "proto", "80")
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if "dev" in parts:
            found.add(parts[parts.index("dev") + 1])
    return found


def filter_chains(backend: str) -> set[str]:
    out = _run(f"iptables-{backend}-save", "-t", "filter")
    return {line[1:].split(" ", 1)[0] for line in out.splitlines() if line.startswith(":")}


def programmed_ifaces(backend: str) -> set[str]:
    """Interfaces whose route and both endpoint chains are in the kernel."""
    routed = routed_ifaces()
    chains = filter_chains(backend)
    return {i for i in routed
            if TO_WORKLOAD + i in chains and FROM_WORKLOAD + i in chains}


def ipset_sizes() -> dict[str, int]:
    out = _run("ipset", "list", "-t")
    sizes: dict[str, int] = {}
    name = ""
    for line in out.splitlines():
        if line.startswith("Name: "):
            name = line[6:].strip()
        elif line.startswith("Number of entries: "):
            sizes[name] = int(line.split(":")[1])
    return sizes


def wait_until(pred: Callable[[], bool], timeout: float, poll: float = 0.02) -> float:
    """Seconds until pred() holds (measured at the end of the check that saw it)."""
    t0 = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(poll)


def scrape(port: int) -> dict[str, float]:
    """felix's metrics as {name{labels}: value}; histograms as _sum/_count/_bucket samples."""
    # Generous: felix serves metrics from the same gevent hub as its work, so a long
    # CPU-bound step (seen: > 10 s under heavy churn at 1,000 endpoints) delays the reply.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=120) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            lab = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{lab}}}" if lab else "")] = s.value
    return out


def kernel_lines(m: dict[str, float]) -> tuple[float, float]:
    """(iptables lines, ipset lines) written so far."""
    return (m.get("felix_iptables_lines_executed_total", m.get("felix_iptables_lines_executed", 0.0)),
            m.get("felix_ipset_lines_executed_total", m.get("felix_ipset_lines_executed", 0.0)))


def histogram(m: dict[str, float], name: str) -> tuple[float, float, dict[float, float]]:
    """(sum, count, {le: cumulative count})."""
    buckets = {}
    for k, v in m.items():
        if k.startswith(name + "_bucket{le="):
            le = k[len(name) + 11:-1]
            buckets[float(le)] = v
    return m.get(name + "_sum", 0.0), m.get(name + "_count", 0.0), buckets


def histogram_quantile(q: float, buckets: dict[float, float], base: dict[float, float] | None = None) -> float:
    """Upper bucket bound holding the q-quantile of the observations since base."""
    items = sorted((le, c - (base or {}).get(le, 0.0)) for le, c in buckets.items())
    if not items or items[-1][1] <= 0:
        return float("nan")
    target = q * items[-1][1]
    for le, c in items:
        if c >= target:
            return le
    return float("inf")


def health_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readiness", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@dataclass(frozen=True)
class ProcSample:
    cpu: float        # felix's own user+system seconds
    child_cpu: float  # reaped children (iptables-restore, ipset, ...) user+system seconds
    hwm_mb: float     # peak RSS

    @staticmethod
    def of(pid: int) -> "ProcSample":
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is state (field 3); utime/stime/cutime/cstime are fields 14-17
        ut, st, cut, cst = (int(x) for x in fields[11:15])
        hwm = 0.0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
        return ProcSample((ut + st) / CLK_TCK, (cut + cst) / CLK_TCK, hwm)


def percentile(values: Iterable[float], q: float) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))
    return v[k]


def apply_seconds(before: dict[str, float], after: dict[str, float]) -> tuple[float, float]:
    """(seconds, applies) felix spent in dataplane applies between two scrapes."""
    s0, c0, _ = histogram(before, "felix_int_dataplane_apply_time_seconds")
    s1, c1, _ = histogram(after, "felix_int_dataplane_apply_time_seconds")
    return s1 - s0, c1 - c0
