"""Probing every (source, destination) pair with real TCP connections, and printing it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping

from demo.scenario import PORT, ROLES
from tests.fv.harness.workload import Workload

Matrix = dict[tuple[str, str], bool]


class Prober:
    """Probes all pairs in parallel from a fixed set of threads (each thread keeps its own
    connection to every workload's agent)."""

    def __init__(self, workloads: Mapping[str, Workload], timeout: float = 0.3) -> None:
        self.workloads = workloads
        self.timeout = timeout
        self.pairs = [(s.name, d.name) for s in ROLES for d in ROLES if s != d]
        self._pool = ThreadPoolExecutor(max_workers=len(self.pairs))

    def _one(self, pair: tuple[str, str]) -> bool:
        src, dst = pair
        return self.workloads[src].can_reach("tcp", self.workloads[dst].ip, PORT, self.timeout)

    def probe_all(self) -> Matrix:
        return dict(zip(self.pairs, self._pool.map(self._one, self.pairs)))

    def wait_converged(self, want: Matrix, timeout: float = 20) -> tuple[float, Matrix]:
        """Polls until the matrix is as wanted; returns (seconds, last matrix seen)."""
        start = time.monotonic()
        while True:
            got = self.probe_all()
            if got == want or time.monotonic() - start > timeout:
                return time.monotonic() - start, got
            time.sleep(0.05)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def render(got: Matrix, want: Matrix | None = None) -> str:
    names = [r.name for r in ROLES]
    width = max(len(n) for n in names) + 2
    lines = ["  from \\ to".ljust(width + 4) + "".join(n.center(width) for n in names)]
    for src in names:
        cells = []
        for dst in names:
            if src == dst:
                cells.append("·".center(width))
                continue
            ok = got[(src, dst)]
            mark = "allow" if ok else "deny"
            if want is not None and want[(src, dst)] != ok:
                mark += "!"
            cells.append(mark.center(width))
        lines.append(f"  {src}".ljust(width + 4) + "".join(cells))
    return "\n".join(lines)


def diff(before: Matrix, after: Matrix) -> list[str]:
    return [f"{s} -> {d}: {'allow' if before[(s, d)] else 'deny'} => "
            f"{'allow' if after[(s, d)] else 'deny'}"
            for (s, d) in before if before[(s, d)] != after[(s, d)]]
