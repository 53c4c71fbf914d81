"""Truth-table harness: declare workloads and the expected connectivity over workloads ×
(TCP port, UDP port, ICMP) × IP family, then prove it with real packets.

``Matrix(workloads)`` starts with every ordered pair (src != dst) of every column and family
set to ``default``; ``allow``/``block``/``set`` carve out exceptions by source, destination,
column and family (``None`` = any), so "all pairs OK except from c to a" reads as
``Matrix(ws, default=True).block(src=c, dst=a)``. ``check(scenario)`` polls until every cell
matches or a bounded timeout expires; it records the time it took in ``CONVERGENCE`` (printed
by the conformance conftest at the end of the run) and, on a mismatch, raises with a readable
table: rows are sources, columns are ``dst:proto/port``; ``OK``/``--`` where reality matched the
expectation, ``OK*``/``--*`` where it did not (``*``: expected the opposite).
"""

from __future__ import annotations

import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence, Union

from tests.fv.harness.probes import HOST, probe
from tests.fv.harness.workload import Workload

Source = Union[Workload, str]
FAMILIES = (4, 6)

# Seconds each check took to converge, in run order; math.inf marks one that never did.
CONVERGENCE: list[tuple[str, float]] = []

PROBE_TIMEOUT = 0.3


@dataclass(frozen=True)
class Port:
    """A column kind: protocol, destination port, optional fixed source port (UDP only: a
    fixed TCP source port would collide with its own TIME_WAIT on the next poll). Probes of a
    fixed source port from one source run one after another (they share the local port), and
    an allowed one leaves a conntrack entry that admits the same 5-tuple for ~30 s whatever
    the policy says: use them where the policy does not change within that time."""

    proto: str
    port: int = 0
    sport: int | None = None

    def __post_init__(self) -> None:
        assert self.proto in ("tcp", "udp", "icmp"), self.proto
        assert self.sport is None or self.proto == "udp", "fixed source ports: UDP only"

    @property
    def label(self) -> str:
        if self.proto == "icmp":
            return "icmp"
        s = f"{self.proto}/{self.port}"
        return s if self.sport is None else f"{s}<{self.sport}"


TCP1, TCP2 = Port("tcp", 8080), Port("tcp", 8081)
UDP1, UDP2 = Port("udp", 5353), Port("udp", 5354)
ICMP = Port("icmp")
ALL_PORTS = (TCP1, TCP2, UDP1, UDP2, ICMP)


@dataclass(frozen=True)
class Cell:
    src: Source
    dst: Workload
    port: Port
    family: int

    @property
    def dst_ip(self) -> str:
        ip = self.dst.ip if self.family == 4 else self.dst.ip6
        assert ip is not None
        return ip


def _name(s: Source) -> str:
    return s if isinstance(s, str) else s.name


def _as_set(x: object) -> set[object] | None:
    if x is None:
        return None
    if isinstance(x, (list, tuple, set, frozenset)):
        return set(x)
    return {x}


# Workload probes go over each agent's unix socket, so they can run from any thread; a
# long-lived pool keeps one agent connection per thread instead of one per poll.
_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="matrix-probe")


def _probe(cell: Cell) -> bool:
    if isinstance(cell.src, Workload):
        return cell.src.probe(cell.port.proto, cell.dst_ip, cell.port.port, PROBE_TIMEOUT,
                              sport=cell.port.sport).ok
    return probe(cell.src, cell.port.proto, cell.dst_ip, cell.port.port, PROBE_TIMEOUT)


def _probe_group(cells: list[Cell]) -> list[bool]:
    return [_probe(c) for c in cells]


def probe_all(cells: Iterable[Cell]) -> dict[Cell, bool]:
    cells = list(cells)
    # HOST probes must run on the calling thread: it is the one inside the test's host netns.
    host = [c for c in cells if not isinstance(c.src, Workload)]
    groups: dict[object, list[Cell]] = {}
    for i, c in enumerate(cells):
        if isinstance(c.src, Workload):
            key = (c.src.name, c.port.sport) if c.port.sport is not None else i
            groups.setdefault(key, []).append(c)
    futures = [(g, _POOL.submit(_probe_group, g)) for g in groups.values()]
    got = {c: _probe(c) for c in host}
    for g, f in futures:
        got.update(zip(g, f.result()))
    return got


class Matrix:
    def __init__(self, workloads: Sequence[Workload], ports: Sequence[Port] = ALL_PORTS,
                 families: Sequence[int] = FAMILIES, default: bool = False,
                 sources: Sequence[Source] = (), dsts: Sequence[Workload] | None = None) -> None:
        """Rows: ``workloads`` plus ``sources`` (extra probe sources, e.g. ``HOST``); columns:
        ``dsts`` (default: the workloads)."""
        self.sources: list[Source] = [*workloads, *sources]
        self.workloads = list(workloads if dsts is None else dsts)
        self.ports = list(ports)
        self.families = [f for f in families
                         if f == 4 or any(w.ip6 for w in self.workloads)]
        assert self.families, "no destination has an address of the requested families"
        self.expected: dict[Cell, bool] = {}
        for f in self.families:
            for src in self.sources:
                for dst in self.workloads:
                    if src is dst or (f == 6 and dst.ip6 is None):
                        continue
                    if f == 6 and isinstance(src, Workload) and src.ip6 is None:
                        continue
                    for p in self.ports:
                        self.expected[Cell(src, dst, p, f)] = default

    def cells(self, src: object = None, dst: object = None, ports: object = None,
              families: object = None) -> list[Cell]:
        s, d, p, f = _as_set(src), _as_set(dst), _as_set(ports), _as_set(families)
        return [c for c in self.expected
                if (s is None or c.src in s) and (d is None or c.dst in d)
                and (p is None or c.port in p) and (f is None or c.family in f)]

    def set(self, value: bool, src: object = None, dst: object = None, ports: object = None,
            families: object = None) -> "Matrix":
        """Set every cell matching all the filters; each filter is one item, a collection, or
        None for any. Returns self, so exceptions chain."""
        cells = self.cells(src, dst, ports, families)
        assert cells, "filter matched no cell"
        for c in cells:
            self.expected[c] = value
        return self

    def allow(self, src: object = None, dst: object = None, ports: object = None,
              families: object = None) -> "Matrix":
        return self.set(True, src, dst, ports, families)

    def block(self, src: object = None, dst: object = None, ports: object = None,
              families: object = None) -> "Matrix":
        return self.set(False, src, dst, ports, families)

    def copy(self) -> "Matrix":
        m = Matrix.__new__(Matrix)
        m.workloads, m.sources = list(self.workloads), list(self.sources)
        m.ports, m.families = list(self.ports), list(self.families)
        m.expected = dict(self.expected)
        return m

    def check(self, scenario: str, timeout: float = 15.0, record: bool = True,
              prober: Callable[[Iterable[Cell]], dict[Cell, bool]] = probe_all) -> float:
        """Poll with real packets until reality equals the matrix; returns (and, if
        ``record``, appends to CONVERGENCE) the seconds it took. Raises AssertionError with
        the rendered matrix on timeout. ``prober`` (default: real packets) is a seam for
        testing the harness itself.

        After a full pass only the wrong cells are re-probed (a short poll, so the time is
        measured to within ~one probe timeout); once they are right, one more full pass must
        confirm every cell, and the time is that of the short poll that saw the last fix."""
        # Parametrised tests run the same scenarios more than once: tell them apart.
        param = re.search(r"\[(.+?)\]", os.environ.get("PYTEST_CURRENT_TEST", ""))
        if param:
            scenario = f"{scenario} [{param.group(1)}]"
        start = time.monotonic()
        deadline = start + timeout
        polls = 0
        got: dict[Cell, bool] = {}
        pending: list[Cell] = list(self.expected)
        fixed_at: float | None = None
        while True:
            full = len(pending) == len(self.expected)
            got.update(prober(pending))
            polls += 1
            now = time.monotonic()
            wrong = [c for c in pending if got[c] != self.expected[c]]
            if not wrong and full:
                took = (fixed_at if fixed_at is not None else now) - start
                if record:
                    CONVERGENCE.append((scenario, took))
                print(f"[matrix] {scenario}: converged in {took:.2f}s ({polls} polls, "
                      f"{len(self.expected)} cells)")
                return took
            if now > deadline:
                if record:
                    CONVERGENCE.append((scenario, math.inf))
                raise AssertionError(f"[matrix] {scenario}: did not converge in {timeout:.1f}s\n"
                                     + self.render(got))
            if wrong:
                pending, fixed_at = wrong, None
                time.sleep(0.05)
            else:
                pending, fixed_at = list(self.expected), now

    def render(self, got: dict[Cell, bool], width: int = 150) -> str:
        """Rows = sources, columns = destination × port, wrapped into blocks of destinations
        so each line stays within ``width``."""
        out: list[str] = []
        wrong: list[str] = []
        w0 = max(4, *(len(_name(s)) for s in self.sources)) + 1
        pw = [max(len(p.label), 3) for p in self.ports]
        group = max(sum(pw) + len(pw) - 1, max(len(d.name) for d in self.workloads))
        per_block = max(1, (width - w0) // (group + 3))
        for f in self.families:
            for b in range(0, len(self.workloads), per_block):
                block = self.workloads[b:b + per_block]
                out.append(f"IPv{f}".ljust(w0) + "".join(f"| {d.name.ljust(group)} " for d in block))
                ports = " ".join(p.label.ljust(w) for p, w in zip(self.ports, pw)).ljust(group)
                out.append("".ljust(w0) + f"| {ports} " * len(block))
                for s in self.sources:
                    line = _name(s).ljust(w0)
                    for d in block:
                        marks = []
                        for p, w in zip(self.ports, pw):
                            c = Cell(s, d, p, f)
                            if c not in self.expected:
                                marks.append("".ljust(w))
                                continue
                            mark = "OK" if got[c] else "--"
                            if got[c] != self.expected[c]:
                                mark += "*"
                                wrong.append(f"  IPv{f} {_name(s)} -> {d.name}:{p.label}: expected "
                                             f"{'OK' if self.expected[c] else 'blocked'}")
                            marks.append(mark.ljust(w))
                        line += "| " + " ".join(marks).ljust(group) + " "
                    out.append(line.rstrip())
                out.append("")
        out.append(f"OK = connected, -- = blocked, * = the opposite was expected ({len(wrong)}):")
        return "\n".join(out + wrong)


__all__ = ["ALL_PORTS", "CONVERGENCE", "Cell", "FAMILIES", "HOST", "ICMP", "Matrix", "Port",
           "TCP1", "TCP2", "UDP1", "UDP2", "probe_all"]
