"""Watches the links (and their addresses) of the current network namespace.

A raw AF_NETLINK socket subscribed to RTMGRP_LINK and the address groups, made with gevent's
socket class so that waiting for an event never blocks the hub, whether or not the process is
monkey-patched. pyroute2's IPRoute is deliberately not used here: 0.9 runs an asyncio loop
inside and must stay with the dataplane loop greenlet. The messages are decoded by the small
parser below (only the header fields and the three attributes we need).

Consistency: the socket joins the multicast groups *before* it asks for the dumps, and dump
parts and events are applied in the order they arrive on that one socket, so no change is lost
between the dump and the first event. If the kernel drops events (ENOBUFS, receive buffer
overrun) the monitor dumps again and reports the difference, including deleted links.
"""

from __future__ import annotations

import errno
import logging
import socket as _stdsocket
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import gevent  # type: ignore[import-untyped]
from gevent import socket as gsocket  # type: ignore[import-untyped]

from felix.dataplane.rtnl import (IFF_LOWER_UP, IFF_UP, NETLINK_ROUTE, NLM_F_DUMP,  # noqa: F401
                                  NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, is_oper_up)
from felix.dataplane.rtnl import NLMSGHDR as _NLMSGHDR, RTATTR as _RTATTR

_log = logging.getLogger(__name__)

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22

IFLA_IFNAME = 3
IFLA_OPERSTATE = 16
IFA_ADDRESS = 1
IFA_LOCAL = 2

_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")


@dataclass(frozen=True)
class InterfaceEvent:
    ifname: str
    ifindex: int
    present: bool  # False = link deleted (or renamed away, or moved to another namespace)
    oper_up: bool
    addrs: frozenset[str] = frozenset()


# --- parsing -----------------------------------------------------------------------------

@dataclass(frozen=True)
class LinkMsg:
    new: bool
    ifindex: int
    ifname: str
    oper_up: bool


@dataclass(frozen=True)
class AddrMsg:
    new: bool
    ifindex: int
    addr: str


@dataclass(frozen=True)
class DoneMsg:
    seq: int
    error: int = 0  # positive errno for NLMSG_ERROR


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    while offset + 4 <= end:
        length, rta_type = _RTATTR.unpack_from(data, offset)
        if length < 4:
            return
        yield rta_type & 0x3FFF, data[offset + 4:offset + length]
        offset += (length + 3) & ~3


def parse_messages(data: bytes) -> Iterator[LinkMsg | AddrMsg | DoneMsg]:
    """Decode a buffer of rtnetlink messages, skipping the kinds we don't use."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, mtype, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        body = offset + _NLMSGHDR.size
        end = offset + length
        if mtype in (RTM_NEWLINK, RTM_DELLINK) and end - body >= _IFINFOMSG.size:
            family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, body)
            # AF_BRIDGE link messages describe bridge-port state, not the link's existence.
            if family == _stdsocket.AF_UNSPEC:
                name = ""
                oper: int | None = None
                for t, v in _attrs(data, body + _IFINFOMSG.size, end):
                    if t == IFLA_IFNAME:
                        name = v.split(b"\0", 1)[0].decode("utf-8", "replace")
                    elif t == IFLA_OPERSTATE and v:
                        oper = v[0]
                yield LinkMsg(mtype == RTM_NEWLINK, index, name, is_oper_up(flags, oper))
        elif mtype in (RTM_NEWADDR, RTM_DELADDR) and end - body >= _IFADDRMSG.size:
            family, _plen, _fl, _scope, index = _IFADDRMSG.unpack_from(data, body)
            address = local = None
            for t, v in _attrs(data, body + _IFADDRMSG.size, end):
                if t == IFA_ADDRESS:
                    address = v
                elif t == IFA_LOCAL:
                    local = v
            raw = local or address  # IFA_LOCAL is ours on point-to-point links
            if raw is not None and family in (_stdsocket.AF_INET, _stdsocket.AF_INET6):
                yield AddrMsg(mtype == RTM_NEWADDR, index, _stdsocket.inet_ntop(family, raw))
        elif mtype == NLMSG_DONE:
            yield DoneMsg(seq)
        elif mtype == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", data, body)
            yield DoneMsg(seq, -err)
        offset += (length + 3) & ~3


def dump_request(mtype: int, seq: int) -> bytes:
    if mtype == RTM_GETLINK:
        payload = _IFINFOMSG.pack(0, 0, 0, 0, 0)
    else:
        payload = _IFADDRMSG.pack(0, 0, 0, 0, 0)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), mtype, NLM_F_REQUEST | NLM_F_DUMP,
                          seq, 0) + payload


# --- state -------------------------------------------------------------------------------

@dataclass
class LinkTable:
    """Links and addresses by ifindex, as built from messages."""

    links: dict[int, tuple[str, bool]] = field(default_factory=dict)  # index → (name, oper_up)
    addrs: dict[int, set[str]] = field(default_factory=dict)

    by_name: dict[str, int] = field(default_factory=dict)

    def apply(self, msg: LinkMsg | AddrMsg) -> set[str]:
        """Apply one message; returns the interface names whose view may have changed."""
        touched: set[str] = set()
        if isinstance(msg, LinkMsg):
            old = self.links.get(msg.ifindex)
            if old is not None:
                touched.add(old[0])
                if self.by_name.get(old[0]) == msg.ifindex:
                    del self.by_name[old[0]]
            if msg.new:
                name = msg.ifname or (old[0] if old else "")
                self.links[msg.ifindex] = (name, msg.oper_up)
                self.by_name[name] = msg.ifindex
                touched.add(name)
            else:
                self.links.pop(msg.ifindex, None)
                self.addrs.pop(msg.ifindex, None)
        else:
            s = self.addrs.setdefault(msg.ifindex, set())
            if msg.new:
                s.add(msg.addr)
            else:
                s.discard(msg.addr)
            link = self.links.get(msg.ifindex)
            if link is not None:
                touched.add(link[0])
        touched.discard("")
        return touched

    def names(self) -> set[str]:
        return set(self.by_name)

    def view_of(self, name: str) -> InterfaceEvent | None:
        index = self.by_name.get(name)
        if index is None:
            return None
        _, up = self.links[index]
        return InterfaceEvent(name, index, True, up, frozenset(self.addrs.get(index, ())))


class InterfaceMonitor:
    """Reports links whose names start with one of ``prefixes`` (all links if empty): first
    the current state of each (a dump), then every change, as InterfaceEvents to ``callback``
    (called from the monitor's greenlet; it should only record)."""

    RCVBUF = 4 * 1024 * 1024
    RETRY_DELAY = 1.0
    RECV_SIZE = 256 * 1024  # above the 32 KiB the kernel puts in one dump part

    def __init__(self, callback: Callable[[InterfaceEvent], None],
                 prefixes: tuple[str, ...]) -> None:
        self._callback = callback
        self._prefixes = tuple(prefixes)
        self._sock: Any = None
        self._greenlet: gevent.Greenlet | None = None
        self._emitted: dict[str, InterfaceEvent] = {}
        self._table = LinkTable()
        self._seq = 0
        self.resyncs = 0  # dumps done (1 at start + 1 per overrun/error), for tests/metrics

    def _matches(self, name: str) -> bool:
        return not self._prefixes or name.startswith(self._prefixes)

    def start(self) -> gevent.Greenlet:
        self._greenlet = gevent.spawn(self._run)
        return self._greenlet

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=5)
        self._close()

    def _open(self) -> None:
        sock = gsocket.socket(_stdsocket.AF_NETLINK, _stdsocket.SOCK_RAW, NETLINK_ROUTE)
        try:
            # SO_RCVBUFFORCE needs CAP_NET_ADMIN (felix has it); fall back to the capped one.
            sock.setsockopt(_stdsocket.SOL_SOCKET, 33, self.RCVBUF)  # SO_RCVBUFFORCE
        except OSError:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF, self.RCVBUF)
        sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        self._sock = sock

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _run(self) -> None:
        while True:
            try:
                self._open()
                self._resync()
                while True:
                    for msg in parse_messages(self._sock.recv(self.RECV_SIZE)):
                        if not isinstance(msg, DoneMsg):
                            self._emit_changes(self._table.apply(msg))
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    _log.warning("Interface monitor overrun (ENOBUFS): dumping again")
                else:
                    _log.exception("Interface monitor socket failed: reopening")
                    gevent.sleep(self.RETRY_DELAY)
            finally:
                self._close()

    def _resync(self) -> None:
        """Dump links then addresses into a fresh table, then report the differences."""
        table = LinkTable()
        for mtype in (RTM_GETLINK, RTM_GETADDR):
            self._seq += 1
            seq = self._seq
            self._sock.send(dump_request(mtype, seq))
            done = False
            while not done:
                for msg in parse_messages(self._sock.recv(self.RECV_SIZE)):
                    if isinstance(msg, DoneMsg):
                        if msg.seq == seq:
                            if msg.error:
                                raise OSError(msg.error, "netlink dump failed")
                            done = True
                    else:
                        table.apply(msg)
        self._table = table
        self.resyncs += 1
        self._emit_changes(set(self._emitted) | table.names())

    def _emit_changes(self, names: set[str]) -> None:
        for name in sorted(names):
            if not self._matches(name):
                continue
            current = self._table.view_of(name)
            last = self._emitted.get(name)
            if current is None:
                if last is None:
                    continue
                ev = InterfaceEvent(name, last.ifindex, False, False)
                del self._emitted[name]
            else:
                if current == last:
                    continue
                ev = current
                self._emitted[name] = ev
            try:
                self._callback(ev)
            except Exception:
                _log.exception("Interface event callback failed for %s", ev)
