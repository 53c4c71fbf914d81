"""The three etcd v2 calls the syncer makes, behind a narrow seam.

``EtcdV2Api`` does them against one endpoint with python-etcd; unit tests use a stateful fake
etcd with the same surface.  Errors are python-etcd's exception types in both.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any, Protocol

import etcd
import urllib3
from urllib3.exceptions import HTTPError, ReadTimeoutError

from felix.datastore.keystate import Leaves

# Failures that mean "this endpoint is unreachable / the connection broke".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    etcd.EtcdConnectionFailed, HTTPError, http.client.HTTPException, socket.error)

DELETE_ACTIONS = frozenset({"delete", "compareAndDelete", "expire"})


@dataclass(frozen=True)
class Snapshot:
    index: int                 # X-Etcd-Index of the read: watch from index + 1
    cluster_id: str | None
    leaves: Leaves             # key -> (modifiedIndex, value); empty if the prefix is absent


@dataclass(frozen=True)
class KeyRead:
    value: str | None          # None: key absent
    index: int
    cluster_id: str | None


@dataclass(frozen=True)
class WatchEvent:
    action: str
    key: str
    is_dir: bool
    value: str | None
    modified_index: int


@dataclass(frozen=True)
class WatchResult:
    start_index: int           # etcd's index when the watch was registered
    cluster_id: str | None
    event: WatchEvent | None   # None: long-poll timed out with no event


class V2Api(Protocol):
    @property
    def name(self) -> str: ...

    def read_snapshot(self, prefix: str) -> Snapshot: ...

    def read_key(self, key: str) -> KeyRead: ...

    def watch(self, key: str, wait_index: int, timeout: float, *, recursive: bool) -> WatchResult:
        """Long-poll for the first event at or after wait_index under key.

        Raises etcd.EtcdEventIndexCleared when wait_index fell out of etcd's event history.
        """
        ...


def collect_leaves(node: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """Flatten a recursive v2 GET response node into its leaf keys."""
    leaves: dict[str, tuple[int, str]] = {}
    stack = [node]
    while stack:
        n = stack.pop()
        if n.get("dir"):
            stack.extend(n.get("nodes", ()))
        else:
            leaves[n["key"]] = (int(n["modifiedIndex"]), n.get("value", ""))
    return leaves


def _raise_for_error(status: int, body: bytes) -> None:
    try:
        payload = json.loads(body.decode("utf-8"))
        payload["status"] = status
    except (ValueError, UnicodeError):
        payload = {"message": "Bad response", "cause": body[:200].decode("utf-8", "replace"),
                   "status": status}
    etcd.EtcdError.handle(payload)


class EtcdV2Api:
    def __init__(self, client: etcd.Client, *, connect_timeout: float = 5.0,
                 snapshot_timeout: float = 60.0) -> None:
        self.client = client
        self.connect_timeout = connect_timeout
        self.snapshot_timeout = snapshot_timeout

    @property
    def name(self) -> str:
        return str(self.client.base_uri)

    def read_snapshot(self, prefix: str) -> Snapshot:
        client = self.client
        try:
            # Raw response rather than client.read(): we need only the leaves, and building
            # an EtcdResult per node costs more than the read on big trees.
            resp = client.api_execute(client.key_endpoint + prefix, client._MGET,
                                      params={"recursive": "true", "quorum": "true"},
                                      timeout=self.snapshot_timeout)
        except etcd.EtcdKeyNotFound as e:
            payload = e.payload if isinstance(e.payload, dict) else {}
            return Snapshot(int(payload.get("index", 0)), client.expected_cluster_id, {})
        body = json.loads(resp.data.decode("utf-8"))
        return Snapshot(int(resp.headers.get("X-Etcd-Index", 0)),
                        resp.headers.get("X-Etcd-Cluster-Id"),
                        collect_leaves(body["node"]))

    def read_key(self, key: str) -> KeyRead:
        try:
            result = self.client.read(key, quorum=True)
        except etcd.EtcdKeyNotFound as e:
            payload = e.payload if isinstance(e.payload, dict) else {}
            return KeyRead(None, int(payload.get("index", 0)), self.client.expected_cluster_id)
        value = None if result.dir else result.value
        return KeyRead(value, int(result.etcd_index), self.client.expected_cluster_id)

    def watch(self, key: str, wait_index: int, timeout: float, *, recursive: bool) -> WatchResult:
        # Done on the client's pool directly, not client.watch(): a timed-out python-etcd
        # watch loses the response headers, and X-Etcd-Index of a watch that saw no event is
        # what lets the syncer move its index forward past unrelated writes.
        client = self.client
        fields = {"wait": "true", "waitIndex": str(wait_index)}
        if recursive:
            fields["recursive"] = "true"
        try:
            resp = client.http.request(
                "GET", client.base_uri + client.key_endpoint + key, fields=fields,
                timeout=urllib3.Timeout(connect=self.connect_timeout, read=timeout),
                retries=False, preload_content=False, headers=client._get_headers())
        except CONNECTION_ERRORS as e:
            # Includes a read timeout before the headers: etcd flushes a watch's headers at
            # once, so silence there means a hung server, not a quiet datastore.
            raise etcd.EtcdConnectionFailed(f"watch on {self.name} failed: {e!r}", cause=e)
        start_index = int(resp.headers.get("X-Etcd-Index", 0))
        cluster_id = resp.headers.get("X-Etcd-Cluster-Id")
        try:
            body = resp.data
        except ReadTimeoutError:
            return WatchResult(start_index, cluster_id, None)
        except CONNECTION_ERRORS as e:
            raise etcd.EtcdConnectionFailed(f"watch on {self.name} broke: {e!r}", cause=e)
        finally:
            resp.release_conn()
        if resp.status != 200:
            _raise_for_error(resp.status, body)
        try:
            node = json.loads(body.decode("utf-8"))
            action = node["action"]
            node = node["node"]
            event = WatchEvent(action, node["key"], bool(node.get("dir", False)),
                               node.get("value"), int(node["modifiedIndex"]))
        except (ValueError, KeyError, TypeError, UnicodeError) as e:
            raise etcd.EtcdException(f"bad watch response from {self.name}: {e!r}")
        return WatchResult(start_index, cluster_id, event)
