"""The one dataplane loop: drain the calculation's messages and interface events, then program
the kernel in one pass.

Every pending message is recorded into the drivers first (they only record), then, once the
calculation has sent ``InSync``, the dirty drivers apply in dependency order: ipset
creates/adds → routes → iptables tables → ipset deletions. Within each step the IP families
are independent (separate kernel tables and sets), so their commands run concurrently (ipset
and nft restores overlap fully; legacy iptables and ip6tables take the same xtables lock, so
there only process start-up and parsing overlap, and the whole-table kernel writes still
queue: measured ~0-10% off a 190k-rule pair). Applies are throttled so bursts coalesce. A driver that fails keeps its dirty state and is retried with exponential backoff (or
as soon as new input for it arrives); the others carry on. After the loop has applied, it works
out which local endpoints are fully programmed and reports their status: on every change of
status, and once for every endpoint change it was told about (each ``EndpointSet``, and each
``on_endpoints_changed`` from the pipeline) as soon as that change is in the kernel, so the
programming latency of every change can be measured, not only of those that changed status.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, Iterable, Mapping, Protocol, Sequence, TypeVar

import gevent  # type: ignore[import-untyped]
import gevent.event  # type: ignore[import-untyped]

from felix.dataplane.interfaces import InterfaceEvent
from felix.dataplane.stats import DataplaneStats
from felix.messages import (ChainRemoved, ChainSet, EndpointRemoved, EndpointSet, HookSet,
                            InSync, IpsetDelta, IpsetRemoved, IpsetSet, Message, RoutesRemoved,
                            RoutesSet)

log = logging.getLogger(__name__)

BACKOFF_START = 0.1
BACKOFF_CAP = 30.0
HEARTBEAT_INTERVAL = 1.0  # longest idle wait, so last_heartbeat stays fresh
REFRESH_JITTER = 0.1
# Tables that are both present apply in this order (filter before nat, as raw/mangle rules do
# not depend on them).
TABLE_ORDER = {"raw": 0, "mangle": 1, "filter": 2, "nat": 3}

ChainId = tuple[int, str, str]
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one of several concurrent calls produced: its value, or the exception it raised."""

    value: T | None = None
    error: Exception | None = None


def capture(fn: Callable[[], T]) -> Outcome[T]:
    try:
        return Outcome(value=fn())
    except Exception as e:  # reported through the outcome, per driver
        return Outcome(error=e)


def run_concurrently(fns: Sequence[Callable[[], T]]) -> list[Outcome[T]]:
    """Runs each fn in its own greenlet and waits for all of them; outcomes in fns' order.

    The drivers block in their CommandRunner, which yields to the hub (gevent subprocess), so
    the kernel commands overlap. With synchronous fakes each greenlet runs to completion in
    spawn order, so tests stay deterministic. One fn raising does not disturb the others."""

    if len(fns) <= 1:
        return [capture(fn) for fn in fns]
    greenlets = [gevent.spawn(capture, fn) for fn in fns]
    try:
        gevent.joinall(greenlets)
    finally:  # (the caller killed while waiting: do not leave the others running)
        gevent.killall([g for g in greenlets if not g.dead], block=False)
    return [g.value if g.successful() else Outcome(error=RuntimeError(repr(g.exception)))
            for g in greenlets]


# ---- the drivers' APIs, as this loop uses them --------------------------------------------

class _TableResult(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def lines_written(self) -> int: ...
    @property
    def failed_chains(self) -> frozenset[str]: ...
    @property
    def error(self) -> str: ...


class _RoutesResult(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def ops(self) -> int: ...
    @property
    def failed_ifaces(self) -> frozenset[str]: ...
    @property
    def programmed_ifaces(self) -> frozenset[str]: ...
    @property
    def error(self) -> str: ...


class _IpsetResult(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def lines_written(self) -> int: ...
    @property
    def error(self) -> str: ...


class TableLike(Protocol):
    def set_chain(self, name: str, rules: Sequence[str]) -> None: ...
    def remove_chain(self, name: str) -> None: ...
    def set_hook(self, kernel_chain: str, rules: Sequence[str]) -> None: ...
    def allow_cleanup(self) -> None: ...
    def invalidate(self) -> None: ...
    def set_blocked(self, names: frozenset[str]) -> None: ...
    @property
    def dirty(self) -> bool: ...
    def apply(self) -> _TableResult: ...


class IpsetManagerLike(Protocol):
    def on_message(self, msg: IpsetSet | IpsetDelta | IpsetRemoved) -> None: ...
    def allow_cleanup(self) -> None: ...
    def invalidate(self) -> None: ...
    @property
    def dirty(self) -> bool: ...
    @property
    def updates_pending(self) -> bool: ...
    @property
    def deletions_pending(self) -> bool: ...
    def apply_updates(self) -> _IpsetResult: ...
    def apply_deletions(self) -> _IpsetResult: ...


class RouteManagerLike(Protocol):
    def on_routes(self, msg: RoutesSet | RoutesRemoved) -> None: ...
    def on_interface_event(self, ev: InterfaceEvent) -> None: ...
    def allow_cleanup(self) -> None: ...
    def invalidate(self) -> None: ...
    @property
    def dirty(self) -> bool: ...
    def apply(self) -> _RoutesResult: ...
    def interface_state(self, ifname: str) -> str: ...


EndpointStatusCallback = Callable[[object, str, "float | None"], None]
ApplyCallback = Callable[["ApplyReport"], None]


@dataclass(frozen=True)
class _EndpointsChanged:
    """Loop-internal input: these endpoints' datastore data changed. Queued behind the
    messages the change produced (possibly none), so it is seen after them."""

    keys: frozenset[object]


@dataclass(frozen=True)
class ApplyReport:
    seconds: float = 0.0
    iptables_lines: int = 0
    ipset_lines: int = 0
    route_ops: int = 0
    ok: bool = True
    error: str = ""
    applied: bool = False  # False: nothing was due (not in sync, nothing dirty, backing off)


@dataclass
class _Backoff:
    failures: int = 0
    retry_at: float = 0.0


@dataclass
class _Tally:
    iptables_lines: int = 0
    ipset_lines: int = 0
    route_ops: int = 0
    applied: bool = False
    errors: list[str] = field(default_factory=list)


class _Waker:
    """Wakes the loop greenlet from any greenlet or native thread (an async watcher's send()
    is the one hub operation that is safe from another thread)."""

    def __init__(self) -> None:
        self.event = gevent.event.Event()
        self._async = gevent.get_hub().loop.async_()
        self._async.start(self.event.set)

    def wake(self) -> None:
        self._async.send()

    def close(self) -> None:
        self._async.close()


class Dataplane:
    def __init__(self, *, tables: Mapping[tuple[int, str], TableLike],
                 ipsets: Mapping[int, IpsetManagerLike], routes: RouteManagerLike,
                 stats: DataplaneStats, on_endpoint_status: EndpointStatusCallback,
                 cleanup_delay: float = 30, refresh_interval: float = 60,
                 min_apply_interval: float = 0.05,
                 on_apply: ApplyCallback | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = gevent.sleep) -> None:
        self._tables = dict(sorted(tables.items(),
                                   key=lambda kv: (TABLE_ORDER.get(kv[0][1], 9), kv[0][0])))
        self._ipsets = dict(sorted(ipsets.items()))
        self._routes = routes
        self._stats = stats
        self._on_status = on_endpoint_status
        self._on_apply = on_apply
        self._cleanup_delay = cleanup_delay
        self._refresh_interval = refresh_interval
        self._min_apply_interval = min_apply_interval
        self._clock = clock
        self._sleep = sleep
        self._random = random.Random()

        self._queue: deque[object] = deque()
        self._waker = _Waker()
        self._stopped = False

        self.last_heartbeat = clock()
        self.in_sync = False
        self.last_apply_ok = True
        self.last_error = ""
        self._in_sync_at: float | None = None
        self._cleanup_done = False
        self._next_refresh: float | None = None
        self._last_apply_at = -math.inf
        self._backoff: dict[Hashable, _Backoff] = {}
        self._touched: set[Hashable] = set()  # components with new input since last attempt

        # Endpoint status bookkeeping.
        self._endpoints: dict[object, EndpointSet] = {}
        self._status: dict[object, str] = {}
        # Endpoints with a change not yet reported as programmed (or as down/error).
        self._awaiting: set[object] = set()
        self._known_chains: set[ChainId] = set()
        self._pending_chains: set[ChainId] = set()  # set, not yet confirmed in the kernel
        self._failed_chains: set[ChainId] = set()
        self._blocked: dict[tuple[int, str], frozenset[str]] = {}
        self._routes_pending: set[str] = set()
        self._routes_failed: set[str] = set()
        self._status_dirty = False
        self._warned_tables: set[tuple[int, str]] = set()

    # ---- input (any greenlet or thread) --------------------------------------------------

    def on_messages(self, msgs: Iterable[Message]) -> None:
        self._queue.extend(msgs)
        self._waker.wake()

    def on_interface_event(self, ev: InterfaceEvent) -> None:
        self._queue.append(ev)
        self._waker.wake()

    def on_endpoints_changed(self, keys: Iterable[object]) -> None:
        """The datastore data of these local endpoints changed (call after on_messages with
        what the change produced): report each once its state is in the kernel, even if its
        status stays the same or the change needed no kernel write at all."""
        keys = frozenset(keys)
        if keys:
            self._queue.append(_EndpointsChanged(keys))
            self._waker.wake()

    def stop(self) -> None:
        self._stopped = True
        self._waker.wake()

    # ---- recording ------------------------------------------------------------------------

    def _drain(self) -> None:
        while self._queue:
            item = self._queue.popleft()
            try:
                self._dispatch(item)
            except Exception:  # one bad message must not stop the dataplane
                log.exception("Failed to record %r", item)

    def _table(self, ip_version: int, table: str) -> TableLike | None:
        t = self._tables.get((ip_version, table))
        if t is None and (ip_version, table) not in self._warned_tables:
            self._warned_tables.add((ip_version, table))
            log.warning("No IPv%d %s table in this dataplane; ignoring its chains",
                        ip_version, table)
        return t

    def _dispatch(self, msg: object) -> None:
        if isinstance(msg, ChainSet):
            t = self._table(msg.ip_version, msg.table)
            if t is not None:
                t.set_chain(msg.name, msg.rules)
                cid = (msg.ip_version, msg.table, msg.name)
                self._known_chains.add(cid)
                self._pending_chains.add(cid)
                self._touched.add(("table", msg.ip_version, msg.table))
        elif isinstance(msg, ChainRemoved):
            t = self._table(msg.ip_version, msg.table)
            if t is not None:
                t.remove_chain(msg.name)
                cid = (msg.ip_version, msg.table, msg.name)
                self._known_chains.discard(cid)
                self._pending_chains.discard(cid)
                self._failed_chains.discard(cid)
                self._touched.add(("table", msg.ip_version, msg.table))
        elif isinstance(msg, HookSet):
            t = self._table(msg.ip_version, msg.table)
            if t is not None:
                t.set_hook(msg.kernel_chain, msg.rules)
                self._touched.add(("table", msg.ip_version, msg.table))
        elif isinstance(msg, (IpsetSet, IpsetDelta, IpsetRemoved)):
            mgr = self._ipsets.get(msg.ip_version)
            if mgr is None:
                log.warning("No IPv%d ipsets in this dataplane; ignoring %s", msg.ip_version,
                            msg.name)
                return
            mgr.on_message(msg)
            self._touched.add(("ipsets", msg.ip_version))
            if isinstance(msg, IpsetRemoved):
                self._touched.add(("ipset-deletions", msg.ip_version))
        elif isinstance(msg, (RoutesSet, RoutesRemoved)):
            self._routes.on_routes(msg)
            self._routes_pending.add(msg.ifname)
            self._touched.add(("routes",))
        elif isinstance(msg, EndpointSet):
            self._endpoints[msg.endpoint_key] = msg
            self._awaiting.add(msg.endpoint_key)
            self._status_dirty = True
        elif isinstance(msg, _EndpointsChanged):
            self._awaiting |= msg.keys & self._endpoints.keys()
            self._status_dirty = True
        elif isinstance(msg, EndpointRemoved):
            self._endpoints.pop(msg.endpoint_key, None)
            self._status.pop(msg.endpoint_key, None)
            self._awaiting.discard(msg.endpoint_key)
        elif isinstance(msg, InSync):
            if not self.in_sync:
                self.in_sync = True
                now = self._clock()
                self._in_sync_at = now
                if self._refresh_interval > 0:
                    self._next_refresh = now + self._jittered_refresh()
                log.info("Calculation in sync: dataplane applies from now on")
        elif isinstance(msg, InterfaceEvent):
            self._routes.on_interface_event(msg)
            self._routes_pending.add(msg.ifname)
            self._touched.add(("routes",))
            self._status_dirty = True
        else:
            log.error("Dataplane ignoring unknown message %r", msg)

    # ---- timers ---------------------------------------------------------------------------

    def _jittered_refresh(self) -> float:
        return self._refresh_interval * self._random.uniform(1 - REFRESH_JITTER,
                                                             1 + REFRESH_JITTER)

    def _everything(self) -> list[IpsetManagerLike | TableLike | RouteManagerLike]:
        return [*self._ipsets.values(), self._routes, *self._tables.values()]

    def _touch_all(self) -> None:
        self._touched |= {("ipsets", v) for v in self._ipsets}
        self._touched |= {("ipset-deletions", v) for v in self._ipsets}
        self._touched |= {("table", v, t) for v, t in self._tables}
        self._touched.add(("routes",))

    def _run_timers(self, now: float) -> None:
        if (not self._cleanup_done and self._in_sync_at is not None
                and now >= self._in_sync_at + self._cleanup_delay):
            self._cleanup_done = True
            log.info("Startup clean-up delay over: removing stale felix state")
            for driver in self._everything():
                driver.allow_cleanup()
            self._touch_all()
        if self._next_refresh is not None and now >= self._next_refresh:
            self._next_refresh = now + self._jittered_refresh()
            log.debug("Periodic refresh: re-reading kernel state")
            for driver in self._everything():
                driver.invalidate()
            self._touch_all()

    # ---- applying -------------------------------------------------------------------------

    def _due(self, key: Hashable, dirty: bool, now: float) -> bool:
        if not dirty:
            return False
        b = self._backoff.get(key)
        return b is None or key in self._touched or now >= b.retry_at

    def _record(self, key: Hashable, ok: bool, error: str, now: float, tally: _Tally) -> None:
        self._touched.discard(key)
        tally.applied = True
        if ok:
            self._backoff.pop(key, None)
            return
        b = self._backoff.setdefault(key, _Backoff())
        b.failures += 1
        b.retry_at = now + min(BACKOFF_CAP, BACKOFF_START * 2 ** (b.failures - 1))
        tally.errors.append(f"{key}: {error}" if error else f"{key} failed")

    def _work_due(self, now: float) -> bool:
        if not self.in_sync:
            return False
        for v, mgr in self._ipsets.items():
            if (self._due(("ipsets", v), mgr.updates_pending, now)
                    or self._due(("ipset-deletions", v), mgr.deletions_pending, now)):
                return True
        if self._due(("routes",), self._routes.dirty, now):
            return True
        return any(self._due(("table", v, t), table.dirty, now)
                   for (v, t), table in self._tables.items())

    def _apply(self) -> ApplyReport:
        start = self._clock()
        tally = _Tally()
        any_table_ok = False

        due_sets = [(v, mgr) for v, mgr in self._ipsets.items()
                    if self._due(("ipsets", v), mgr.updates_pending, start)]
        for (v, mgr), out in zip(due_sets, run_concurrently(
                [mgr.apply_updates for _, mgr in due_sets])):
            key: Hashable = ("ipsets", v)
            if out.value is not None:
                tally.ipset_lines += out.value.lines_written
                self._record(key, out.value.ok, out.value.error, start, tally)
            else:
                log.error("IPv%d ipset updates raised", v, exc_info=out.error)
                self._record(key, False, repr(out.error), start, tally)

        t_ipsets = self._clock()
        if self._due(("routes",), self._routes.dirty, start):
            try:
                rr = self._routes.apply()
                tally.route_ops += rr.ops
                # The route manager attempts every interface in each apply, so its result is
                # the whole truth: what did not fail is in place or waits for its interface.
                self._routes_failed = set(rr.failed_ifaces)
                self._routes_pending.clear()
                self._record(("routes",), rr.ok, rr.error, start, tally)
            except Exception as e:
                log.exception("Route apply raised")
                self._record(("routes",), False, repr(e), start, tally)

        t_routes = self._clock()
        # One greenlet per IP family, each applying its due tables in TABLE_ORDER.
        due_tables: dict[int, list[tuple[str, TableLike]]] = {}
        for (v, tname), table in self._tables.items():
            if self._due(("table", v, tname), table.dirty, start):
                due_tables.setdefault(v, []).append((tname, table))

        def apply_family(v: int) -> Callable[[], list[Outcome[_TableResult]]]:
            return lambda: [capture(table.apply) for _, table in due_tables[v]]

        families = sorted(due_tables)
        results: dict[tuple[int, str], Outcome[_TableResult]] = {}
        for v, out_family in zip(families, run_concurrently(
                [apply_family(v) for v in families])):
            assert out_family.value is not None  # apply_family captures per table
            for (tname, _), one in zip(due_tables[v], out_family.value):
                results[(v, tname)] = one

        for (v, tname) in self._tables:
            out_t = results.get((v, tname))
            if out_t is None:
                continue
            key = ("table", v, tname)
            tr = out_t.value
            if tr is None:
                log.error("IPv%d %s table apply raised", v, tname, exc_info=out_t.error)
                self._record(key, False, repr(out_t.error), start, tally)
                continue
            tally.iptables_lines += tr.lines_written
            self._record(key, tr.ok, tr.error, start, tally)
            any_table_ok = any_table_ok or tr.ok
            bad = {(v, tname, c) for c in tr.failed_chains}
            mine = {c for c in self._pending_chains if c[0] == v and c[1] == tname}
            self._pending_chains -= mine - bad
            self._failed_chains -= mine - bad
            self._failed_chains |= bad & self._known_chains

        t_tables = self._clock()
        self._block_failed_endpoints()
        if any_table_ok:
            # A rule that referenced a set may just have gone: retry refused destroys now.
            self._touched |= {("ipset-deletions", v) for v in self._ipsets}
        due_dels = [(v, mgr) for v, mgr in self._ipsets.items()
                    if self._due(("ipset-deletions", v), mgr.deletions_pending, start)]
        for (v, mgr), out_d in zip(due_dels, run_concurrently(
                [mgr.apply_deletions for _, mgr in due_dels])):
            key = ("ipset-deletions", v)
            if out_d.value is not None:
                tally.ipset_lines += out_d.value.lines_written
                self._record(key, out_d.value.ok, out_d.value.error, start, tally)
            else:
                log.error("IPv%d ipset deletions raised", v, exc_info=out_d.error)
                self._record(key, False, repr(out_d.error), start, tally)

        self._settle_clean_drivers()
        # Every touched driver that had work was just applied; the rest had nothing to do.
        self._touched.clear()
        end = self._clock()
        ok = not tally.errors
        error = "; ".join(tally.errors)
        report = ApplyReport(end - start, tally.iptables_lines, tally.ipset_lines,
                             tally.route_ops, ok, error, tally.applied)
        if tally.applied:
            # Where an apply's time goes is the first question when programming is slow.
            log.debug("Applied in %.1f ms (ipsets %.1f, routes %.1f, iptables %.1f, ipset "
                      "deletions %.1f ms): %d iptables lines, %d ipset lines, %d route ops",
                      (end - start) * 1e3, (t_ipsets - start) * 1e3, (t_routes - t_ipsets) * 1e3,
                      (t_tables - t_routes) * 1e3, (end - t_tables) * 1e3, tally.iptables_lines,
                      tally.ipset_lines, tally.route_ops)
            if tally.iptables_lines or tally.ipset_lines or tally.route_ops:
                # Only a write starts a throttle slot: an apply that found nothing to do must
                # not delay the next real change (it cost ~50 ms of latency per endpoint).
                self._last_apply_at = start
            self._stats.applies += 1
            self._stats.last_apply_seconds = report.seconds
            self.last_apply_ok = ok
            if ok:
                self._stats.last_apply_time = time.time()
                self.last_error = ""
            else:
                self._stats.apply_failures += 1
                self._stats.last_error = error
                self.last_error = error
                log.warning("Dataplane apply failed (will retry): %s", error)
            self._status_dirty = True
            if self._on_apply is not None:
                try:
                    self._on_apply(report)
                except Exception:
                    log.exception("Apply callback failed")
        return report

    def _block_failed_endpoints(self) -> None:
        """An endpoint with a chain that failed is cut off as a whole (fail closed): its own
        chains (those no healthy endpoint shares) are blocked, so the dispatch chains drop its
        traffic in both directions instead of running the half that did get programmed."""
        failed: set[ChainId] = set()
        healthy: set[ChainId] = set()
        for ep in self._endpoints.values():
            (failed if ep.chains & self._failed_chains else healthy).update(ep.chains)
        for (v, tname), table in self._tables.items():
            names = frozenset(c[2] for c in failed - healthy if c[0] == v and c[1] == tname)
            if names != self._blocked.get((v, tname), frozenset()):
                self._blocked[(v, tname)] = names
                table.set_blocked(names)
                self._touched.add(("table", v, tname))

    def _settle_clean_drivers(self) -> None:
        """A driver with nothing left to do has everything it was asked for in the kernel."""
        for (v, tname), table in self._tables.items():
            if not table.dirty:
                done = {c for c in self._pending_chains | self._failed_chains
                        if c[0] == v and c[1] == tname}
                self._pending_chains -= done
                self._failed_chains -= done
        if not self._routes.dirty:  # (a failed one stays failed until its retry says otherwise)
            self._routes_pending.clear()

    # ---- endpoint status ------------------------------------------------------------------

    def _endpoint_status(self, ep: EndpointSet) -> str | None:
        if not ep.active:
            return "down"
        if ep.ifname is not None and self._routes.interface_state(ep.ifname) != "up":
            return "down"
        chains = [c for c in ep.chains if (c[0], c[1]) in self._tables]
        if any(c in self._failed_chains for c in chains) or (
                ep.ifname is not None and ep.ifname in self._routes_failed):
            return "error"
        if any(c in self._pending_chains or c not in self._known_chains for c in chains):
            return None
        if ep.ifname is not None and ep.ifname in self._routes_pending:
            return None
        return "up"

    def _update_statuses(self) -> None:
        if not self._status_dirty:
            return
        self._status_dirty = False
        for key, ep in self._endpoints.items():
            status = self._endpoint_status(ep)
            if status is None or (status == self._status.get(key) and key not in self._awaiting):
                continue
            self._status[key] = status
            self._awaiting.discard(key)
            programmed_at = self._clock() if status == "up" else None
            try:
                self._on_status(key, status, programmed_at)
            except Exception:
                log.exception("Endpoint status callback failed for %r", key)

    # ---- driving --------------------------------------------------------------------------

    def run_once(self) -> ApplyReport:
        """Drain everything pending and apply once, ignoring the throttle."""
        self.last_heartbeat = self._clock()
        self._drain()
        if not self.in_sync:
            return ApplyReport()
        self._run_timers(self._clock())
        report = self._apply()
        self._update_statuses()
        return report

    def _next_wakeup(self, now: float) -> float:
        times = [now + HEARTBEAT_INTERVAL]
        if self.in_sync:
            if not self._cleanup_done and self._in_sync_at is not None:
                times.append(self._in_sync_at + self._cleanup_delay)
            if self._next_refresh is not None:
                times.append(self._next_refresh)
            # Only future times: work already due is seen by _work_due, and a past deadline
            # with nothing to do (a failed driver whose work went away keeps its backoff)
            # would make this loop spin instead of sleeping.
            times.extend(b.retry_at for b in self._backoff.values() if b.retry_at > now)
            deadline = getattr(self._routes, "next_deadline", None)
            if isinstance(deadline, (int, float)) and deadline > now:
                times.append(deadline)
        return max(0.0, min(times) - now)

    def run(self) -> None:
        log.info("Dataplane loop starting")
        try:
            while not self._stopped:
                self.last_heartbeat = self._clock()
                self._drain()
                now = self._clock()
                if self.in_sync:
                    self._run_timers(now)
                    if self._work_due(now):
                        wait = self._last_apply_at + self._min_apply_interval - now
                        if wait > 0:
                            # Let the burst finish: whatever arrives meanwhile joins this apply.
                            self._sleep(wait)
                            continue
                        try:
                            self._apply()
                        except Exception:  # the loop must outlive any driver bug
                            log.exception("Dataplane apply raised")
                    self._update_statuses()
                now = self._clock()
                timeout = self._next_wakeup(now)
                if self._work_due(now):  # still dirty, not backing off: next throttle slot
                    timeout = min(timeout, max(0.0, self._last_apply_at
                                               + self._min_apply_interval - now))
                self._waker.event.wait(timeout)
                self._waker.event.clear()
        finally:
            log.info("Dataplane loop stopped")
