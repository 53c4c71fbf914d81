"""Status written back to etcd: felix's liveness (with a TTL) and per-endpoint status.

Writes go under /calico/felix/v1, outside the /calico/v1 tree felix watches, and the syncer
tracks etcd's index from every response, so these writes never age felix's own watch into a
resync. etcd being down never blocks anything else: each greenlet here just retries.
"""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import datetime, timezone
from typing import Callable

import etcd
import gevent
import gevent.event

from felix.model.keys import FELIX_STATUS_ROOT, HostEndpointKey, WorkloadEndpointKey

log = logging.getLogger(__name__)

_GONE = object()  # "no desired status" (None means "delete the key")


class StatusReporter:
    def __init__(self, client_factory: Callable[[], etcd.Client], hostname: str, *,
                 interval: float, ttl: int, endpoint_reporting: bool, endpoint_delay: float,
                 started: float, in_sync: Callable[[], bool]) -> None:
        self._client_factory = client_factory
        self._client: etcd.Client | None = None
        self.hostname = hostname
        self.interval = interval
        self.ttl = ttl
        self.endpoint_reporting = endpoint_reporting
        self.endpoint_delay = endpoint_delay
        self.started = started
        self.in_sync = in_sync
        self._first = True
        self._desired: dict[object, str | None] = {}  # endpoint key → status (None = delete)
        self._written: dict[object, str] = {}
        self._last_write: dict[object, float] = {}
        self._wake = gevent.event.Event()
        self.swept = False
        self.writes = 0
        self.write_errors = 0
        self.last_heartbeat = time.monotonic()

    @property
    def client(self) -> etcd.Client:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    # --- liveness
    def run_liveness(self) -> None:
        if self.interval <= 0:
            while True:  # disabled: still an essential greenlet that checks in
                self.last_heartbeat = time.monotonic()
                gevent.sleep(5)
        while True:
            self.last_heartbeat = time.monotonic()
            self.report_liveness()
            # Jitter so a fleet restarted together does not write in lock step.
            gevent.sleep(self.interval * random.uniform(0.9, 1.1))

    def report_liveness(self) -> bool:
        body = json.dumps({
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "uptime": round(time.time() - self.started, 1),
            "first_update": self._first,
        })
        base = f"{FELIX_STATUS_ROOT}/host/{self.hostname}"
        try:
            self.client.write(f"{base}/status", body, ttl=self.ttl)
            self.client.write(f"{base}/last_reported_status", body)
        except Exception as e:  # etcd down or erroring: retry next interval
            self.write_errors += 1
            log.debug("Liveness report failed: %r", e)
            return False
        self.writes += 2
        self._first = False
        return True

    # --- endpoint status
    def on_endpoint_status(self, key: object, status: str | None) -> None:
        if not self.endpoint_reporting:
            return
        self._desired[key] = status
        self._wake.set()

    def run_endpoints(self, sweep_after: Callable[[], bool]) -> None:
        while True:
            self.last_heartbeat = time.monotonic()
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if not self.endpoint_reporting:
                continue
            if not self.swept and sweep_after():
                self.swept = self._sweep_stale()
            retry_in = self._flush()
            if retry_in is not None:
                gevent.sleep(min(retry_in, 1.0))
                self._wake.set()

    def _flush(self) -> float | None:
        """Write what changed, at most one write per endpoint per endpoint_delay; returns how
        long until a deferred write is due (None if nothing is pending)."""
        now = time.monotonic()
        next_due: float | None = None
        for key, status in list(self._desired.items()):
            if self._desired.get(key, _GONE) != status:
                continue  # changed while an earlier write yielded: the next pass has it
            if self._written.get(key) == status:
                del self._desired[key]
                continue
            due = self._last_write.get(key, 0.0) + self.endpoint_delay
            if status is not None and due > now:
                next_due = min(next_due or 1e9, due - now)
                continue
            path = _status_path(key)
            try:
                if status is None:
                    try:
                        self.client.delete(path)
                    except etcd.EtcdKeyNotFound:
                        pass
                    self._remove_empty_parents(path)
                    self._written.pop(key, None)
                else:
                    self.client.write(path, json.dumps({"status": status}))
                    self._written[key] = status
                self.writes += 1
                self._last_write[key] = now
                # The write yielded to other greenlets: a newer status may have arrived for
                # this endpoint meanwhile, and it must not be dropped with this one.
                if self._desired.get(key, _GONE) == status:
                    del self._desired[key]
                else:
                    self._wake.set()
            except Exception as e:
                self.write_errors += 1
                log.debug("Endpoint status write for %s failed: %r", path, e)
                next_due = 1.0
        return next_due

    def _sweep_stale(self) -> bool:
        """Delete endpoint status keys of endpoints we no longer have (e.g. deleted while
        felix was down). Runs once, after the first in-sync."""
        base = f"{FELIX_STATUS_ROOT}/host/{self.hostname}"
        try:
            result = self.client.read(base, recursive=True)
        except etcd.EtcdKeyNotFound:
            return True
        except Exception as e:
            log.debug("Stale status sweep failed, will retry: %r", e)
            return False
        known = {_status_path(k) for k in (*self._written, *self._desired)}
        removed = 0
        for node in result.leaves:
            path = node.key
            if node.dir or path in known:
                continue
            if "/workload/" in path or path.startswith(f"{base}/endpoint/"):
                try:
                    self.client.delete(path)
                    removed += 1
                except etcd.EtcdKeyNotFound:
                    pass
                except Exception:
                    return False
                self._remove_empty_parents(path)
        if removed:
            log.info("Removed %d stale endpoint status keys", removed)
        return True

    def _remove_empty_parents(self, path: str) -> None:
        """An endpoint's status key sits in per-workload directories; remove those it leaves
        empty, so the status tree lists only endpoints that exist (etcd refuses to delete a
        non-empty directory, which ends the walk)."""
        stop = f"{FELIX_STATUS_ROOT}/host/{self.hostname}"
        parent = path.rsplit("/", 1)[0]
        while parent.startswith(stop + "/") and parent.count("/") > stop.count("/") + 1:
            try:
                self.client.delete(parent, dir=True)
            except (etcd.EtcdDirNotEmpty, etcd.EtcdKeyNotFound):
                return
            except Exception as e:  # best effort: the key itself is gone already
                log.debug("Could not remove empty status directory %s: %r", parent, e)
                return
            parent = parent.rsplit("/", 1)[0]


def _status_path(key: object) -> str:
    assert isinstance(key, (WorkloadEndpointKey, HostEndpointKey)), key
    return key.status_path
