"""Time for the etcd v2 syncer to snapshot 10,000 endpoint keys + 1,000 profile keys from a
real etcd into on_updates (populating etcd is not timed).

    .venv/bin/python bench/snapshot_syncer.py [--endpoints N] [--profiles M]
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from felix.datastore import EtcdSyncer, SyncStatus  # noqa: E402
from tests.fv.harness.etcd import EtcdServer  # noqa: E402


def populate(server: EtcdServer, n_endpoints: int, n_profiles: int) -> None:
    writes: list[tuple[str, str]] = []
    for i in range(n_endpoints):
        ep = {"state": "active", "name": f"cali{i:011d}", "mac": "ee:ee:ee:ee:ee:ee",
              "profile_ids": [f"prof{i % n_profiles}"], "labels": {"app": f"a{i % 50}"},
              "ipv4_nets": [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}/32"]}
        writes.append((f"/calico/v1/host/host{i % 100}/workload/k8s/wl{i}/endpoint/eth0",
                       json.dumps(ep)))
    for i in range(n_profiles // 2):
        writes.append((f"/calico/v1/policy/profile/prof{i}/rules",
                       json.dumps({"inbound_rules": [{"action": "allow", "src_tag": f"prof{i}"}],
                                   "outbound_rules": [{"action": "allow"}]})))
        writes.append((f"/calico/v1/policy/profile/prof{i}/tags", json.dumps([f"prof{i}"])))
    writes.append(("/calico/v1/Ready", "true"))
    clients = [server.client() for _ in range(8)]

    def put(idx_kv: tuple[int, tuple[str, str]]) -> None:
        idx, (k, v) = idx_kv
        clients[idx % 8].write(k, v)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, enumerate(writes[:-1])))
    put((0, writes[-1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", type=int, default=10_000)
    ap.add_argument("--profiles", type=int, default=1_000, help="profile keys (rules + tags)")
    args = ap.parse_args()
    with EtcdServer() as server:
        t0 = time.monotonic()
        populate(server, args.endpoints, args.profiles)
        print(f"populated {args.endpoints + args.profiles + 1} keys in "
              f"{time.monotonic() - t0:.1f}s (not timed)")
        got = 0
        done = gevent.event.Event()
        first_update: list[float] = []

        class CB:
            def on_updates(self, updates: list[tuple[str, str | None]]) -> None:
                nonlocal got
                if not first_update:
                    first_update.append(time.monotonic())
                got += len(updates)

            def on_status(self, status: SyncStatus) -> None:
                if status == SyncStatus.IN_SYNC:
                    done.set()

        syncer = EtcdSyncer([server.url], CB(), resync_interval=0)
        t0 = time.monotonic()
        syncer.start()
        done.wait(120)
        elapsed = time.monotonic() - t0
        syncer.stop()
        print(f"snapshot: {got} keys to on_updates in {elapsed * 1000:.0f} ms "
              f"(first batch after {(first_update[0] - t0) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
