"""Routes, static neighbours and sysctls of local workload interfaces.

Desired state comes from RoutesSet/RoutesRemoved (the calculation) and InterfaceEvents (the
interface monitor); both only record. ``apply()`` programs the difference through the
NetlinkShim, against a cached view of the kernel's routes that carry felix's own protocol
number and is re-read after ``invalidate()`` (periodic refresh) or at start.

Ownership: every route felix adds carries ``proto FELIX_ROUTE_PROTO`` (80, unassigned in
/etc/iproute2/rt_protos and not used by BIRD/zebra/keepalived/dhcp), and only routes with that
proto are read back or deleted (the kernel matches the proto on delete too). ``replace`` may
take over a route to the very same /32 or /128 that someone else put in the main table: the
endpoint's IP must go down its interface.

Deletion: a route felix added in this process and that no endpoint wants any more is deleted
at once. A route of ours found in the kernel and wanted by no endpoint (left over from an
earlier run, or just added by a CNI plugin whose endpoint felix has not heard of yet) is only
deleted once ``allow_cleanup()`` was called (after in-sync + StartupCleanupDelay) *and* it has
been unclaimed for ``grace_period`` seconds.

Interfaces: routes go in only while the interface exists. When it appears, is recreated (new
ifindex) or changes oper state (an admin-down flushes its routes and neighbours), its sysctls,
neighbours and routes are written again. A route add that fails with ENETDOWN on a down
interface waits for the interface to come up; it is not a failure.

IPv6 gateway: RoutesSet carries no gateway, so every v6 workload interface gets a proxy
neighbour for ``ipv6_gateway`` (default ``fe80::1``, the gateway Calico's CNI/libnetwork
plugins configure), which makes the host answer the workload's NDP for its default router.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import Callable, Literal

from felix.dataplane.conntrack import ConntrackFlusher
from felix.dataplane.interfaces import InterfaceEvent
from felix.dataplane.netlink import NetlinkOpError, NetlinkShim, canonical_cidr
from felix.dataplane.stats import DataplaneStats
from felix.dataplane.sysctl import SysctlWriter, global_sysctls, interface_sysctls
from felix.messages import RoutesRemoved, RoutesSet

_log = logging.getLogger(__name__)

FELIX_ROUTE_PROTO = 80
IP_VERSIONS = (4, 6)

RouteKey = tuple[str, int]  # (canonical dst CIDR, ifindex)


@dataclass(frozen=True)
class RoutesApplyResult:
    ok: bool
    ops: int
    failed_ifaces: frozenset[str]
    programmed_ifaces: frozenset[str]  # interfaces whose routes are now fully in place
    error: str = ""


def _host_ip(cidr: str) -> str | None:
    net = ipaddress.ip_network(cidr)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else None


class RouteManager:
    def __init__(self, netlink: NetlinkShim, sysctl: SysctlWriter, stats: DataplaneStats, *,
                 conntrack: ConntrackFlusher | None = None,
                 route_proto: int = FELIX_ROUTE_PROTO, grace_period: float = 10,
                 clock: Callable[[], float] = time.monotonic,
                 ipv6_gateway: str = "fe80::1", retry_delay: float = 1.0) -> None:
        self._nl = netlink
        self._sysctl = sysctl
        self._stats = stats
        self._conntrack = conntrack
        self._proto = route_proto
        self._grace = grace_period
        self._clock = clock
        self._v6_gateway = ipv6_gateway
        self._retry_delay = retry_delay

        self._dests: dict[tuple[int, str], frozenset[str]] = {}  # (ipv, ifname) → CIDRs
        self._macs: dict[tuple[int, str], str | None] = {}
        self._links: dict[str, InterfaceEvent] = {}  # present links only
        self._kernel: dict[int, set[RouteKey]] = {v: set() for v in IP_VERSIONS}
        self._ours: dict[int, set[RouteKey]] = {v: set() for v in IP_VERSIONS}
        self._unclaimed_since: dict[tuple[int, str, int], float] = {}
        self._configured: dict[tuple[int, str], int] = {}  # sysctls+neighbours done for ifindex
        self._globals_done: set[int] = set()
        self._failed: set[str] = set()
        self._waiting_up: set[str] = set()

        self._resync_needed = True
        self._cleanup_allowed = False
        self._changed = True
        self._retry_at: float | None = None
        self._next_deadline: float | None = None

    # --- recording -----------------------------------------------------------------------

    def on_routes(self, msg: RoutesSet | RoutesRemoved) -> None:
        key = (msg.ip_version, msg.ifname)
        old = self._dests.get(key, frozenset())
        if isinstance(msg, RoutesSet):
            new = frozenset(self._canonical(msg.ip_version, d) for d in msg.dests) - {""}
            self._dests[key] = new
            if self._macs.get(key) != msg.mac:
                self._configured.pop(key, None)
            self._macs[key] = msg.mac
        else:
            new = frozenset()
            self._dests.pop(key, None)
            self._macs.pop(key, None)
            self._configured.pop(key, None)
        if self._conntrack is not None:
            for cidr in old - new:
                ip = _host_ip(cidr)
                if ip is not None:
                    self._conntrack.queue(msg.ip_version, ip)
        if new != old or isinstance(msg, RoutesSet):
            self._changed = True

    @staticmethod
    def _canonical(ip_version: int, dest: str) -> str:
        try:
            cidr = canonical_cidr(dest)
        except ValueError:
            _log.error("Ignoring invalid route destination %r", dest)
            return ""
        if ipaddress.ip_network(cidr).version != ip_version:
            _log.error("Ignoring IPv%s destination %r in an IPv%s route set",
                       ipaddress.ip_network(cidr).version, dest, ip_version)
            return ""
        return cidr

    def on_interface_event(self, ev: InterfaceEvent) -> None:
        _log.debug("Interface %s #%d: %s, %s", ev.ifname, ev.ifindex,
                   "present" if ev.present else "gone", "oper up" if ev.oper_up else "oper down")
        old = self._links.get(ev.ifname)
        if not ev.present:
            if old is None:
                return
            del self._links[ev.ifname]
            self._forget_ifindex(old.ifindex)
            self._failed.discard(ev.ifname)
            self._waiting_up.discard(ev.ifname)
            for v in IP_VERSIONS:
                self._configured.pop((v, ev.ifname), None)
            self._changed = True
            return
        self._links[ev.ifname] = ev
        if old is None or old.ifindex != ev.ifindex or old.oper_up != ev.oper_up:
            # Recreated, or its state changed (an admin-down flushes its routes and
            # neighbours): forget what we knew of it, so everything is written again.
            if old is not None:
                self._forget_ifindex(old.ifindex)
            for v in IP_VERSIONS:
                self._configured.pop((v, ev.ifname), None)
            self._waiting_up.discard(ev.ifname)
            self._changed = True

    def _forget_ifindex(self, ifindex: int) -> None:
        """The kernel drops a link's routes with it (and on admin-down): so does our view."""
        for v in IP_VERSIONS:
            gone = {k for k in self._kernel[v] if k[1] == ifindex}
            self._kernel[v] -= gone
            self._ours[v] -= gone

    def allow_cleanup(self) -> None:
        if not self._cleanup_allowed:
            self._cleanup_allowed = True
            self._changed = True

    def invalidate(self) -> None:
        self._resync_needed = True

    @property
    def dirty(self) -> bool:
        if self._changed or self._resync_needed:
            return True
        if self._conntrack is not None and self._conntrack.pending:
            return True
        now = self._clock()
        if self._retry_at is not None and now >= self._retry_at:
            return True
        return self._next_deadline is not None and now >= self._next_deadline

    @property
    def next_deadline(self) -> float | None:
        """Clock time at which ``dirty`` will turn true by itself (retry or grace expiry)."""
        times = [t for t in (self._retry_at, self._next_deadline) if t is not None]
        return min(times) if times else None

    def interface_state(self, ifname: str) -> Literal["up", "down", "missing"]:
        ev = self._links.get(ifname)
        if ev is None:
            return "missing"
        return "up" if ev.oper_up else "down"

    # --- applying ------------------------------------------------------------------------

    def apply(self) -> RoutesApplyResult:
        ops = 0
        errors: list[str] = []
        now = self._clock()
        self._changed = False
        self._retry_at = None
        self._next_deadline = None
        failed: set[str] = set()

        if self._resync_needed:
            try:
                self._read_kernel()
            except NetlinkOpError as e:
                self._stats.route_errors += 1
                self._retry_at = now + self._retry_delay
                msg = f"reading routes failed: {e}"
                _log.error(msg)
                return RoutesApplyResult(False, 0, frozenset(self._failed),
                                         frozenset(), msg)

        want = self._wanted()

        # Deletions first, so that an address moving between interfaces is never briefly
        # routed to both (and a v6 replace finds a single candidate).
        for v in IP_VERSIONS:
            for dst, ifindex in sorted(self._kernel[v] - want[v].items()):
                ukey = (v, dst, ifindex)
                if (dst, ifindex) not in self._ours[v]:
                    since = self._unclaimed_since.setdefault(ukey, now)
                    due = since + self._grace
                    if not self._cleanup_allowed or now < due:
                        if self._cleanup_allowed:
                            self._next_deadline = min(due, self._next_deadline or due)
                        continue
                ops += 1
                try:
                    self._nl.delete_route(v, dst, ifindex, self._proto)
                except NetlinkOpError as e:
                    errors.append(f"deleting {dst} dev #{ifindex}: {e}")
                    continue
                self._kernel[v].discard((dst, ifindex))
                self._ours[v].discard((dst, ifindex))
                self._unclaimed_since.pop(ukey, None)
        # Forget grace timers of routes that are claimed again or gone.
        for ukey in list(self._unclaimed_since):
            v, dst, ifindex = ukey
            if (dst, ifindex) not in self._kernel[v] or want[v].get(dst) == ifindex:
                del self._unclaimed_since[ukey]

        for (v, ifname), dests in sorted(self._dests.items()):
            link = self._links.get(ifname)
            if link is None or ifname in failed:
                continue
            n, err = self._program_iface(v, ifname, link, dests, want[v])
            ops += n
            if err:
                failed.add(ifname)
                errors.append(err)

        if self._conntrack is not None:
            for ct_error in self._conntrack.flush():
                _log.warning("conntrack flush: %s", ct_error)

        self._failed = failed
        if failed or errors:
            self._retry_at = now + self._retry_delay
        self._stats.route_ops += ops
        self._stats.route_errors += len(errors)
        ok = not errors
        if errors:
            _log.warning("Route apply had %d failures; first: %s", len(errors), errors[0])
        return RoutesApplyResult(ok, ops, frozenset(failed), self._programmed(want),
                                 "; ".join(errors[:5]))

    def _read_kernel(self) -> None:
        for v in IP_VERSIONS:
            try:
                routes = self._nl.list_routes(v, self._proto)
            except NetlinkOpError as e:
                if e.code in (errno.EAFNOSUPPORT, errno.EOPNOTSUPP) and v == 6:
                    routes = []  # IPv6 disabled in this kernel
                else:
                    raise
            self._kernel[v] = {(r.dst, r.ifindex) for r in routes}
            self._ours[v] &= self._kernel[v]
        self._resync_needed = False

    def _wanted(self) -> dict[int, dict[str, int]]:
        """dst → ifindex for each present interface's destinations. An address claimed by two
        interfaces goes to the first by name (a misconfiguration: logged)."""
        want: dict[int, dict[str, int]] = {v: {} for v in IP_VERSIONS}
        owner: dict[tuple[int, str], str] = {}
        for (v, ifname), dests in sorted(self._dests.items()):
            link = self._links.get(ifname)
            if link is None:
                continue
            for dst in dests:
                if dst in want[v]:
                    _log.warning("%s is claimed by %s and %s; routing it to %s", dst,
                                 owner[(v, dst)], ifname, owner[(v, dst)])
                    continue
                want[v][dst] = link.ifindex
                owner[(v, dst)] = ifname
        return want

    def _program_iface(self, v: int, ifname: str, link: InterfaceEvent, dests: frozenset[str],
                       want: dict[str, int]) -> tuple[int, str]:
        """Sysctls, neighbours and routes of one interface. Returns (ops, error or "")."""
        ops = 0
        idx = link.ifindex
        try:
            if self._configured.get((v, ifname)) != idx:
                if v not in self._globals_done:
                    for k, val in global_sysctls(v):
                        self._sysctl.write(k, val)
                    self._globals_done.add(v)
                for k, val in interface_sysctls(v, ifname):
                    self._sysctl.write(k, val)
                mac = self._macs.get((v, ifname))
                if mac:
                    for dst in sorted(dests):
                        ip = _host_ip(dst)
                        if ip is not None:
                            ops += 1
                            self._nl.set_neighbour(v, idx, ip, mac)
                if v == 6 and self._v6_gateway:
                    ops += 1
                    self._nl.set_proxy_neighbour(6, idx, self._v6_gateway)
                self._configured[(v, ifname)] = idx
            for dst in sorted(dests):
                if want.get(dst) != idx:
                    continue  # lost a conflict
                if (dst, idx) in self._kernel[v]:
                    continue
                ops += 1
                self._nl.replace_route(v, dst, idx, self._proto)
                # The replace may have displaced a route to dst on another interface; that
                # stale view entry costs one ESRCH delete later, which is harmless.
                self._kernel[v].add((dst, idx))
                self._ours[v].add((dst, idx))
        except NetlinkOpError as e:
            return ops, self._op_failed(ifname, link, e)
        except OSError as e:
            return ops, self._op_failed(ifname, link, NetlinkOpError(e.errno or errno.EIO,
                                                                   f"sysctl: {e}"))
        self._waiting_up.discard(ifname)
        return ops, ""

    def _op_failed(self, ifname: str, link: InterfaceEvent, e: NetlinkOpError) -> str:
        if e.code == errno.ENETDOWN and not link.oper_up:
            _log.info("%s is down: its routes wait until it comes up", ifname)
            self._waiting_up.add(ifname)
            return ""
        if e.code in (errno.ENODEV, errno.ENOENT, errno.ENXIO):
            # The link went away or was recreated under us; ask the kernel now instead of
            # retrying against a stale ifindex until the monitor catches up.
            try:
                info = self._nl.link(ifname)
            except NetlinkOpError:
                info = None
            if info is None:
                self.on_interface_event(InterfaceEvent(ifname, link.ifindex, False, False))
                return ""
            if info.ifindex != link.ifindex:
                self.on_interface_event(InterfaceEvent(ifname, info.ifindex, True,
                                                       info.oper_up, link.addrs))
                return ""
        return f"{ifname}: {e}"

    def _programmed(self, want: dict[int, dict[str, int]]) -> frozenset[str]:
        not_done: set[str] = set(self._failed) | self._waiting_up
        names: set[str] = set()
        for (v, ifname), dests in self._dests.items():
            names.add(ifname)
            link = self._links.get(ifname)
            if link is None or self._configured.get((v, ifname)) != link.ifindex:
                not_done.add(ifname)
                continue
            kernel = self._kernel[v]
            for dst in dests:
                if want[v].get(dst) == link.ifindex and (dst, link.ifindex) not in kernel:
                    not_done.add(ifname)
                    break
        return frozenset(names - not_done)
