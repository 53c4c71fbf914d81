"""Optional py-spy sampling of felix during a scenario (BENCH_PROFILE=1): folded stacks go to
bench/results/prof-<name>.txt, and the hottest frames (self and inclusive) are summarised."""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import sys
from typing import Iterator

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def enabled() -> bool:
    return os.environ.get("BENCH_PROFILE") == "1"


@contextlib.contextmanager
def sampled(pid: int, name: str) -> Iterator[None]:
    pyspy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not enabled() or not shutil.which(pyspy):
        yield
        return
    os.makedirs(RESULTS, exist_ok=True)
    out = os.path.join(RESULTS, f"prof-{name}.txt")
    proc = subprocess.Popen([pyspy, "record", "-p", str(pid), "-f", "raw", "-r", "200",
                             "-o", out, "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(2)
        proc.wait(30)
        print(summarise(out), flush=True)


def summarise(path: str, top: int = 15) -> str:
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if not n.isdigit():
                continue
            k = int(n)
            total += k
            frames = stack.split(";")
            self_c[frames[-1]] += k
            for fr in set(frames):
                incl[fr] += k
    lines = [f"profile {os.path.basename(path)}: {total} samples", "  self:"]
    lines += [f"    {100 * v / total:5.1f}% {k}" for k, v in self_c.most_common(top)]
    lines += ["  inclusive:"]
    lines += [f"    {100 * v / total:5.1f}% {k}" for k, v in incl.most_common(top * 2)]
    return "\n".join(lines)
