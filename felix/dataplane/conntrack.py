"""Flushes conntrack entries of addresses that stopped belonging to a local endpoint.

Without this, an established flow to an IP that moved to another workload (or went away) keeps
matching ESTABLISHED and bypasses the new endpoint's policy. Addresses are queued by the route
manager when they leave an interface and flushed in its apply(), through the CommandRunner.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from felix.dataplane.runner import CommandRunner

_log = logging.getLogger(__name__)


@dataclass
class ConntrackFlusher:
    runner: CommandRunner
    timeout: float = 10.0
    list_threshold: int = 8  # above this many queued addresses, list the table first
    _queue: set[tuple[int, str]] = field(default_factory=set)
    _missing_binary: bool = False

    def queue(self, ip_version: int, ip: str) -> None:
        self._queue.add((ip_version, str(ipaddress.ip_address(ip))))

    def discard(self, ip_version: int, ip: str) -> None:
        """Drop a queued flush (unused so far: a returning address is still flushed, since its
        old flows belonged to the previous owner)."""
        self._queue.discard((ip_version, ip))

    @property
    def pending(self) -> frozenset[tuple[int, str]]:
        return frozenset(self._queue)

    def flush(self) -> list[str]:
        """Delete entries from and to each queued address. Returns error descriptions; failed
        addresses are not retried (flushing is best effort and a retry loop would spin on a
        broken conntrack binary).

        Two execs per address is ~1 ms each, so a big batch (an interface with 1,000 addresses
        going away) first lists the table once per family and only deletes for addresses that
        actually appear in it."""
        errors: list[str] = []
        todo, self._queue = sorted(self._queue), set()
        if self._missing_binary or not todo:
            return errors
        if len(todo) > self.list_threshold:
            todo = self._present(todo)
        for ip_version, ip in todo:
            family = "ipv4" if ip_version == 4 else "ipv6"
            for direction in ("-s", "-d"):
                res = self.runner.run(["conntrack", "-D", "-f", family, direction, ip],
                                      timeout=self.timeout)
                # Exit 1 is "0 flow entries have been deleted": nothing matched.
                if res.returncode in (0, 1):
                    continue
                if res.returncode == 127:
                    _log.error("conntrack binary not found: conntrack flushing disabled")
                    self._missing_binary = True
                    errors.append("conntrack not found")
                    return errors
                msg = f"conntrack -D {direction} {ip} failed ({res.returncode}): " \
                      f"{res.stderr.strip()}"
                _log.warning(msg)
                errors.append(msg)
        return errors

    def _present(self, todo: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """The queued addresses that occur in some flow (all of them if listing fails)."""
        keep: list[tuple[int, str]] = []
        for ip_version in (4, 6):
            wanted = [(v, ip) for v, ip in todo if v == ip_version]
            if not wanted:
                continue
            family = "ipv4" if ip_version == 4 else "ipv6"
            res = self.runner.run(["conntrack", "-L", "-f", family], timeout=self.timeout)
            if res.returncode != 0:
                keep.extend(wanted)
                continue
            seen = set()
            for token in res.stdout.split():
                if token.startswith(("src=", "dst=")):
                    try:
                        seen.add(ipaddress.ip_address(token[4:]))
                    except ValueError:
                        pass
            keep.extend((v, ip) for v, ip in wanted if ipaddress.ip_address(ip) in seen)
        return keep
