"""Conformance suite: prints how long each truth-table check took to converge."""

from __future__ import annotations

import math

import pytest

from tests.fv.conformance.matrix import CONVERGENCE


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CONVERGENCE:
        return
    tr = terminalreporter
    tr.section("conformance: time to converge")
    width = max(len(s) for s, _ in CONVERGENCE)
    for scenario, secs in CONVERGENCE:
        tr.write_line(f"{scenario.ljust(width)}  " + ("DID NOT CONVERGE" if math.isinf(secs)
                                                      else f"{secs:6.2f}s"))
    done = [s for _, s in CONVERGENCE if not math.isinf(s)]
    if done:
        tr.write_line(f"{len(done)} converged; max {max(done):.2f}s, "
                      f"mean {sum(done) / len(done):.2f}s")
