"""The netlink seam: the few rtnetlink operations the route manager needs.

``PyRoute2Netlink`` is the real implementation. Routes and neighbours — the per-endpoint hot
paths — go over one persistent raw AF_NETLINK socket (``RawRtnl``) with a small struct-based
encoder/parser: pyroute2 costs ~1 ms per route write and about as much per route read back,
the raw socket ~20-40x less. Only the rare ``link()`` lookup still uses ``pyroute2.IPRoute``
(0.9.7); pyroute2 0.9 runs an asyncio loop inside IPRoute that is bound to whoever created it,
so it is created lazily and must only be used from the one dataplane-loop greenlet — which is
true of the whole object anyway. Link *monitoring* does not go through here (see
interfaces.InterfaceMonitor).

gevent: the socket is gevent's, so a wait never blocks the hub; but rtnetlink answers a write
or fills the next dump chunk synchronously inside the syscall, so a wait rarely happens at all.
The hub is therefore yielded to explicitly every ``YIELD_AFTER_S`` of requests or dumping.

Unit tests use the stateful fake in tests/unit/fake_netlink.py.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from pyroute2 import IPRoute  # type: ignore[import-untyped]

from felix.dataplane.rtnl import (IFF_LOWER_UP, IFF_UP, NETLINK_ROUTE, NLM_F_DUMP,  # noqa: F401
                                  NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, OPERSTATES,
                                  is_oper_up)
from felix.dataplane.rtnl import NLMSGHDR as _NLMSGHDR, RTATTR as _RTATTR

_log = logging.getLogger(__name__)

RT_TABLE_MAIN = 254
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
NUD_PERMANENT = 0x80
NTF_PROXY = 0x08

RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH = 28
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
RTA_DST, RTA_OIF, RTA_TABLE = 1, 4, 15
RTN_UNICAST = 1
NDA_DST, NDA_LLADDR = 1, 2

_RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table proto scope type flags
_NDMSG = struct.Struct("=BxxxiHBB")  # family ifindex state flags type
_U32 = struct.Struct("=I")
_NLMSGERR = struct.Struct("=i")
YIELD_AFTER_S = 0.005  # longest run of writes or dump chunks without a hub yield


def _rta(rta_type: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, rta_type) + payload + b"\0" * (-length & 3)


def _nlmsg(mtype: int, flags: int, seq: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), mtype, flags, seq, 0) + body


def encode_route(mtype: int, flags: int, seq: int, ip_version: int, dst: str, ifindex: int,
                 proto: int, scope: int) -> bytes:
    """One RTM_NEWROUTE / RTM_DELROUTE request for ``dst dev <ifindex> proto <proto>`` in the
    main table."""
    net = ipaddress.ip_network(dst, strict=False)
    body = _RTMSG.pack(family_of(ip_version), net.prefixlen, 0, 0, RT_TABLE_MAIN, proto,
                       scope, RTN_UNICAST, 0)
    body += _rta(RTA_DST, net.network_address.packed)
    body += _rta(RTA_OIF, _U32.pack(ifindex))
    return _nlmsg(mtype, flags, seq, body)


def encode_neighbour(seq: int, ip_version: int, ifindex: int, ip: str, mac: str | None,
                     state: int, flags: int) -> bytes:
    body = _NDMSG.pack(family_of(ip_version), ifindex, state, flags, 0)
    body += _rta(NDA_DST, ipaddress.ip_address(ip).packed)
    if mac is not None:
        body += _rta(NDA_LLADDR, bytes.fromhex(mac.replace(":", "").replace("-", "")))
    return _nlmsg(RTM_NEWNEIGH, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, seq,
                  body)


@dataclass(frozen=True)
class NlReply:
    """One netlink message of a reply: ``error`` is the positive errno of an NLMSG_ERROR
    (0 for an ACK) and ``route`` the decoded route of an RTM_NEWROUTE."""

    mtype: int
    flags: int
    seq: int
    error: int = 0
    route: tuple[int, int, int, int, int, bytes | None] | None = None  # fam table proto oif len dst


def parse_replies(data: bytes) -> Iterator[NlReply]:
    """Decode a buffer of netlink messages; routes keep only what ``list_routes`` needs."""
    offset = 0
    end_all = len(data)
    while offset + _NLMSGHDR.size <= end_all:
        length, mtype, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > end_all:
            return
        body = offset + _NLMSGHDR.size
        end = offset + length
        if mtype == NLMSG_ERROR:
            (err,) = _NLMSGERR.unpack_from(data, body)
            yield NlReply(mtype, flags, seq, error=-err)
        elif mtype == RTM_NEWROUTE and end - body >= _RTMSG.size:
            fam, dst_len, _sl, _tos, table, proto, _sc, _ty, _fl = _RTMSG.unpack_from(data, body)
            oif = 0
            dst: bytes | None = None
            a = body + _RTMSG.size
            while a + 4 <= end:
                alen, atype = _RTATTR.unpack_from(data, a)
                if alen < 4:
                    break
                atype &= 0x3FFF
                if atype == RTA_DST:
                    dst = data[a + 4:a + alen]
                elif atype == RTA_OIF:
                    (oif,) = _U32.unpack_from(data, a + 4)
                elif atype == RTA_TABLE:
                    (table,) = _U32.unpack_from(data, a + 4)
                a += (alen + 3) & ~3
            yield NlReply(mtype, flags, seq, route=(fam, table, proto, oif, dst_len, dst))
        else:
            yield NlReply(mtype, flags, seq)
        offset += (length + 3) & ~3


class RawRtnl:
    """A persistent rtnetlink socket of the current namespace for requests and dumps.

    Replies are matched to requests by sequence number; anything else on the socket (e.g. a
    late ACK of a request whose greenlet was killed) is skipped. Any socket error closes it;
    the next request opens a fresh one.
    """

    def __init__(self) -> None:
        self._sock: Any = None
        self._seq = 0
        self._last_yield = time.monotonic()

    def _socket(self) -> Any:
        if self._sock is None:
            from gevent import socket as gsocket  # type: ignore[import-untyped]

            sock = gsocket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                sock.bind((0, 0))
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def _maybe_yield(self) -> None:
        if time.monotonic() - self._last_yield >= YIELD_AFTER_S:
            import gevent  # type: ignore[import-untyped]

            # idle(), not sleep(0): sleep(0) only runs ready greenlets and can starve timers.
            gevent.idle()
            self._last_yield = time.monotonic()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _io(self, fn: Any) -> Any:
        try:
            return fn(self._socket())
        except OSError as e:
            self.close()
            raise NetlinkOpError(e.errno or errno.EIO, str(e)) from None

    def request(self, build: Any) -> int:
        """Send the message ``build(seq)`` and wait for its ACK; returns 0 or a positive
        errno (the caller decides which errnos are errors)."""
        self._maybe_yield()
        seq = self._next_seq()
        msg = build(seq)

        def run(sock: Any) -> int:
            sock.send(msg)
            while True:
                for r in parse_replies(sock.recv(1 << 16)):
                    if r.seq == seq and r.mtype == NLMSG_ERROR:
                        return r.error
        result: int = self._io(run)
        return result

    def dump_routes(self, family: int) -> list[tuple[int, int, int, int, int, bytes | None]]:
        """All routes of ``family`` (every table), retried if the kernel flags the dump as
        interrupted by a concurrent change."""
        for _attempt in range(5):
            seq = self._next_seq()
            req = _nlmsg(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq,
                         _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0))
            out: list[tuple[int, int, int, int, int, bytes | None]] = []
            intr = False

            def run(sock: Any) -> int:
                nonlocal intr
                sock.send(req)
                while True:
                    chunk = sock.recv(1 << 17)
                    for r in parse_replies(chunk):
                        if r.seq != seq:
                            continue
                        if r.flags & NLM_F_DUMP_INTR:
                            intr = True
                        if r.mtype == NLMSG_DONE:
                            return 0
                        if r.mtype == NLMSG_ERROR:
                            return r.error
                        if r.route is not None:
                            out.append(r.route)
                    # The kernel fills each chunk inside recv(): let the hub run between them.
                    self._maybe_yield()
            err = self._io(run)
            if err:
                raise NetlinkOpError(err, os.strerror(err))
            if not intr:
                return out
            _log.debug("route dump interrupted by a concurrent change; dumping again")
        raise NetlinkOpError(errno.EAGAIN, "route dump kept being interrupted")

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def family_of(ip_version: int) -> int:
    return socket.AF_INET if ip_version == 4 else socket.AF_INET6


@dataclass(frozen=True)
class KernelRoute:
    """One route of the main table as read back: ``dst`` is a canonical CIDR."""

    dst: str
    ifindex: int
    proto: int


@dataclass(frozen=True)
class LinkInfo:
    ifname: str
    ifindex: int
    admin_up: bool
    oper_up: bool


class NetlinkOpError(Exception):
    """A failed rtnetlink request; ``code`` is the positive errno the kernel returned."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(code, message or errno.errorcode.get(code, str(code)))
        self.code = code

    def __str__(self) -> str:
        return f"[{errno.errorcode.get(self.code, self.code)}] {self.args[1]}"


class NetlinkShim(Protocol):
    def list_routes(self, ip_version: int, proto: int) -> list[KernelRoute]:
        """Routes of the main table with this proto."""
        ...

    def replace_route(self, ip_version: int, dst: str, ifindex: int, proto: int) -> None:
        """Create or replace the scope-link route ``dst dev <ifindex> proto <proto>``."""
        ...

    def delete_route(self, ip_version: int, dst: str, ifindex: int, proto: int) -> bool:
        """Delete that route; False (no error) if it was already gone."""
        ...

    def link(self, ifname: str) -> LinkInfo | None:
        """Index and state of a link of the current namespace, None if there is none."""
        ...

    def set_neighbour(self, ip_version: int, ifindex: int, ip: str, mac: str) -> None:
        """A permanent (static ARP / NDP) neighbour entry."""
        ...

    def set_proxy_neighbour(self, ip_version: int, ifindex: int, ip: str) -> None:
        """A proxy neighbour entry (``ip neigh add proxy <ip> dev <if>``)."""
        ...

    def close(self) -> None: ...


def canonical_cidr(dst: str) -> str:
    """``10.0.0.1`` / ``10.0.0.1/32`` → ``10.0.0.1/32``; host bits are masked off."""
    return str(ipaddress.ip_network(dst, strict=False))


class PyRoute2Netlink:
    """NetlinkShim of the current network namespace: raw rtnetlink for routes and neighbours,
    pyroute2.IPRoute for link lookups."""

    def __init__(self) -> None:
        self._ipr: IPRoute | None = None
        self._raw = RawRtnl()

    def _get(self) -> IPRoute:
        if self._ipr is None:
            from pyroute2 import IPRoute  # type: ignore[import-untyped]

            self._ipr = IPRoute()
        return self._ipr

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

        try:
            return fn(*args, **kwargs)
        except NetlinkError as e:
            raise NetlinkOpError(e.code, str(e)) from None
        except OSError as e:
            # A broken socket (e.g. ENOBUFS): start over with a fresh one next time.
            self.close()
            raise NetlinkOpError(e.errno or errno.EIO, str(e)) from None

    def list_routes(self, ip_version: int, proto: int) -> list[KernelRoute]:
        family = family_of(ip_version)
        zero = "0.0.0.0" if ip_version == 4 else "::"
        make = ipaddress.IPv4Address if ip_version == 4 else ipaddress.IPv6Address
        out = []
        for fam, table, rproto, oif, dst_len, dst in self._raw.dump_routes(family):
            # A kernel without this family's handler dumps every family; oif 0 is a
            # multipath or blackhole route, never one of ours.
            if fam != family or rproto != proto or table != RT_TABLE_MAIN or not oif:
                continue
            addr = str(make(dst)) if dst is not None else zero
            out.append(KernelRoute(f"{addr}/{dst_len}", oif, proto))
        return out

    def replace_route(self, ip_version: int, dst: str, ifindex: int, proto: int) -> None:
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        err = self._raw.request(lambda seq: encode_route(
            RTM_NEWROUTE, flags, seq, ip_version, dst, ifindex, proto, RT_SCOPE_LINK))
        if err:
            raise NetlinkOpError(err, f"replace {dst} dev #{ifindex}: {os.strerror(err)}")

    def delete_route(self, ip_version: int, dst: str, ifindex: int, proto: int) -> bool:
        # RT_SCOPE_NOWHERE means "any scope"; the kernel matches the proto, oif and table.
        err = self._raw.request(lambda seq: encode_route(
            RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, seq, ip_version, dst, ifindex, proto,
            RT_SCOPE_NOWHERE))
        if err in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
            return False
        if err:
            raise NetlinkOpError(err, f"delete {dst} dev #{ifindex}: {os.strerror(err)}")
        return True

    def link(self, ifname: str) -> LinkInfo | None:
        ipr = self._get()
        try:
            msgs = self._call(ipr.get_links, ifname=ifname)
        except NetlinkOpError as e:
            if e.code == errno.ENODEV:
                return None
            raise
        for m in msgs:
            flags = int(m["flags"])
            oper = m.get_attr("IFLA_OPERSTATE")
            state = OPERSTATES.index(oper) if oper in OPERSTATES else None
            return LinkInfo(ifname, int(m["index"]), bool(flags & IFF_UP),
                            is_oper_up(flags, state))
        return None

    def set_neighbour(self, ip_version: int, ifindex: int, ip: str, mac: str) -> None:
        err = self._raw.request(lambda seq: encode_neighbour(
            seq, ip_version, ifindex, ip, mac, NUD_PERMANENT, 0))
        if err:
            raise NetlinkOpError(err, f"neighbour {ip} dev #{ifindex}: {os.strerror(err)}")

    def set_proxy_neighbour(self, ip_version: int, ifindex: int, ip: str) -> None:
        err = self._raw.request(lambda seq: encode_neighbour(
            seq, ip_version, ifindex, ip, None, NUD_PERMANENT, NTF_PROXY))
        if err:
            raise NetlinkOpError(err, f"proxy neighbour {ip} dev #{ifindex}: "
                                      f"{os.strerror(err)}")

    def close(self) -> None:
        self._raw.close()
        if self._ipr is not None:
            try:
                self._ipr.close()
            except Exception:  # closing a broken socket must not mask the original error
                _log.debug("closing IPRoute failed", exc_info=True)
            self._ipr = None
