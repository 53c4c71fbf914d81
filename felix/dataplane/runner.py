"""The one seam through which the dataplane runs kernel tools (iptables-restore, ipset, ...).

Unit tests inject a stateful fake with the same ``run`` signature; production uses
SubprocessRunner, which goes through gevent's subprocess when the process is monkey-patched so
that waiting for a child never blocks the hub.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0


class CommandRunner(Protocol):
    def run(self, argv: Sequence[str], input: str | None = None,
            timeout: float | None = None) -> CommandResult: ...


class CommandNotFound(RuntimeError):
    pass


class SubprocessRunner:
    """Runs a command to completion; a missing binary or a timeout becomes a failed result
    (returncode 127 / 124) rather than an exception, so callers handle one failure shape."""

    def run(self, argv: Sequence[str], input: str | None = None,
            timeout: float | None = None) -> CommandResult:
        start = time.monotonic()
        try:
            proc = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except FileNotFoundError as e:
            return CommandResult(127, "", str(e), time.monotonic() - start)
        except subprocess.TimeoutExpired:
            return CommandResult(124, "", f"timed out after {timeout}s",
                                 time.monotonic() - start)
        return CommandResult(proc.returncode, proc.stdout, proc.stderr,
                             time.monotonic() - start)
