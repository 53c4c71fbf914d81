"""One benchmark environment: a throwaway host namespace entered by this process, a real etcd
inside it, bulk-created cali* veths (peers in one shared "workloads" namespace, so felix sees
only its side), bulk datastore population, and the real felix process with metrics and health
served on loopback inside the namespace."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Mapping

from bench import workload_gen as gen
from tests.fv.harness.datastore import Datastore
from tests.fv.harness.etcd import EtcdServer
from tests.fv.harness.felix import FelixProcess
from tests.fv.harness.netns import HostNamespace, Netns, sh

HOSTNAME = "benchhost"
METRICS_PORT = 9091
HEALTH_PORT = 9099


def ip_batch(lines: list[str], netns: str | None = None) -> None:
    if not lines:
        return
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-force", "-batch", "-"]
    sh(*argv, input="\n".join(lines) + "\n", timeout=300)


class BenchEnv:
    def __init__(self, backend: str = "legacy") -> None:
        self.backend = backend
        self.host = HostNamespace("bnh")
        self.wl = Netns("bnw")
        self._stack = contextlib.ExitStack()
        self.etcd: EtcdServer | None = None
        self.felix: FelixProcess | None = None
        self.veths: set[str] = set()

    def __enter__(self) -> "BenchEnv":
        try:
            self._stack.enter_context(self.host.entered())
            self.etcd = EtcdServer()
            self.etcd.start()
            self.ds = Datastore(self.etcd.client())
            self.ds.ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.felix is not None:
            self.felix.stop()
        if self.etcd is not None:
            self.etcd.stop()
            self.etcd.cleanup()
        self._stack.close()
        self.wl.delete()
        self.host.delete()

    # -- kernel side -----------------------------------------------------------------------

    def add_veths(self, names: list[str]) -> None:
        """cali* veths in the host namespace, peers up in the workloads namespace (oper-up)."""
        new = [n for n in names if n not in self.veths]
        host_lines, peer_lines = [], []
        for n in new:
            peer = "p" + n[4:]
            host_lines.append(f"link add {n} type veth peer name {peer} netns {self.wl.name}")
            host_lines.append(f"link set {n} up")
            peer_lines.append(f"link set {peer} up")
        ip_batch(host_lines)
        ip_batch(peer_lines, self.wl.name)
        self.veths.update(new)

    # -- datastore -------------------------------------------------------------------------

    def write_many(self, items: list[tuple[str, str]], threads: int = 8) -> float:
        """Write (path, value) pairs concurrently; returns seconds taken."""
        assert self.etcd is not None
        t0 = time.monotonic()
        clients = [self.etcd.client(read_timeout=30) for _ in range(threads)]

        def work(k: int) -> None:
            c = clients[k]
            for path, value in items[k::threads]:
                c.write(path, value)
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(work, range(threads)))
        return time.monotonic() - t0

    def endpoint_path(self, host: str, workload: str) -> str:
        from felix.model import keys
        return keys.WorkloadEndpointKey(host, "k8s", workload, "eth0").path

    def populate(self, rng: random.Random, n_local: int, n_remote: int, n_policies: int,
                 profile_rules: int = 3) -> dict[str, dict[str, Any]]:
        """Profiles, tiers, tiered policies, remote endpoints and local endpoints (with their
        veths created first, as a CNI plugin would). Returns the local endpoints by ifname."""
        from felix.model import keys
        items: list[tuple[str, str]] = []
        for p in range(gen.N_PROFILES):
            pid = f"prof{p}"
            items.append((keys.ProfileRulesKey(pid).path, json.dumps(
                {"inbound_rules": gen.rules(rng, profile_rules),
                 "outbound_rules": [{"action": "allow"}]})))
            items.append((keys.ProfileTagsKey(pid).path, json.dumps([f"tag{p % 50}"])))
            items.append((keys.ProfileLabelsKey(pid).path, json.dumps({"team": f"team{p % 10}"})))
        for t in range(gen.N_TIERS):
            items.append((keys.TierKey(f"tier{t}").path, json.dumps({"order": t})))
        for j in range(n_policies):
            items.append((keys.PolicyKey(f"tier{j % gen.N_TIERS}", f"pol{j}").path, json.dumps(
                {"selector": gen.selector(rng), "order": j,
                 "inbound_rules": gen.rules(rng, 4) + [
                     {"action": "allow", "protocol": "tcp", "dst_ports": [7777],
                      "src_selector": gen.B6_SELECTOR}],
                 "outbound_rules": gen.rules(rng, 2)})))
        for i in range(n_remote):
            items.append((self.endpoint_path(f"rhost{i % 100}", f"rpod{i}"), json.dumps(
                gen.endpoint(rng, f"calir{i:06d}", gen.remote_ip(i)))))
        items.append((keys.ProfileRulesKey(gen.SHARED_PROFILE).path,
                      json.dumps(gen.shared_profile_rules(61000))))
        local: dict[str, dict[str, Any]] = {}
        for i in range(n_local):
            name = gen.local_ifname(i)
            local[name] = gen.endpoint(rng, name, gen.local_ip(i), [
                gen.SHARED_PROFILE, f"prof{rng.randrange(gen.N_PROFILES)}"])
        self.add_veths(list(local))
        items += [(self.endpoint_path(HOSTNAME, n), json.dumps(ep)) for n, ep in local.items()]
        self.write_many(items)
        return local

    def write_endpoint(self, ifname: str, data: Mapping[str, Any]) -> None:
        self.ds.set(self.endpoint_path(HOSTNAME, ifname), json.dumps(data))

    def delete_endpoint(self, ifname: str) -> None:
        self.ds.delete(self.endpoint_path(HOSTNAME, ifname))

    # -- felix -----------------------------------------------------------------------------

    def start_felix(self, extra: Mapping[str, object] | None = None) -> FelixProcess:
        assert self.etcd is not None
        config: dict[str, object] = {
            "LogSeverityScreen": "WARNING",
            "IptablesBackend": self.backend,
            "PrometheusMetricsEnabled": "true", "PrometheusMetricsHost": "127.0.0.1",
            "PrometheusMetricsPort": METRICS_PORT,
            "HealthEnabled": "true", "HealthHost": "127.0.0.1", "HealthPort": HEALTH_PORT,
            "IptablesRefreshInterval": 60, "StartupCleanupDelay": 2,
            "ReportingIntervalSecs": 30,
        }
        config.update(extra or {})
        # As installed in production, with bytecode caches: otherwise (this shell exports
        # PYTHONDONTWRITEBYTECODE) every start recompiles and B1/B2 count it.
        self.felix = FelixProcess(self.etcd.url, HOSTNAME, config,
                                  env={"PYTHONDONTWRITEBYTECODE": ""},
                                  workdir=tempfile.mkdtemp(prefix="benchfelix-")).start()
        return self.felix

    def stop_felix(self) -> None:
        if self.felix is not None:
            self.felix.stop()
            self.felix = None

    @property
    def felix_pid(self) -> int:
        assert self.felix is not None and self.felix.proc is not None
        return self.felix.proc.pid
