"""InterfaceMonitor: message parsing, and the dump/event/overrun logic against a fake netlink
socket that serves dumps from a little link table and delivers queued events."""

from __future__ import annotations

import errno
import socket
import struct

import gevent  # type: ignore[import-untyped]
import gevent.queue  # type: ignore[import-untyped]

from felix.dataplane import interfaces as itf
from felix.dataplane.interfaces import (AddrMsg, DoneMsg, InterfaceEvent, InterfaceMonitor,
                                        LinkMsg, parse_messages)

IFF_UP_RUNNING = itf.IFF_UP | itf.IFF_LOWER_UP


def _attr(t: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), t) + data
    return raw + b"\0" * (-len(raw) % 4)


def _msg(mtype: int, body: bytes, seq: int = 0) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(body), mtype, 0, seq, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


def link_msg(new: bool, index: int, name: str, up: bool, seq: int = 0,
             family: int = 0) -> bytes:
    body = struct.pack("=BxHiII", family, 1, index, IFF_UP_RUNNING if up else itf.IFF_UP, 0)
    body += _attr(itf.IFLA_IFNAME, name.encode() + b"\0")
    body += _attr(itf.IFLA_OPERSTATE, bytes([6 if up else 2]))
    return _msg(itf.RTM_NEWLINK if new else itf.RTM_DELLINK, body, seq)


def addr_msg(new: bool, index: int, addr: str, seq: int = 0) -> bytes:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    body = struct.pack("=BBBBI", fam, 32, 0, 0, index)
    body += _attr(itf.IFA_ADDRESS, socket.inet_pton(fam, addr))
    return _msg(itf.RTM_NEWADDR if new else itf.RTM_DELADDR, body, seq)


def done_msg(seq: int) -> bytes:
    return _msg(itf.NLMSG_DONE, struct.pack("=i", 0), seq)


def test_parse_link_addr_done_and_skip_bridge_family() -> None:
    data = (link_msg(True, 5, "cali1", True) + link_msg(False, 6, "cali2", False)
            + link_msg(False, 5, "cali1", True, family=socket.AF_BRIDGE)
            + addr_msg(True, 5, "10.0.0.1") + addr_msg(False, 5, "fd00::1") + done_msg(7))
    assert list(parse_messages(data)) == [
        LinkMsg(True, 5, "cali1", True), LinkMsg(False, 6, "cali2", False),
        AddrMsg(True, 5, "10.0.0.1"), AddrMsg(False, 5, "fd00::1"), DoneMsg(7)]


def test_parse_truncated_buffer_stops() -> None:
    data = link_msg(True, 5, "cali1", True)
    assert list(parse_messages(data[:-8])) == []


def test_oper_up_rules() -> None:
    assert itf.is_oper_up(0, 6)
    assert not itf.is_oper_up(IFF_UP_RUNNING, 2)  # DOWN wins over flags
    assert itf.is_oper_up(IFF_UP_RUNNING, 0)  # UNKNOWN: trust flags
    assert not itf.is_oper_up(itf.IFF_UP, 0)


class FakeNlSocket:
    def __init__(self, kernel: "FakeKernel") -> None:
        self.kernel = kernel
        self.q: gevent.queue.Queue = gevent.queue.Queue()
        kernel.sockets.append(self)

    def send(self, data: bytes) -> None:
        _len, mtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data)
        if mtype == itf.RTM_GETLINK:
            out = b"".join(link_msg(True, i, n, up, seq) for i, (n, up) in
                           sorted(self.kernel.links.items()))
        else:
            out = b"".join(addr_msg(True, i, a, seq) for i, addrs in
                           sorted(self.kernel.addrs.items()) for a in sorted(addrs))
        if out:
            self.q.put(out)
        self.q.put(done_msg(seq))

    def recv(self, size: int) -> bytes:
        item = self.q.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.kernel.sockets.remove(self)


class FakeKernel:
    def __init__(self) -> None:
        self.links: dict[int, tuple[str, bool]] = {}
        self.addrs: dict[int, set[str]] = {}
        self.sockets: list[FakeNlSocket] = []

    def _broadcast(self, data: bytes | Exception) -> None:
        for s in self.sockets:
            s.q.put(data)

    def set_link(self, index: int, name: str, up: bool, notify: bool = True) -> None:
        self.links[index] = (name, up)
        if notify:
            self._broadcast(link_msg(True, index, name, up))

    def del_link(self, index: int, notify: bool = True) -> None:
        name, up = self.links.pop(index)
        self.addrs.pop(index, None)
        if notify:
            self._broadcast(link_msg(False, index, name, up))

    def add_addr(self, index: int, addr: str) -> None:
        self.addrs.setdefault(index, set()).add(addr)
        self._broadcast(addr_msg(True, index, addr))

    def overrun(self) -> None:
        self._broadcast(OSError(errno.ENOBUFS, "No buffer space available"))


class FakeMonitor(InterfaceMonitor):
    def __init__(self, kernel: FakeKernel, prefixes: tuple[str, ...]) -> None:
        self.events: list[InterfaceEvent] = []
        super().__init__(self.events.append, prefixes)
        self.kernel = kernel

    def _open(self) -> None:
        self._sock = FakeNlSocket(self.kernel)


def _settle() -> None:
    gevent.sleep(0.01)


def test_dump_then_events_filtered_by_prefix() -> None:
    k = FakeKernel()
    k.set_link(1, "lo", True, notify=False)
    k.set_link(5, "cali1", True, notify=False)
    k.set_link(6, "tap2", False, notify=False)
    k.addrs[5] = {"fe80::1"}
    mon = FakeMonitor(k, ("cali", "tap"))
    mon.start()
    try:
        _settle()
        assert mon.events == [InterfaceEvent("cali1", 5, True, True, frozenset({"fe80::1"})),
                              InterfaceEvent("tap2", 6, True, False)]
        mon.events.clear()
        k.set_link(6, "tap2", True)  # comes up
        k.set_link(1, "lo", True)  # not ours: no event
        k.set_link(6, "tap2", True)  # no change: no event
        k.add_addr(6, "10.0.0.1")
        k.del_link(5)
        k.set_link(9, "cali1", False)  # recreated with a new index
        _settle()
        assert mon.events == [
            InterfaceEvent("tap2", 6, True, True),
            InterfaceEvent("tap2", 6, True, True, frozenset({"10.0.0.1"})),
            InterfaceEvent("cali1", 5, False, False),
            InterfaceEvent("cali1", 9, True, False)]
    finally:
        mon.stop()
    assert k.sockets == []


def test_rename_reports_old_name_gone() -> None:
    k = FakeKernel()
    k.set_link(5, "cali1", True, notify=False)
    mon = FakeMonitor(k, ("cali",))
    mon.start()
    try:
        _settle()
        mon.events.clear()
        k.set_link(5, "calix", True)
        _settle()
        assert mon.events == [InterfaceEvent("cali1", 5, False, False),
                              InterfaceEvent("calix", 5, True, True)]
    finally:
        mon.stop()


def test_overrun_redumps_and_reports_missed_changes() -> None:
    k = FakeKernel()
    k.set_link(5, "cali1", True, notify=False)
    k.set_link(6, "cali2", True, notify=False)
    mon = FakeMonitor(k, ("cali",))
    mon.start()
    try:
        _settle()
        assert mon.resyncs == 1
        mon.events.clear()
        # Changes whose events the kernel dropped, then the overrun error.
        k.del_link(5, notify=False)
        k.set_link(6, "cali2", False, notify=False)
        k.set_link(7, "cali3", True, notify=False)
        k.overrun()
        _settle()
        assert mon.resyncs == 2
        assert mon.events == [InterfaceEvent("cali1", 5, False, False),
                              InterfaceEvent("cali2", 6, True, False),
                              InterfaceEvent("cali3", 7, True, True)]
    finally:
        mon.stop()


def test_callback_exception_does_not_kill_monitor() -> None:
    k = FakeKernel()
    seen: list[InterfaceEvent] = []

    def cb(ev: InterfaceEvent) -> None:
        seen.append(ev)
        if len(seen) == 1:
            raise RuntimeError("boom")

    mon = InterfaceMonitor(cb, ("cali",))
    mon._open = lambda: setattr(mon, "_sock", FakeNlSocket(k))  # type: ignore[method-assign]
    mon.start()
    try:
        _settle()
        k.set_link(5, "cali1", True)
        k.set_link(6, "cali2", True)
        _settle()
        assert [e.ifname for e in seen] == ["cali1", "cali2"]
    finally:
        mon.stop()
