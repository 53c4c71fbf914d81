"""The etcd v2 syncer against a real etcd 3.4 server.

The syncer runs in its own OS thread with its own gevent hub, so these tests work whether or
not the test process is monkey-patched: unpatched, the syncer thread blocks in real socket
reads (fine: only it waits) and the test thread writes to etcd meanwhile.  One test checks, in
a monkey-patched subprocess, that the long-poll does not block other greenlets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import etcd
import gevent
import pytest

from felix.datastore import EtcdSyncer, SyncStatus
from tests.fv.harness.etcd import EtcdServer, make_test_certs

pytestmark = pytest.mark.timeout(120)

PREFIX = "/calico/v1"
READY = f"{PREFIX}/Ready"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Recorder:
    """SyncerCallbacks that mirrors what the syncer sent, thread-safely."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mirror: dict[str, str] = {}
        self.log: list[tuple[str, str | None]] = []
        self.batches: list[int] = []
        self.statuses: list[SyncStatus] = []
        # Cleared by a test to hold the syncer inside on_updates (a slow consumer).
        self.proceed = threading.Event()
        self.proceed.set()

    def on_updates(self, updates: list[tuple[str, str | None]]) -> None:
        with self.lock:
            self.batches.append(len(updates))
            for key, value in updates:
                self.log.append((key, value))
                if value is None:
                    self.mirror.pop(key, None)
                else:
                    self.mirror[key] = value
        self.proceed.wait(timeout=60)

    def on_status(self, status: SyncStatus) -> None:
        with self.lock:
            self.statuses.append(status)

    def mark(self) -> int:
        with self.lock:
            return len(self.log)

    def since(self, mark: int) -> list[tuple[str, str | None]]:
        with self.lock:
            return list(self.log[mark:])

    @property
    def status(self) -> SyncStatus | None:
        with self.lock:
            return self.statuses[-1] if self.statuses else None


class Runner:
    """Runs one syncer in a thread with its own gevent hub."""

    def __init__(self, syncer: EtcdSyncer) -> None:
        self.syncer = syncer
        self.error: BaseException | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        assert self._started.wait(10)

    def _main(self) -> None:
        self._loop = gevent.get_hub().loop
        self._greenlet = self.syncer.start()
        self._started.set()
        self._greenlet.join()
        if self._greenlet.exception is not None:
            self.error = self._greenlet.exception

    def stop(self) -> None:
        # Cross-thread: the kill must run in the syncer's own hub.
        if self._thread.is_alive():
            self._loop.run_callback_threadsafe(lambda: self._greenlet.kill(block=False))
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "syncer thread did not stop"


def wait_for(cond: Callable[[], bool], what: str, server: EtcdServer | None = None,
             timeout: float = 20.0, runner: Runner | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runner is not None and runner.error is not None:
            raise AssertionError(f"syncer died: {runner.error!r}")
        if cond():
            return
        time.sleep(0.02)
    extra = f"\netcd log:\n{server.log_tail()}" if server is not None else ""
    raise AssertionError(f"timed out waiting for {what}{extra}")


def etcd_leaves(client: etcd.Client, prefix: str = PREFIX) -> dict[str, str]:
    try:
        result = client.read(prefix, recursive=True)
    except etcd.EtcdKeyNotFound:
        return {}
    return {n.key: n.value for n in result.leaves if not n.dir}


@pytest.fixture
def server() -> Iterator[EtcdServer]:
    srv = EtcdServer()
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        srv.cleanup()


class Harness:
    def __init__(self, server: EtcdServer) -> None:
        self.server = server
        self.client = server.client()
        self.rec = Recorder()
        self.runners: list[Runner] = []

    def start(self, **kwargs: object) -> EtcdSyncer:
        opts: dict[str, object] = {"watch_timeout": 1.0, "resync_interval": 0,
                                   "max_backoff": 0.5}
        opts.update(kwargs)
        endpoints = opts.pop("endpoints", [self.server.url])
        syncer = EtcdSyncer(endpoints, self.rec, **opts)  # type: ignore[arg-type]
        self.runners.append(Runner(syncer))
        return syncer

    def wait_in_sync(self, timeout: float = 20.0) -> None:
        wait_for(lambda: self.rec.status == SyncStatus.IN_SYNC, "in-sync", self.server,
                 timeout, self.runners[-1] if self.runners else None)

    def wait_mirror(self, timeout: float = 20.0) -> None:
        """Until the syncer's view equals etcd's."""
        def same() -> bool:
            with self.rec.lock:
                return self.rec.mirror == etcd_leaves(self.client)
        wait_for(same, "mirror == etcd", self.server, timeout,
                 self.runners[-1] if self.runners else None)

    def close(self) -> None:
        self.rec.proceed.set()
        for r in self.runners:
            r.stop()
        for r in self.runners:
            assert r.error is None, f"syncer died: {r.error!r}"


@pytest.fixture
def h(server: EtcdServer) -> Iterator[Harness]:
    harness = Harness(server)
    try:
        yield harness
    finally:
        harness.close()


def populate(client: etcd.Client, n: int, *, host: str = "h1", ready: bool = True) -> None:
    for i in range(n):
        client.write(f"{PREFIX}/host/{host}/workload/k8s/wl{i}/endpoint/eth0",
                     f'{{"n": {i}}}')
    client.write(f"{PREFIX}/policy/profile/web/rules", '{"inbound_rules": []}')
    if ready:
        client.write(READY, "true")


# -- snapshot ---------------------------------------------------------------------------------

def test_initial_snapshot_in_batches(h: Harness) -> None:
    populate(h.client, 2500)
    h.client.write("/calico/felix/v1/host/h1/status", "{}")   # outside the prefix
    syncer = h.start()
    h.wait_in_sync()
    with h.rec.lock:
        assert h.rec.mirror == etcd_leaves(h.client)
        assert len(h.rec.mirror) == 2502
        assert max(h.rec.batches) <= 1000 and len(h.rec.batches) >= 3
        assert h.rec.statuses == [SyncStatus.RESYNC, SyncStatus.IN_SYNC]
        assert not any(k.startswith("/calico/felix") for k, _ in h.rec.log)
    assert syncer.stats.snapshots == 1 and syncer.stats.resyncs_started == 0


def test_waits_for_ready(h: Harness) -> None:
    populate(h.client, 3, ready=False)
    h.start()
    wait_for(lambda: h.rec.status == SyncStatus.WAIT_FOR_READY, "wait-for-ready", h.server)
    time.sleep(0.5)
    assert h.rec.mark() == 0, "nothing may be sent before Ready"
    h.client.write(READY, "true")
    h.wait_in_sync()
    h.wait_mirror()


# -- watch ------------------------------------------------------------------------------------

def test_key_and_directory_deletes(h: Harness) -> None:
    populate(h.client, 5)
    h.client.write(f"{PREFIX}/host/h2/workload/k8s/a/endpoint/eth0", "a")
    h.client.write(f"{PREFIX}/host/h2/workload/k8s/b/endpoint/eth0", "b")
    h.client.write(f"{PREFIX}/host/h2/bird_ip", "10.0.0.2")
    syncer = h.start()
    h.wait_in_sync()

    mark = h.rec.mark()
    h.client.write(f"{PREFIX}/config/LogSeverityScreen", "debug")
    h.client.delete(f"{PREFIX}/host/h1/workload/k8s/wl0/endpoint/eth0")
    h.client.delete(f"{PREFIX}/host/h2", recursive=True, dir=True)
    h.client.write(f"{PREFIX}/host/h3/bird_ip", "10.0.0.3", ttl=1)
    h.wait_mirror()
    wait_for(lambda: (f"{PREFIX}/host/h3/bird_ip", None) in h.rec.since(mark),
             "TTL expiry", h.server)
    got = h.rec.since(mark)
    assert sorted(k for k, v in got if v is None) == sorted([
        f"{PREFIX}/host/h1/workload/k8s/wl0/endpoint/eth0",
        f"{PREFIX}/host/h2/workload/k8s/a/endpoint/eth0",
        f"{PREFIX}/host/h2/workload/k8s/b/endpoint/eth0",
        f"{PREFIX}/host/h2/bird_ip",
        f"{PREFIX}/host/h3/bird_ip",
    ])
    # Re-writing the same value is not a change.
    mark = h.rec.mark()
    h.client.write(f"{PREFIX}/config/LogSeverityScreen", "debug")
    h.client.write(f"{PREFIX}/config/Marker", "1")
    wait_for(lambda: h.rec.since(mark) != [], "marker", h.server)
    assert h.rec.since(mark) == [(f"{PREFIX}/config/Marker", "1")]
    assert syncer.stats.resyncs_started == 0


def test_lost_watch_window_resyncs_and_change_arrives(h: Harness) -> None:
    populate(h.client, 5)
    syncer = h.start()
    h.wait_in_sync()
    # Hold the syncer in on_updates so its watch is not registered while etcd's 1000-event
    # history moves past it.
    h.rec.proceed.clear()
    h.client.write(f"{PREFIX}/config/A", "1")
    wait_for(lambda: (f"{PREFIX}/config/A", "1") in h.rec.since(0), "first change", h.server)
    for i in range(1100):
        h.client.write(f"/unrelated/k{i % 7}", str(i))
    h.client.write(f"{PREFIX}/config/B", "2")
    mark = h.rec.mark()
    h.rec.proceed.set()
    wait_for(lambda: (f"{PREFIX}/config/B", "2") in h.rec.since(mark), "change after gap",
             h.server)
    h.wait_in_sync()
    assert syncer.stats.resyncs_started == 1
    # The resync sent only the difference.
    assert h.rec.since(mark) == [(f"{PREFIX}/config/B", "2")]


def test_unrelated_writes_while_idle_do_not_age_the_watch(h: Harness) -> None:
    populate(h.client, 5)
    syncer = h.start(watch_timeout=0.5)
    h.wait_in_sync()
    # Slow enough that each watch timeout sees a fresh X-Etcd-Index; 1,500 writes outside
    # /calico in total, far past the 1000-event window.
    for i in range(1500):
        h.client.write(f"/unrelated/k{i % 7}", str(i))
        if i % 300 == 299:
            time.sleep(0.7)
    h.client.write(f"{PREFIX}/config/C", "3")
    wait_for(lambda: (f"{PREFIX}/config/C", "3") in h.rec.since(0), "change", h.server)
    assert syncer.stats.resyncs_started == 0


def test_felix_status_writes_cause_no_resync(h: Harness) -> None:
    populate(h.client, 5)
    syncer = h.start()
    h.wait_in_sync()
    mark = h.rec.mark()
    for i in range(3000):
        h.client.write(f"/calico/felix/v1/host/h{i % 50}/status", f'{{"uptime": {i}}}',
                       ttl=90)
    h.client.write(f"{PREFIX}/config/D", "4")
    wait_for(lambda: (f"{PREFIX}/config/D", "4") in h.rec.since(mark), "change", h.server)
    assert syncer.stats.resyncs_started == 0, syncer.stats
    assert syncer.stats.snapshots == 1
    assert syncer.stats.watch_events_ignored > 0
    assert h.rec.since(mark) == [(f"{PREFIX}/config/D", "4")]


# -- outages and replaced datastores ----------------------------------------------------------

def test_etcd_restart_keeps_state_and_catches_up(h: Harness) -> None:
    populate(h.client, 20)
    syncer = h.start()
    h.wait_in_sync()
    before = dict(h.rec.mirror)
    mark = h.rec.mark()
    h.server.stop()
    wait_for(lambda: h.rec.status == SyncStatus.RESYNC, "resync status on outage", h.server)
    time.sleep(1.5)   # several failed retries
    assert h.rec.since(mark) == [], "nothing may be sent during an outage"
    assert h.rec.mirror == before
    h.server.start()
    h.client.write(f"{PREFIX}/config/E", "5")
    h.client.delete(f"{PREFIX}/host/h1/workload/k8s/wl3/endpoint/eth0")
    h.wait_in_sync()
    h.wait_mirror()
    assert sorted(h.rec.since(mark), key=str) == sorted([
        (f"{PREFIX}/config/E", "5"),
        (f"{PREFIX}/host/h1/workload/k8s/wl3/endpoint/eth0", None),
    ], key=str)
    assert syncer.stats.reconnects >= 1


def test_etcd_wiped_and_repopulated(h: Harness) -> None:
    h.client.write(f"{PREFIX}/config/Same", "s")
    h.client.write(f"{PREFIX}/config/Changed", "old")
    h.client.write(f"{PREFIX}/config/Vanished", "v")
    h.client.write(READY, "true")
    syncer = h.start()
    h.wait_in_sync()
    mark = h.rec.mark()
    h.server.wipe()
    client = h.server.client()
    h.client = client
    client.write(f"{PREFIX}/config/Same", "s")
    client.write(f"{PREFIX}/config/Changed", "new")
    client.write(f"{PREFIX}/config/Added", "a")
    client.write(READY, "true")
    h.wait_mirror()
    h.wait_in_sync()
    assert sorted(h.rec.since(mark), key=str) == sorted([
        (f"{PREFIX}/config/Changed", "new"),
        (f"{PREFIX}/config/Vanished", None),
        (f"{PREFIX}/config/Added", "a"),
    ], key=str)
    assert syncer.stats.snapshots == 2


def test_wipe_during_a_long_watch(server: EtcdServer) -> None:
    """A new cluster (new ID, index restarted) replaces the old one under a 3 s long-poll."""
    h = Harness(server)
    try:
        h.client.write(f"{PREFIX}/config/Old", "o")
        h.client.write(READY, "true")
        syncer = h.start(watch_timeout=3.0)
        h.wait_in_sync()
        old_id = server.cluster_id()
        server.wipe()
        assert server.cluster_id() != old_id
        client = server.client()
        h.client = client
        client.write(f"{PREFIX}/config/New", "n")
        client.write(READY, "true")
        h.wait_mirror()
        assert syncer.stats.snapshots == 2
    finally:
        h.close()


def test_ready_flipped_false_and_back(h: Harness) -> None:
    populate(h.client, 5)
    syncer = h.start()
    h.wait_in_sync()
    mark = h.rec.mark()
    h.client.write(READY, "false")
    wait_for(lambda: h.rec.status == SyncStatus.WAIT_FOR_READY, "wait-for-ready", h.server)
    h.client.write(f"{PREFIX}/config/F", "6")
    time.sleep(0.3)
    assert (f"{PREFIX}/config/F", "6") not in h.rec.since(mark)
    h.client.write(READY, "true")
    h.wait_in_sync()
    h.wait_mirror()
    assert h.rec.since(mark) == [(READY, "false"), (READY, "true"), (f"{PREFIX}/config/F", "6")] \
        or sorted(h.rec.since(mark)[1:]) == sorted([(READY, "true"), (f"{PREFIX}/config/F", "6")])
    assert syncer.stats.resyncs_started == 1
    with h.rec.lock:
        statuses = list(h.rec.statuses)
    assert statuses[-1] == SyncStatus.IN_SYNC and SyncStatus.WAIT_FOR_READY in statuses


def test_periodic_resync_sends_nothing_when_unchanged(h: Harness) -> None:
    populate(h.client, 50)
    syncer = h.start(resync_interval=0.3)
    h.wait_in_sync()
    mark = h.rec.mark()
    statuses = len(h.rec.statuses)
    wait_for(lambda: syncer.stats.periodic_resyncs >= 3, "periodic resyncs", h.server)
    assert h.rec.since(mark) == []
    assert len(h.rec.statuses) == statuses, "a periodic resync does not flap the status"
    h.client.write(f"{PREFIX}/config/G", "7")
    wait_for(lambda: (f"{PREFIX}/config/G", "7") in h.rec.since(mark), "change", h.server)
    assert syncer.stats.resyncs_started == 0


# -- endpoints, TLS, gevent -------------------------------------------------------------------

def test_fails_over_to_a_working_endpoint(h: Harness) -> None:
    populate(h.client, 3)
    dead = "http://127.0.0.1:1"   # nothing listens on port 1
    h.start(endpoints=[dead, h.server.url])
    h.wait_in_sync()
    h.wait_mirror()


def test_tls(tmp_path: object) -> None:
    certs = make_test_certs(str(tmp_path))
    with EtcdServer(tls_dir=certs) as srv:
        h = Harness(srv)
        try:
            populate(h.client, 3)
            h.start(ca_file=f"{certs}/ca.pem", cert_file=f"{certs}/client.pem",
                    key_file=f"{certs}/client-key.pem")
            h.wait_in_sync()
            h.wait_mirror()
            h.client.write(f"{PREFIX}/config/H", "8")
            h.wait_mirror()
        finally:
            h.close()


GEVENT_SCRIPT = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    import sys, time, gevent, etcd
    from felix.datastore import EtcdSyncer, SyncStatus
    url = sys.argv[1]
    got = []
    class CB:
        def on_updates(self, u): got.extend(u)
        def on_status(self, s): got.append(("status", s))
    s = EtcdSyncer([url], CB(), watch_timeout=5, resync_interval=0)
    g = s.start()
    worst = 0.0
    last = time.monotonic()
    end = last + 3
    while time.monotonic() < end:
        gevent.sleep(0.01)
        now = time.monotonic(); worst = max(worst, now - last); last = now
    assert ("status", SyncStatus.IN_SYNC) in got, got
    h, p = url.rsplit(":", 1)
    etcd.Client(host="127.0.0.1", port=int(p)).write("/calico/v1/config/X", "1")
    gevent.sleep(0.5)
    assert ("/calico/v1/config/X", "1") in got, got
    s.stop()
    print("WORST_GAP", worst)
""")


def test_long_poll_does_not_block_other_greenlets(server: EtcdServer) -> None:
    c = server.client()
    c.write(READY, "true")
    r = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT, server.url], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    worst = float(r.stdout.split("WORST_GAP")[1])
    # A blocking 5 s long-poll would show up as a ~5 s gap.
    assert worst < 1.0, r.stdout
