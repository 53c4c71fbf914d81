"""The demo's sandbox: a host namespace with etcd and felix inside, workload namespaces, and
a state file naming all of them, so ``python -m demo --cleanup`` can remove a kept or crashed
demo. Only what the state file names (and host namespaces with the demo's prefix) is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from typing import Any

from tests.fv.harness import etcd as etcd_harness
from tests.fv.harness import netns as netns_harness
from tests.fv.harness.datastore import Datastore
from tests.fv.harness.etcd import EtcdServer
from tests.fv.harness.felix import FelixProcess
from tests.fv.harness.netns import HostNamespace
from tests.fv.harness.workload import Workload

STATE_DIR = "/run/felix-demo"
STATE_FILE = os.path.join(STATE_DIR, "state.json")
HOST_PREFIX = "fdemo"
ETCD_PORT = 2379
METRICS_PORT = 9091
HEALTH_PORT = 9099


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


class Sandbox:
    def __init__(self) -> None:
        if os.path.exists(STATE_FILE):
            raise SystemExit(f"A demo is still set up ({STATE_FILE}); remove it first with "
                             "`python -m demo --cleanup` (or `make demo ARGS=--cleanup`).")
        self.state: dict[str, list[Any]] = {"namespaces": [], "dirs": []}
        self.host: HostNamespace | None = None
        self.etcd: EtcdServer | None = None
        self.felix: FelixProcess | None = None
        self.workloads: dict[str, Workload] = {}
        self.ds: Datastore | None = None

    def _save(self) -> None:
        os.makedirs(STATE_DIR, exist_ok=True)
        tmp = STATE_FILE + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=1)
        os.replace(tmp, STATE_FILE)

    def _track(self, kind: str, value: str) -> None:
        self.state[kind].append(value)
        self._save()

    def make_host(self) -> HostNamespace:
        self._save()  # before creating anything, so even a crash right now is cleanable
        self.host = HostNamespace(prefix=HOST_PREFIX)
        self._track("namespaces", self.host.name)
        return self.host

    def start_etcd(self) -> Datastore:
        """Call inside the host namespace."""
        self.etcd = EtcdServer(client_port=ETCD_PORT, peer_port=ETCD_PORT + 1)
        self._track("dirs", self.etcd.tmpdir)
        self.etcd.start()
        self.ds = Datastore(self.etcd.client())
        return self.ds

    def add_workload(self, name: str, ip: str) -> Workload:
        assert self.host is not None
        w = Workload(self.host, name, ip)
        self.workloads[name] = w
        self._track("namespaces", w.ns.name)
        self._track("dirs", w.tmp)
        return w

    def start_felix(self, hostname: str) -> FelixProcess:
        assert self.etcd is not None
        felix = FelixProcess(self.etcd.url, hostname, {
            "LogSeverityScreen": "INFO", "EndpointReportingEnabled": "true",
            "EndpointReportingDelaySecs": 0, "PrometheusMetricsEnabled": "true",
            "PrometheusMetricsHost": "127.0.0.1", "PrometheusMetricsPort": METRICS_PORT,
            "HealthEnabled": "true", "HealthHost": "127.0.0.1", "HealthPort": HEALTH_PORT,
            "IptablesRefreshInterval": 30})
        self._track("dirs", felix.workdir)
        self.felix = felix.start()
        return felix

    def detach(self) -> None:
        """--keep: leave everything running after this process exits (the harness would
        otherwise remove its namespaces and kill etcd at interpreter exit)."""
        for name in self.state["namespaces"]:
            netns_harness._created.discard(name)
        if self.etcd is not None:
            etcd_harness._live.discard(self.etcd)

    def teardown(self) -> None:
        if self.felix is not None:
            self.felix.stop()
        for w in self.workloads.values():
            with contextlib.suppress(Exception):
                w.stop()
        if self.etcd is not None:
            self.etcd.stop()
        remove(self.state)


def remove(state: dict[str, list[Any]]) -> list[str]:
    """Kills the processes inside the named namespaces (felix and etcd live in the host one,
    the workload agents in theirs), deletes the namespaces and directories, forgets the
    state. Returns the namespaces removed."""
    existing = netns_list()
    names = [n for n in state.get("namespaces", []) if n in existing]
    # A demo that crashed before saving its host namespace's name still has our prefix.
    names += [n for n in existing if n.startswith(HOST_PREFIX + "-") and n not in names]
    for name in names:
        netns_harness.delete_netns(name)
    for d in state.get("dirs", []):
        if d.startswith("/tmp/"):
            shutil.rmtree(d, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(STATE_FILE)
    return names


def cleanup() -> int:
    try:
        with open(STATE_FILE) as f:
            state = json.load(f)
    except FileNotFoundError:
        state = {}
    except ValueError:
        state = {}
    names = remove(state)
    print(f"felix demo: removed {len(names)} namespace(s){': ' + ', '.join(names) if names else ''}"
          " and their processes")
    return 0
