"""The raw rtnetlink encoder/parser and request/dump logic of felix.dataplane.netlink.

The kernel side is a stateful fake socket (``FakeKernelSocket``) that decodes the requests it
is sent with the module's own parser conventions, keeps a route table and answers like
rtnetlink does: an NLMSG_ERROR (ACK) per request, dumps split over several recv() chunks.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

from hypothesis import given, settings, strategies as st

from felix.dataplane import netlink as nl
from felix.dataplane.netlink import KernelRoute, NetlinkOpError, PyRoute2Netlink, RawRtnl

_HDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")


def route_msg(seq: int, family: int, dst: str | None, dst_len: int, oif: int | None,
              proto: int, table: int = 254, flags: int = nl.NLM_F_MULTI,
              rta_table: int | None = None) -> bytes:
    """An RTM_NEWROUTE as the kernel sends it in a dump (table > 255 only in RTA_TABLE)."""
    body = _RTMSG.pack(family, dst_len, 0, 0, table if table < 256 else 252, proto, 253, 1, 0)
    if rta_table is not None:
        body += nl._rta(nl.RTA_TABLE, struct.pack("=I", rta_table))
    if dst is not None:
        body += nl._rta(nl.RTA_DST, ipaddress.ip_address(dst).packed)
    if oif is not None:
        body += nl._rta(nl.RTA_OIF, struct.pack("=I", oif))
    return nl._nlmsg(nl.RTM_NEWROUTE, flags, seq, body)


def error_msg(seq: int, code: int) -> bytes:
    return nl._nlmsg(nl.NLMSG_ERROR, 0, seq, struct.pack("=i", -code) + b"\0" * 16)


def done_msg(seq: int, flags: int = nl.NLM_F_MULTI) -> bytes:
    return nl._nlmsg(nl.NLMSG_DONE, flags, seq, b"\0\0\0\0")


class FakeKernelSocket:
    """Answers route/neighbour requests and dumps from a table of (family, dst, len, oif,
    proto); ``chunk`` routes per recv() like the kernel's dump skbs."""

    def __init__(self, links: set[int], chunk: int = 3) -> None:
        self.links = links
        self.chunk = chunk
        self.routes: dict[tuple[int, bytes, int], tuple[int, int]] = {}  # → (oif, proto)
        self.neighbours: dict[tuple[int, bytes], bytes | None] = {}
        self.pending: list[bytes] = []
        self.closed = False
        self.fail_next_send: OSError | None = None
        self.intr_dumps = 0  # how many more dumps to flag NLM_F_DUMP_INTR

    def send(self, data: bytes) -> int:
        if self.fail_next_send is not None:
            e, self.fail_next_send = self.fail_next_send, None
            raise e
        length, mtype, flags, seq, _pid = _HDR.unpack_from(data, 0)
        assert length == len(data)
        body = data[_HDR.size:]
        if mtype == nl.RTM_GETROUTE:
            assert flags & nl.NLM_F_DUMP == nl.NLM_F_DUMP
            self._dump(seq, body[0])
            return len(data)
        if mtype in (nl.RTM_NEWROUTE, nl.RTM_DELROUTE):
            fam, dlen, _s, _t, table, proto, scope, _ty, _f = _RTMSG.unpack_from(body)
            assert table == nl.RT_TABLE_MAIN
            attrs = dict(self._attrs(body[_RTMSG.size:]))
            key = (fam, attrs[nl.RTA_DST], dlen)
            oif = struct.unpack("=I", attrs[nl.RTA_OIF])[0]
            if mtype == nl.RTM_NEWROUTE:
                assert flags & nl.NLM_F_REPLACE and flags & nl.NLM_F_CREATE
                assert scope == nl.RT_SCOPE_LINK
                code = 0 if oif in self.links else errno.ENODEV
                if not code:
                    self.routes[key] = (oif, proto)
            else:
                have = self.routes.get(key)
                code = errno.ESRCH if have != (oif, proto) else 0
                if not code:
                    del self.routes[key]
        elif mtype == nl.RTM_NEWNEIGH:
            fam, ifindex, _state, _flags, _ty = struct.unpack_from("=BxxxiHBB", body)
            attrs = dict(self._attrs(body[12:]))
            code = 0 if ifindex in self.links else errno.ENODEV
            if not code:
                self.neighbours[(ifindex, attrs[nl.NDA_DST])] = attrs.get(nl.NDA_LLADDR)
        else:
            code = errno.EOPNOTSUPP
        assert flags & nl.NLM_F_ACK
        self.pending.append(error_msg(seq, code))
        return len(data)

    @staticmethod
    def _attrs(data: bytes) -> list[tuple[int, bytes]]:
        out, off = [], 0
        while off + 4 <= len(data):
            alen, atype = struct.unpack_from("=HH", data, off)
            out.append((atype, data[off + 4:off + alen]))
            off += (alen + 3) & ~3
        return out

    def _dump(self, seq: int, family: int) -> None:
        msgs = [route_msg(seq, fam, str(ipaddress.ip_address(dst)), dlen, oif, proto)
                for (fam, dst, dlen), (oif, proto) in sorted(self.routes.items())
                if fam == family]
        intr = 0
        if self.intr_dumps:
            self.intr_dumps -= 1
            intr = nl.NLM_F_DUMP_INTR
        for i in range(0, len(msgs), self.chunk):
            part = msgs[i:i + self.chunk]
            self.pending.append(b"".join(m[:6] + struct.pack("=H", nl.NLM_F_MULTI | intr) + m[8:]
                                         for m in part))
        self.pending.append(done_msg(seq))

    def recv(self, bufsize: int) -> bytes:
        assert self.pending, "recv() with nothing queued would block forever"
        data = self.pending.pop(0)
        assert len(data) <= bufsize
        return data

    def close(self) -> None:
        self.closed = True


def shim(kernel: FakeKernelSocket) -> PyRoute2Netlink:
    p = PyRoute2Netlink()
    p._raw._sock = kernel
    return p


# --- codec ---------------------------------------------------------------------------------

cidrs = st.one_of(
    st.builds(lambda a, n: str(ipaddress.ip_network((a, n), strict=False)),
              st.integers(0, 2**32 - 1), st.integers(0, 32)),
    st.builds(lambda a, n: str(ipaddress.ip_network((a, n), strict=False)),
              st.integers(0, 2**128 - 1), st.integers(0, 128)),
)


@settings(max_examples=200, deadline=None)
@given(cidrs, st.integers(1, 2**31 - 1), st.integers(0, 255), st.integers(1, 2**32 - 1))
def test_encoded_route_parses_back(dst: str, ifindex: int, proto: int, seq: int) -> None:
    v = ipaddress.ip_network(dst).version
    msg = nl.encode_route(nl.RTM_NEWROUTE, 0, seq, v, dst, ifindex, proto, nl.RT_SCOPE_LINK)
    assert len(msg) % 4 == 0
    (r,) = list(nl.parse_replies(msg))
    net = ipaddress.ip_network(dst)
    assert r.seq == seq and r.mtype == nl.RTM_NEWROUTE
    assert r.route == (nl.family_of(v), nl.RT_TABLE_MAIN, proto, ifindex, net.prefixlen,
                       net.network_address.packed)


def test_parser_reads_errors_big_tables_and_stops_at_truncation() -> None:
    buf = (error_msg(7, errno.ENODEV) + error_msg(8, 0)
           + route_msg(9, socket.AF_INET, "10.0.0.0", 8, 3, 80, table=1000, rta_table=1000)
           + route_msg(9, socket.AF_INET, None, 0, None, 80) + done_msg(9))
    got = list(nl.parse_replies(buf + route_msg(9, socket.AF_INET, "1.2.3.4", 32, 1, 80)[:-3]))
    assert [(r.mtype, r.seq, r.error) for r in got] == [
        (nl.NLMSG_ERROR, 7, errno.ENODEV), (nl.NLMSG_ERROR, 8, 0),
        (nl.RTM_NEWROUTE, 9, 0), (nl.RTM_NEWROUTE, 9, 0), (nl.NLMSG_DONE, 9, 0)]
    assert got[2].route == (socket.AF_INET, 1000, 80, 3, 8, bytes([10, 0, 0, 0]))
    assert got[3].route == (socket.AF_INET, 254, 80, 0, 0, None)


def test_neighbour_encoding() -> None:
    msg = nl.encode_neighbour(5, 4, 12, "10.1.2.3", "ee:ee:ee:00:00:01", nl.NUD_PERMANENT, 0)
    k = FakeKernelSocket({12})
    k.send(msg)
    assert k.neighbours == {(12, bytes([10, 1, 2, 3])): bytes.fromhex("eeeeee000001")}


# --- the shim over the fake kernel -------------------------------------------------------------

def test_list_routes_filters_family_table_proto_and_oifless() -> None:
    k = FakeKernelSocket({3})
    p = shim(k)
    orig_dump = k._dump

    def dump(seq: int, family: int) -> None:
        # What a kernel dump really holds besides ours.
        k.pending.append(b"".join([
            route_msg(seq, socket.AF_INET, "10.9.0.1", 32, 3, 80),
            route_msg(seq, socket.AF_INET, "10.9.0.2", 32, 3, 4),  # foreign proto
            route_msg(seq, socket.AF_INET, "10.9.0.3", 32, 3, 80, table=255),  # local table
            route_msg(seq, socket.AF_INET, "10.9.0.4", 32, 3, 80, table=252, rta_table=300),
            route_msg(seq, socket.AF_INET, "10.9.0.5", 32, None, 80),  # blackhole/multipath
            route_msg(seq, socket.AF_INET6, "fd00::5", 128, 3, 80),  # other family
            route_msg(seq, socket.AF_INET, None, 0, 3, 80),  # default route
        ]))
        orig_dump(seq, family)

    k._dump = dump  # type: ignore[method-assign]
    assert p.list_routes(4, 80) == [KernelRoute("10.9.0.1/32", 3, 80),
                                    KernelRoute("0.0.0.0/0", 3, 80)]


def test_write_then_dump_round_trip_over_many_chunks() -> None:
    k = FakeKernelSocket({3, 4}, chunk=7)
    p = shim(k)
    want = {f"10.0.{i // 200}.{i % 200}/32" for i in range(100)} | {"10.1.0.0/16"}
    for d in sorted(want):
        p.replace_route(4, d, 3, 80)
    p.replace_route(6, "fd00::1/128", 4, 80)
    p.replace_route(4, "10.1.0.0/16", 4, 80)  # replace moves it
    assert {(r.dst, r.ifindex) for r in p.list_routes(4, 80)} == \
        {(d, 4 if d == "10.1.0.0/16" else 3) for d in want}
    assert p.list_routes(6, 80) == [KernelRoute("fd00::1/128", 4, 80)]
    assert p.delete_route(4, "10.1.0.0/16", 4, 80) is True
    assert p.delete_route(4, "10.1.0.0/16", 4, 80) is False  # already gone: not an error
    assert not k.pending


def test_errors_surface_per_route_and_the_others_succeed() -> None:
    k = FakeKernelSocket({3})
    p = shim(k)
    p.replace_route(4, "10.0.0.1/32", 3, 80)
    try:
        p.replace_route(4, "10.0.0.2/32", 99, 80)
    except NetlinkOpError as e:
        assert e.code == errno.ENODEV
    else:
        raise AssertionError("replace on a missing ifindex must fail")
    p.replace_route(4, "10.0.0.3/32", 3, 80)
    assert [r.dst for r in p.list_routes(4, 80)] == ["10.0.0.1/32", "10.0.0.3/32"]


def test_stale_replies_are_skipped_by_sequence_number() -> None:
    k = FakeKernelSocket({3})
    p = shim(k)
    # An ACK left over from a request whose greenlet was killed before reading it.
    k.pending.append(error_msg(12345, errno.EEXIST))
    p.replace_route(4, "10.0.0.1/32", 3, 80)
    assert not k.pending and k.routes


def test_interrupted_dump_is_redone() -> None:
    k = FakeKernelSocket({3})
    p = shim(k)
    p.replace_route(4, "10.0.0.1/32", 3, 80)
    k.intr_dumps = 2
    assert p.list_routes(4, 80) == [KernelRoute("10.0.0.1/32", 3, 80)]
    assert k.intr_dumps == 0 and not k.pending
    k.intr_dumps = 99
    try:
        p.list_routes(4, 80)
    except NetlinkOpError as e:
        assert e.code == errno.EAGAIN
    else:
        raise AssertionError("a dump interrupted every time must fail")


def test_socket_error_becomes_op_error_and_reopens() -> None:
    k = FakeKernelSocket({3})
    raw = RawRtnl()
    raw._sock = k
    k.fail_next_send = OSError(errno.ENOBUFS, "No buffer space available")
    try:
        raw.request(lambda seq: nl.encode_route(nl.RTM_NEWROUTE, 0, seq, 4, "10.0.0.1", 3, 80,
                                                nl.RT_SCOPE_LINK))
    except NetlinkOpError as e:
        assert e.code == errno.ENOBUFS
    else:
        raise AssertionError("a socket error must surface")
    assert k.closed and raw._sock is None


def test_neighbours_through_the_shim() -> None:
    k = FakeKernelSocket({5})
    p = shim(k)
    p.set_neighbour(6, 5, "fd00::2", "02:00:00:00:00:02")
    p.set_proxy_neighbour(6, 5, "fe80::1")
    assert k.neighbours == {
        (5, ipaddress.ip_address("fd00::2").packed): bytes.fromhex("020000000002"),
        (5, ipaddress.ip_address("fe80::1").packed): None}
    try:
        p.set_neighbour(4, 6, "10.0.0.1", "02:00:00:00:00:02")
    except NetlinkOpError as e:
        assert e.code == errno.ENODEV
    else:
        raise AssertionError("neighbour on a missing link must fail")
