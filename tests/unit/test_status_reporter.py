"""StatusReporter against a stateful fake etcd client: a status that changes while the previous
write is in flight (the write yields to other greenlets) must still be written."""

from __future__ import annotations

import json
from typing import Callable

import etcd

from felix.model.keys import WorkloadEndpointKey
from felix.status.reporter import StatusReporter

KEY = WorkloadEndpointKey("h1", "k8s", "wl", "eth0")


class FakeEtcd:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.during_write: Callable[[], None] | None = None

    def write(self, path: str, value: str, ttl: int | None = None) -> None:
        hook, self.during_write = self.during_write, None
        if hook is not None:
            hook()  # what another greenlet does while this write waits on the network
        self.data[path] = value

    def delete(self, path: str, **kw: object) -> None:
        if path not in self.data:
            raise etcd.EtcdKeyNotFound()
        del self.data[path]

    def read(self, path: str, **kw: object) -> object:
        raise etcd.EtcdKeyNotFound()


def reporter(client: FakeEtcd) -> StatusReporter:
    return StatusReporter(lambda: client, "h1", interval=0, ttl=90, endpoint_reporting=True,  # type: ignore[arg-type,return-value]
                          endpoint_delay=0, started=0.0, in_sync=lambda: True)


def test_status_changed_during_a_write_is_not_lost() -> None:
    client = FakeEtcd()
    r = reporter(client)
    r.on_endpoint_status(KEY, "down")
    client.during_write = lambda: r.on_endpoint_status(KEY, "up")
    r._flush()
    assert json.loads(client.data[KEY.status_path]) == {"status": "down"}
    r._flush()  # the wake-up the change caused
    assert json.loads(client.data[KEY.status_path]) == {"status": "up"}


def test_removal_and_unchanged_status() -> None:
    client = FakeEtcd()
    r = reporter(client)
    r.on_endpoint_status(KEY, "up")
    r._flush()
    writes = r.writes
    r.on_endpoint_status(KEY, "up")
    r._flush()
    assert r.writes == writes  # written only on change
    r.on_endpoint_status(KEY, None)
    r._flush()
    assert KEY.status_path not in client.data
