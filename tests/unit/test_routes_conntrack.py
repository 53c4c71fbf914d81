"""ConntrackFlusher against a fake conntrack table that understands -D -s/-d and -L."""

from __future__ import annotations

from typing import Sequence

from felix.dataplane.conntrack import ConntrackFlusher
from felix.dataplane.runner import CommandResult


class FakeConntrackTool:
    def __init__(self) -> None:
        self.flows: set[tuple[str, str]] = set()  # (src, dst)
        self.execs = 0
        self.fail_list = False
        self.missing = False

    def run(self, argv: Sequence[str], input: str | None = None,  # noqa: A002
            timeout: float | None = None) -> CommandResult:
        self.execs += 1
        if self.missing:
            return CommandResult(127, "", "No such file or directory: 'conntrack'")
        argv = list(argv)
        fam = argv[argv.index("-f") + 1]
        mine = {f for f in self.flows if (":" in f[0]) == (fam == "ipv6")}
        if argv[1] == "-L":
            if self.fail_list:
                return CommandResult(1, "", "Operation failed")
            out = "".join(f"tcp 6 100 ESTABLISHED src={s} dst={d} sport=1 dport=2 "
                          f"src={d} dst={s} sport=2 dport=1 [ASSURED] mark=0 use=1\n"
                          for s, d in sorted(mine))
            return CommandResult(0, out, f"{len(mine)} flow entries have been shown.")
        direction, ip = argv[-2], argv[-1]
        gone = {f for f in mine if f[0 if direction == "-s" else 1] == ip}
        self.flows -= gone
        return CommandResult(0 if gone else 1, "", f"{len(gone)} flow entries have been deleted.")


FLOWS = {("10.0.0.1", "1.1.1.1"), ("2.2.2.2", "10.0.0.2"), ("fd00::1", "fd00::99"),
         ("3.3.3.3", "10.0.0.50")}


def test_small_batch_deletes_each_address_both_directions() -> None:
    tool = FakeConntrackTool()
    tool.flows = set(FLOWS)
    ct = ConntrackFlusher(tool)
    ct.queue(4, "10.0.0.1")
    ct.queue(4, "10.0.0.2")
    ct.queue(6, "fd00::99")
    assert ct.flush() == []
    assert tool.flows == {("3.3.3.3", "10.0.0.50")}
    assert tool.execs == 6
    assert ct.pending == frozenset()


def test_big_batch_lists_first_and_deletes_only_present_addresses() -> None:
    tool = FakeConntrackTool()
    tool.flows = set(FLOWS)
    ct = ConntrackFlusher(tool)
    for i in range(1, 201):
        ct.queue(4, f"10.0.0.{i}")
    ct.queue(6, "fd00:0:0::1")
    assert ct.flush() == []
    assert tool.flows == set()
    # Two listings, then two deletes for each of the 4 addresses that had flows.
    assert tool.execs == 2 + 2 * 4


def test_big_batch_listing_failure_falls_back_to_deleting_all() -> None:
    tool = FakeConntrackTool()
    tool.flows = set(FLOWS)
    tool.fail_list = True
    ct = ConntrackFlusher(tool)
    for i in range(1, 21):
        ct.queue(4, f"10.0.0.{i}")
    ct.flush()
    assert tool.flows == {("fd00::1", "fd00::99"), ("3.3.3.3", "10.0.0.50")}
    assert tool.execs == 1 + 2 * 20


def test_missing_binary_reported_once_then_disabled() -> None:
    tool = FakeConntrackTool()
    tool.missing = True
    ct = ConntrackFlusher(tool)
    ct.queue(4, "10.0.0.1")
    assert ct.flush() == ["conntrack not found"]
    ct.queue(4, "10.0.0.2")
    assert ct.flush() == []
    assert tool.execs == 1
