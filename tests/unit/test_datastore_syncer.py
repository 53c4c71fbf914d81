"""EtcdSyncer's loop against a stateful fake etcd v2 (store, index, 1000-event history,
cluster ID, outage switch).  The real-etcd behaviour is covered in tests/fv/test_syncer.py."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator

import etcd
import gevent
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from felix.datastore import EtcdSyncer, SyncStatus
from felix.datastore.v2api import KeyRead, Snapshot, WatchEvent, WatchResult

PREFIX = "/calico/v1"
READY = f"{PREFIX}/Ready"
HISTORY = 1000
_cluster_ids = itertools.count(1)


class FakeEtcd:
    """The v2 store semantics the syncer relies on, minus HTTP."""

    def __init__(self) -> None:
        self.wipe()

    def wipe(self) -> None:
        self.cluster_id = f"cluster-{next(_cluster_ids)}"
        self.index = 0
        self.leaves: dict[str, tuple[int, str]] = {}
        self.history: deque[WatchEvent] = deque(maxlen=HISTORY)

    def _event(self, action: str, key: str, is_dir: bool, value: str | None) -> None:
        self.index += 1
        self.history.append(WatchEvent(action, key, is_dir, value, self.index))

    def set(self, key: str, value: str) -> None:
        self._event("set", key, False, value)
        self.leaves[key] = (self.index, value)

    def delete(self, key: str) -> None:
        if key in self.leaves:
            self._event("delete", key, False, None)
            del self.leaves[key]
            return
        below = [k for k in self.leaves if k.startswith(key + "/")]
        if below:
            self._event("delete", key, True, None)
            for k in below:
                del self.leaves[k]

    def under(self, prefix: str) -> dict[str, str]:
        return {k: v for k, (_, v) in self.leaves.items() if k.startswith(prefix + "/")}


class FakeEndpoint:
    """One endpoint of a FakeEtcd; V2Api surface.  ``down`` simulates an outage."""

    def __init__(self, store: FakeEtcd, name: str = "fake") -> None:
        self.store = store
        self.name = name
        self.down = False
        self.last_wait_index = 0  # the newest index a watch has asked for

    def _check(self) -> None:
        if self.down:
            raise etcd.EtcdConnectionFailed(f"{self.name} is down")

    def read_snapshot(self, prefix: str) -> Snapshot:
        self._check()
        s = self.store
        return Snapshot(s.index, s.cluster_id,
                        {k: v for k, v in s.leaves.items() if k.startswith(prefix + "/")})

    def read_key(self, key: str) -> KeyRead:
        self._check()
        entry = self.store.leaves.get(key)
        return KeyRead(entry[1] if entry else None, self.store.index, self.store.cluster_id)

    def watch(self, key: str, wait_index: int, timeout: float, *, recursive: bool) -> WatchResult:
        self._check()
        s = self.store
        self.last_wait_index = max(self.last_wait_index, wait_index)
        oldest = s.history[0].modified_index if s.history else s.index + 1
        if s.history and wait_index < oldest and len(s.history) == HISTORY:
            raise etcd.EtcdEventIndexCleared("cleared", {"index": s.index})
        for ev in s.history:
            if ev.modified_index < wait_index:
                continue
            hit = ev.key == key or (recursive and ev.key.startswith(key.rstrip("/") + "/"))
            hit = hit or (ev.is_dir and key.startswith(ev.key + "/"))
            if hit:
                return WatchResult(s.index, s.cluster_id, ev)
        start = s.index
        gevent.sleep(min(timeout, 0.002))
        self._check()
        return WatchResult(start, s.cluster_id, None)


class Recorder:
    def __init__(self) -> None:
        self.mirror: dict[str, str] = {}
        self.log: list[tuple[str, str | None]] = []
        self.statuses: list[SyncStatus] = []

    def on_updates(self, updates: list[tuple[str, str | None]]) -> None:
        for k, v in updates:
            self.log.append((k, v))
            if v is None:
                self.mirror.pop(k, None)
            else:
                self.mirror[k] = v

    def on_status(self, status: SyncStatus) -> None:
        self.statuses.append(status)


class Env:
    def __init__(self, n_endpoints: int = 1, **kwargs: object) -> None:
        self.store = FakeEtcd()
        self.endpoints = [FakeEndpoint(self.store, f"ep{i}") for i in range(n_endpoints)]
        self.rec = Recorder()
        opts: dict[str, object] = {"watch_timeout": 0.01, "resync_interval": 0,
                                   "max_backoff": 0.01}
        opts.update(kwargs)
        self.syncer = EtcdSyncer(["http://unused:2379"], self.rec, apis=self.endpoints,
                                 **opts)  # type: ignore[arg-type]
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self.greenlet = self.syncer.start()

    def run_until(self, cond: Callable[[], bool], limit: float = 2.0) -> None:
        with gevent.Timeout(limit, AssertionError("condition not reached")):
            while not cond():
                gevent.sleep(0.002)
                assert self.greenlet is not None and not self.greenlet.dead, \
                    self.greenlet.exception if self.greenlet else None

    def settled(self) -> bool:
        return (self.rec.statuses[-1:] == [SyncStatus.IN_SYNC]
                and self.rec.mirror == self.store.under(PREFIX))

    def stop(self) -> None:
        self.syncer.stop()


@pytest.fixture
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.stop()


def test_snapshot_then_watch(env: Env) -> None:
    env.store.set(f"{PREFIX}/config/A", "1")
    env.store.set(READY, "true")
    env.start()
    env.run_until(env.settled)
    env.store.set(f"{PREFIX}/config/B", "2")
    env.store.delete(f"{PREFIX}/config")
    env.run_until(env.settled)
    assert env.rec.log[-2:] == [(f"{PREFIX}/config/A", None), (f"{PREFIX}/config/B", None)] or \
        sorted(env.rec.log[-2:]) == [(f"{PREFIX}/config/A", None), (f"{PREFIX}/config/B", None)]
    assert env.syncer.stats.resyncs_started == 0


def test_waits_for_ready_and_sends_nothing_before(env: Env) -> None:
    env.store.set(f"{PREFIX}/config/A", "1")
    env.start()
    env.run_until(lambda: env.rec.statuses == [SyncStatus.WAIT_FOR_READY])
    gevent.sleep(0.05)
    assert env.rec.log == []
    env.store.set(READY, "true")
    env.run_until(env.settled)


def test_lost_window_resync_sends_only_differences(env: Env) -> None:
    env.store.set(f"{PREFIX}/config/A", "1")
    env.store.set(READY, "true")
    env.start()
    env.run_until(env.settled)
    mark = len(env.rec.log)
    # Between two watch calls (no yield here), 1,200 writes outside /calico age the index out.
    for i in range(1200):
        env.store.set(f"/other/{i % 5}", str(i))
    env.store.set(f"{PREFIX}/config/B", "2")
    env.run_until(env.settled)
    assert env.rec.log[mark:] == [(f"{PREFIX}/config/B", "2")]
    assert env.syncer.stats.resyncs_started == 1


def test_felix_status_writes_keep_the_window_current(env: Env) -> None:
    env.store.set(READY, "true")
    env.start()
    env.run_until(env.settled)
    for i in range(5000):
        env.store.set(f"/calico/felix/v1/host/h{i % 20}/status", str(i))
        if i % 200 == 199:
            # A writer slower than the syncer (as status writes are): wait until the watch has
            # moved past every write so far, whatever the machine's load.
            env.run_until(lambda: env.endpoints[0].last_wait_index > env.store.index)
    env.store.set(f"{PREFIX}/config/B", "2")
    env.run_until(env.settled)
    assert env.syncer.stats.resyncs_started == 0
    assert env.syncer.stats.watch_events_ignored > 0


def test_outage_keeps_state_and_fails_over() -> None:
    e = Env(n_endpoints=2)
    try:
        e.store.set(f"{PREFIX}/config/A", "1")
        e.store.set(READY, "true")
        e.start()
        e.run_until(e.settled)
        mark = len(e.rec.log)
        for ep in e.endpoints:
            ep.down = True
        e.run_until(lambda: e.rec.statuses[-1] == SyncStatus.RESYNC)
        gevent.sleep(0.05)
        assert e.rec.log[mark:] == []
        e.store.set(f"{PREFIX}/config/A", "changed")
        e.endpoints[1].down = False   # only the second endpoint comes back
        e.run_until(e.settled)
        assert e.rec.log[mark:] == [(f"{PREFIX}/config/A", "changed")]
        assert e.syncer.stats.reconnects == 1
    finally:
        e.stop()


def test_wiped_store_detected_while_watching(env: Env) -> None:
    for k in "ABC":
        env.store.set(f"{PREFIX}/config/{k}", k)
    env.store.set(READY, "true")
    env.start()
    env.run_until(env.settled)
    mark = len(env.rec.log)
    env.store.wipe()
    env.store.set(f"{PREFIX}/config/A", "A")
    env.store.set(f"{PREFIX}/config/B", "b2")
    env.store.set(READY, "true")
    env.run_until(env.settled)
    assert sorted(env.rec.log[mark:], key=str) == sorted(
        [(f"{PREFIX}/config/B", "b2"), (f"{PREFIX}/config/C", None)], key=str)


def test_new_cluster_with_a_higher_index_detected_by_cluster_id(env: Env) -> None:
    env.store.set(f"{PREFIX}/config/A", "1")
    env.store.set(READY, "true")
    env.start()
    env.run_until(env.settled)
    env.store.wipe()
    # The new store's index passes the old one, so only the cluster ID tells them apart;
    # its events would otherwise be taken as a continuation of the old history.
    for i in range(10):
        env.store.set(f"{PREFIX}/config/N{i}", str(i))
    env.store.set(READY, "true")
    env.run_until(env.settled)
    assert env.syncer.stats.resyncs_started == 1


def test_periodic_resync_is_quiet() -> None:
    e = Env(resync_interval=0.02)
    try:
        e.store.set(f"{PREFIX}/config/A", "1")
        e.store.set(READY, "true")
        e.start()
        e.run_until(lambda: e.syncer.stats.periodic_resyncs >= 3)
        assert e.rec.statuses == [SyncStatus.RESYNC, SyncStatus.IN_SYNC]
        assert len(e.rec.log) == 2
    finally:
        e.stop()


# A random history of datastore changes, outages, wipes and Ready flips: whenever things
# settle the consumer's view equals the store, and nothing is sent during an outage.
ops = st.lists(st.one_of(
    st.tuples(st.just("set"), st.sampled_from("abcd"), st.sampled_from("xyz"), st.sampled_from("12")),
    st.tuples(st.just("delete"), st.sampled_from("abcd"), st.sampled_from(["x", "y", ""]), st.just("")),
    st.tuples(st.just("outage"), st.just(""), st.just(""), st.just("")),
    st.tuples(st.just("wipe"), st.just(""), st.just(""), st.just("")),
    st.tuples(st.just("unready"), st.just(""), st.just(""), st.just("")),
    st.tuples(st.just("noise"), st.just(""), st.just(""), st.sampled_from(["10", "1100"])),
), max_size=12)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_random_histories_converge(history: list[tuple[str, str, str, str]]) -> None:
    e = Env()
    try:
        e.store.set(READY, "true")
        e.start()
        e.run_until(e.settled)
        for op, a, b, v in history:
            s = e.store
            if op == "set":
                s.set(f"{PREFIX}/{a}/{b}", v)
            elif op == "delete":
                s.delete(f"{PREFIX}/{a}" + (f"/{b}" if b else ""))
            elif op == "outage":
                mark = len(e.rec.log)
                e.endpoints[0].down = True
                gevent.sleep(0.02)
                assert e.rec.log[mark:] == []
                e.endpoints[0].down = False
            elif op == "wipe":
                kept = dict(s.leaves)
                s.wipe()
                for k, (_, val) in kept.items():
                    if k != READY:
                        s.set(k, val)
                s.set(READY, "true")
            elif op == "unready":
                s.set(READY, "false")
                gevent.sleep(0.01)
                s.set(READY, "true")
            elif op == "noise":
                for i in range(int(v)):
                    s.set(f"/other/{i % 3}", str(i))
            gevent.sleep(0.003)
        e.run_until(e.settled)
    finally:
        e.stop()
