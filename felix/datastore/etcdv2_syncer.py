"""Snapshot + watch of the Calico v1 tree over the etcd v2 API.

One greenlet: wait for Ready, read the whole prefix once, send the differences from what was
sent before, report in-sync, then long-poll a recursive watch.  Anything that could leave the
view stale (lost watch window, broken connection, new cluster, Ready no longer true) leads to
another snapshot whose differences are all that is sent.  During an outage nothing is sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import etcd
import gevent

from felix.datastore.api import SyncerCallbacks, SyncerStats, SyncStatus, Update
from felix.datastore.client import DEFAULT_TIMEOUT, client_for_endpoint, parse_endpoints
from felix.datastore.keystate import KeyState
from felix.datastore.v2api import (CONNECTION_ERRORS, DELETE_ACTIONS, EtcdV2Api, V2Api,
                                   WatchEvent)

_log = logging.getLogger(__name__)

BATCH_SIZE = 1000

_T = TypeVar("_T")


class _ResyncNeeded(Exception):
    pass


class _PeriodicResyncDue(Exception):
    pass


def is_ready_value(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "true"


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + "/")


class EtcdSyncer:
    def __init__(self, endpoints: list[str], callbacks: SyncerCallbacks, *,
                 ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None, resync_interval: float = 3600,
                 watch_timeout: float = 10, prefix: str = "/calico/v1",
                 max_backoff: float = 3.0,
                 apis: Sequence[V2Api] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """apis replaces the real per-endpoint etcd access (unit tests pass fakes)."""
        self.prefix = prefix.rstrip("/")
        # Watch the parent: felix's own status writes under /calico/felix/v1 then move our
        # index along instead of ageing it out of etcd's 1000-event window.
        self.watch_root = self.prefix.rsplit("/", 1)[0] or "/"
        self.ready_key = f"{self.prefix}/Ready"
        self.callbacks = callbacks
        self.resync_interval = resync_interval
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.stats = SyncerStats()
        self._clock = clock
        if apis is None:
            apis = [EtcdV2Api(client_for_endpoint(e, ca_file=ca_file, cert_file=cert_file,
                                                  key_file=key_file, timeout=DEFAULT_TIMEOUT))
                    for e in parse_endpoints(endpoints)]
        self._apis = list(apis)
        self._api_idx = 0
        self._state = KeyState()
        self._cluster_id: str | None = None
        self._ever_in_sync = False
        self._connected: bool | None = None   # None: no attempt yet
        self._greenlet: gevent.Greenlet | None = None
        self._stopping = False
        self._next_periodic = 0.0

    # -- public -----------------------------------------------------------------------------

    def start(self) -> gevent.Greenlet:
        assert self._greenlet is None, "syncer started twice"
        self._greenlet = gevent.spawn(self._run)
        return self._greenlet

    def stop(self) -> None:
        self._stopping = True
        if self._greenlet is not None and gevent.getcurrent() is not self._greenlet:
            self._greenlet.kill(block=True, timeout=5)

    @property
    def api(self) -> V2Api:
        return self._apis[self._api_idx]

    # -- main loop --------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        periodic = False
        while not self._stopping:
            try:
                self._sync(periodic)
            except _PeriodicResyncDue:
                periodic = True
                continue
            except _ResyncNeeded as e:
                _log.info("Resyncing from etcd: %s", e)
            except CONNECTION_ERRORS as e:
                self._on_connection_failure(e)
            except etcd.EtcdClusterIdChanged as e:
                _log.warning("etcd cluster ID changed (%s); resyncing", e)
            except etcd.EtcdEventIndexCleared:
                _log.info("Watch fell behind etcd's event history; resyncing")
            except etcd.EtcdException as e:
                # E.g. leader election in progress or a garbled response: retry calmly.
                _log.warning("etcd error, will resync: %r", e)
                self._on_connection_failure(e, rotate=False)
            else:
                continue
            periodic = False
            self._need_resync()
            if self._connected is False:
                gevent.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            else:
                backoff = 0.1

    def _sync(self, periodic: bool) -> None:
        """One snapshot then watch until something needs another snapshot."""
        if not periodic:
            self._wait_for_ready()
        snap = self._call(lambda api: api.read_snapshot(self.prefix))
        ready = snap.leaves.get(self.ready_key)
        if not is_ready_value(ready[1] if ready else None):
            raise _ResyncNeeded("Ready changed before the snapshot")
        self._set_status(SyncStatus.RESYNC if not periodic else self.stats.status)
        updates = self._state.apply_snapshot(snap.leaves)
        self.stats.known_keys = len(self._state)
        self._deliver(updates)
        self.stats.snapshots += 1
        if periodic:
            self.stats.periodic_resyncs += 1
            if updates:
                _log.warning("Periodic resync found %d differences", len(updates))
        self._cluster_id = snap.cluster_id
        self._ever_in_sync = True
        self._set_status(SyncStatus.IN_SYNC)
        self._next_periodic = (self._clock() + self.resync_interval
                               if self.resync_interval > 0 else float("inf"))
        self._watch(snap.index + 1)

    def _wait_for_ready(self) -> None:
        while True:
            read = self._call(lambda api: api.read_key(self.ready_key))
            if is_ready_value(read.value):
                return
            if self.stats.status != SyncStatus.WAIT_FOR_READY:
                _log.warning("%s is %r, not true: waiting for it", self.ready_key, read.value)
            self._set_status(SyncStatus.WAIT_FOR_READY)
            try:
                self._call(lambda api: api.watch(self.ready_key, read.index + 1,
                                                 self.watch_timeout, recursive=False))
            except etcd.EtcdEventIndexCleared:
                pass

    def _watch(self, wait_index: int) -> None:
        while True:
            timeout = self.watch_timeout
            if self._next_periodic != float("inf"):
                remaining = self._next_periodic - self._clock()
                if remaining <= 0:
                    raise _PeriodicResyncDue()
                timeout = min(timeout, remaining)
            res = self._call(lambda api: api.watch(self.watch_root, wait_index, timeout,
                                                   recursive=True))
            # Without monkey-patched sockets (or when etcd answers at once, event after event)
            # nothing above yields to the hub; let other greenlets in.
            gevent.sleep(0)
            if self._cluster_id and res.cluster_id and res.cluster_id != self._cluster_id:
                raise _ResyncNeeded(f"etcd cluster ID changed from {self._cluster_id} "
                                    f"to {res.cluster_id}")
            if res.start_index < wait_index - 1:
                # A waitIndex in etcd's future would wait silently for events that the new
                # (restored or wiped) store will number differently.
                raise _ResyncNeeded(f"etcd index went back from {wait_index - 1} "
                                    f"to {res.start_index}")
            if res.event is None:
                # The watch saw no event up to start_index, so nothing before it is missed.
                wait_index = max(wait_index, res.start_index + 1)
                continue
            wait_index = res.event.modified_index + 1
            self._on_event(res.event)

    def _on_event(self, ev: WatchEvent) -> None:
        key = ev.key
        relevant = _under(key, self.prefix) or (ev.is_dir and _under(self.prefix, key))
        if not relevant:
            self.stats.watch_events_ignored += 1
            return
        self.stats.watch_events += 1
        deleted = ev.action in DELETE_ACTIONS
        if deleted:
            updates = self._state.apply_delete(key, is_dir=ev.is_dir)
        elif ev.is_dir:
            updates = []
        else:
            updates = self._state.apply_set(key, ev.value or "", ev.modified_index)
        self.stats.known_keys = len(self._state)
        self._deliver(updates)
        if _under(self.ready_key, key) and (deleted or not is_ready_value(ev.value)):
            raise _ResyncNeeded(f"{self.ready_key} is no longer true")

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, fn: Callable[[V2Api], _T]) -> _T:
        result = fn(self.api)
        if self._connected is not True:
            if self._connected is False:
                self.stats.reconnects += 1
                _log.info("Reconnected to etcd at %s", self.api.name)
            else:
                _log.info("Connected to etcd at %s", self.api.name)
            self._connected = True
        return result

    def _on_connection_failure(self, e: BaseException, rotate: bool = True) -> None:
        if self._connected is not False:
            # Log once per outage, not once per retry.
            _log.warning("etcd at %s failed (%r); keeping the current state and retrying "
                         "across %d endpoint(s)", self.api.name, e, len(self._apis))
        self._connected = False
        if rotate:
            self._api_idx = (self._api_idx + 1) % len(self._apis)

    def _need_resync(self) -> None:
        if self._ever_in_sync and self.stats.status == SyncStatus.IN_SYNC:
            self.stats.resyncs_started += 1
            self._set_status(SyncStatus.RESYNC)

    def _set_status(self, status: SyncStatus) -> None:
        if status == self.stats.status and (status != SyncStatus.WAIT_FOR_READY
                                            or self._status_sent):
            return
        self._status_sent = True
        self.stats.status = status
        _log.info("Datastore sync status: %s", status.value)
        self.callbacks.on_status(status)

    _status_sent = False

    def _deliver(self, updates: list[Update]) -> None:
        for i in range(0, len(updates), BATCH_SIZE):
            batch = updates[i:i + BATCH_SIZE]
            self.stats.updates_sent += len(batch)
            self.callbacks.on_updates(batch)
            gevent.sleep(0)

