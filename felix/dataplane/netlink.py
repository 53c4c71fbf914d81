"""The netlink seam: the few rtnetlink operations the route manager needs.

``PyRoute2Netlink`` is the real implementation on ``pyroute2.IPRoute`` (0.9.7). pyroute2 0.9 runs
an asyncio event loop inside IPRoute; checked here under ``gevent.monkey.patch_all()`` it works
and its socket waits are cooperative (the hub keeps running other greenlets between requests),
but the loop is bound to whoever created it, so an instance is created lazily on first use and
must only ever be used from the one dataplane-loop greenlet. Link *monitoring* does not go
through here (see interfaces.InterfaceMonitor, a raw netlink socket).

Unit tests use the stateful fake in tests/unit/fake_netlink.py.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from pyroute2 import IPRoute  # type: ignore[import-untyped]

_log = logging.getLogger(__name__)

RT_TABLE_MAIN = 254
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
NUD_PERMANENT = 0x80
NTF_PROXY = 0x08
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000


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
    """NetlinkShim on pyroute2.IPRoute of the current network namespace."""

    def __init__(self) -> None:
        self._ipr: IPRoute | None = None

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
        ipr = self._get()
        msgs = self._call(ipr.get_routes, family=family_of(ip_version), proto=proto,
                          table=RT_TABLE_MAIN)
        out = []
        for m in msgs:
            # The filter is applied by pyroute2 in Python on some kernels: check again.
            if m["proto"] != proto or m.get_attr("RTA_TABLE", m["table"]) != RT_TABLE_MAIN:
                continue
            oif = m.get_attr("RTA_OIF")
            if oif is None:  # multipath or blackhole: never one of ours
                continue
            dst = m.get_attr("RTA_DST")
            if dst is None:
                dst = "0.0.0.0" if ip_version == 4 else "::"
            out.append(KernelRoute(f"{dst}/{m['dst_len']}", int(oif), proto))
        return out

    def replace_route(self, ip_version: int, dst: str, ifindex: int, proto: int) -> None:
        self._call(self._get().route, "replace", family=family_of(ip_version), dst=dst,
                   oif=ifindex, scope=RT_SCOPE_LINK, proto=proto, table=RT_TABLE_MAIN)

    def delete_route(self, ip_version: int, dst: str, ifindex: int, proto: int) -> bool:
        try:
            # pyroute2 sends scope 0 (universe) unless told; the kernel then only deletes a
            # universe-scope route. RT_SCOPE_NOWHERE means "any scope".
            self._call(self._get().route, "del", family=family_of(ip_version), dst=dst,
                       oif=ifindex, proto=proto, table=RT_TABLE_MAIN, scope=RT_SCOPE_NOWHERE)
        except NetlinkOpError as e:
            if e.code in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
                return False
            raise
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
            return LinkInfo(ifname, int(m["index"]), bool(flags & IFF_UP),
                            oper_is_up(oper, flags))
        return None

    def set_neighbour(self, ip_version: int, ifindex: int, ip: str, mac: str) -> None:
        self._call(self._get().neigh, "replace", family=family_of(ip_version), dst=ip,
                   lladdr=mac, ifindex=ifindex, state=NUD_PERMANENT)

    def set_proxy_neighbour(self, ip_version: int, ifindex: int, ip: str) -> None:
        self._call(self._get().neigh, "replace", family=family_of(ip_version), dst=ip,
                   ifindex=ifindex, flags=NTF_PROXY)

    def close(self) -> None:
        if self._ipr is not None:
            try:
                self._ipr.close()
            except Exception:  # closing a broken socket must not mask the original error
                _log.debug("closing IPRoute failed", exc_info=True)
            self._ipr = None


def oper_is_up(operstate: str | None, flags: int) -> bool:
    """Operationally up: IFLA_OPERSTATE UP, or UNKNOWN (drivers that don't report it, e.g. tun)
    with carrier (IFF_LOWER_UP) and admin up."""
    if operstate == "UP":
        return True
    if operstate in (None, "UNKNOWN"):
        return bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
    return False
