"""The datastore-agnostic face of a syncer: what the rest of felix sees.

The etcd v2 syncer implements it today; an etcd v3 syncer can implement the same surface
later without touching the calculation side.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import gevent

# (etcd key, value); value None means the key was deleted.
Update = tuple[str, "str | None"]


class SyncStatus(str, enum.Enum):
    WAIT_FOR_READY = "wait-for-ready"
    RESYNC = "resync"
    IN_SYNC = "in-sync"


class SyncerCallbacks(Protocol):
    def on_updates(self, updates: list[tuple[str, str | None]]) -> None:
        """Leaf keys only; value None = deleted.  Called from the syncer greenlet."""

    def on_status(self, status: SyncStatus) -> None:
        """Called only when the status changes."""


@dataclass
class SyncerStats:
    """Counters for tests, metrics and logs.  Mutated only by the syncer greenlet."""

    status: SyncStatus = SyncStatus.WAIT_FOR_READY
    snapshots: int = 0          # completed full reads (first, resyncs and periodic)
    resyncs_started: int = 0    # resyncs because the view could be stale (not periodic ones)
    periodic_resyncs: int = 0
    watch_events: int = 0       # events under the synced prefix
    watch_events_ignored: int = 0  # events elsewhere (e.g. felix status writes)
    reconnects: int = 0         # successful responses after a connection failure
    updates_sent: int = 0       # (key, value) pairs passed to on_updates
    known_keys: int = 0


class Syncer(Protocol):
    stats: SyncerStats

    def start(self) -> gevent.Greenlet: ...

    def stop(self) -> None: ...
