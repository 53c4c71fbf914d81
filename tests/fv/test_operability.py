"""Operability of the real felix process: status keys in etcd, /liveness and /readiness,
Prometheus metrics (names, format, counters that move), per-change programming latency, and
the `felix diags` bundle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

import etcd
from prometheus_client.parser import text_string_to_metric_families

from tests.fv.conftest import FelixEnv, free_port
from tests.fv.harness.felix import FELIX_BIN
from tests.fv.harness.probes import Check, wait_for, wait_until

STATUS_ROOT = "/calico/felix/v1/host"
IN_SYNC = "Datastore status: in-sync"

METRIC_NAMES = (
    "felix_active_local_endpoints", "felix_active_local_policies", "felix_active_local_selectors",
    "felix_active_local_tags", "felix_cluster_num_hosts", "felix_cluster_num_workload_endpoints",
    "felix_cluster_num_host_endpoints", "felix_calc_graph_update_time_seconds",
    "felix_int_dataplane_apply_time_seconds", "felix_int_dataplane_failures",
    "felix_iptables_restore_calls", "felix_iptables_restore_errors", "felix_iptables_save_calls",
    "felix_iptables_save_errors", "felix_iptables_lines_executed", "felix_iptables_chains",
    "felix_iptables_rules", "felix_ipset_calls", "felix_ipset_errors",
    "felix_ipset_lines_executed", "felix_ipsets_total", "felix_resyncs_started",
    "felix_resync_state", "felix_etcd_watch_events", "felix_etcd_watch_events_ignored",
    "felix_etcd_reconnects", "felix_endpoint_programming_seconds",
    "process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds",
)


def http_get(url: str, timeout: float = 3) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Scraper:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def families(self) -> dict[str, Any]:
        code, text = http_get(self.url)
        assert code == 200, text
        return {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, sample_name: str, **labels: str) -> float:
        _, text = http_get(self.url)
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        raise KeyError(sample_name)

    def wait_ready(self, timeout: float = 30) -> None:
        def up() -> bool:
            try:
                return http_get(self.url, 1)[0] == 200
            except OSError:
                return False
        wait_until(up, timeout, what=f"metrics at {self.url}")


def status_of(env: FelixEnv, key: Any) -> str | None:
    raw = env.ds.get(key.status_path)
    return None if raw is None else str(json.loads(raw)["status"])


def exists(env: FelixEnv, path: str) -> bool:
    try:
        env.ds.client.read(path)
        return True
    except etcd.EtcdKeyNotFound:
        return False


def test_status_keys_endpoint_status_stale_sweep_and_no_resyncs(env: FelixEnv) -> None:
    ds, host = env.ds, env.hostname
    # A stale key from before this felix: its endpoint does not exist.
    ghost = f"{STATUS_ROOT}/{host}/workload/k8s/ghost/endpoint/eth0"
    ds.set(ghost, json.dumps({"status": "up"}))
    ds.profile("open", inbound=[{}], outbound=[{}])
    a = env.workload("sa", "10.65.1.2")
    b = env.workload("sb", "10.65.1.3", create_interface=False)
    c = env.workload("sc", "10.65.1.4")
    ka = ds.endpoint(host, "sa", a.endpoint(profile_ids=("open",)))
    kb = ds.endpoint(host, "sb", b.endpoint(profile_ids=("open",)))
    kc = ds.endpoint(host, "sc", c.endpoint(profile_ids=("open",), state="inactive"))
    bad = a.endpoint(profile_ids=("open",))
    bad.update(name="calisd", state="bogus")
    kd = ds.endpoint(host, "sd", bad)
    port = free_port()
    felix = env.start_felix(config={
        "ReportingIntervalSecs": 1, "ReportingTTLSecs": 7, "EndpointReportingEnabled": "true",
        "EndpointReportingDelaySecs": 0, "PrometheusMetricsEnabled": "true",
        "PrometheusMetricsHost": "127.0.0.1", "PrometheusMetricsPort": port})
    assert felix.wait_for_log(IN_SYNC, 30), felix.tail()

    # Liveness: TTL'd status key plus the TTL-less last_reported_status, same JSON shape.
    live = f"{STATUS_ROOT}/{host}/status"
    last_path = f"{STATUS_ROOT}/{host}/last_reported_status"
    wait_until(lambda: ds.get(live) is not None and ds.get(last_path) is not None, 15,
               what="liveness keys")
    node = ds.client.read(live)
    assert node.ttl is not None and 0 < node.ttl <= 7
    body = json.loads(node.value)
    assert set(body) == {"time", "uptime", "first_update"}
    assert body["time"].endswith("Z") and isinstance(body["uptime"], (int, float))
    last = ds.client.read(last_path)
    assert last.ttl is None
    assert set(json.loads(last.value)) == {"time", "uptime", "first_update"}
    # Reported again every second: uptime grows, first_update turns false.
    first_uptime = body["uptime"]
    wait_until(lambda: json.loads(ds.get(live) or "{}").get("uptime", 0) > first_uptime, 10,
               what="a later liveness report")
    assert json.loads(ds.get(live) or "{}")["first_update"] is False

    # Endpoint status: up with its interface, down without / inactive, error when invalid.
    expected = {ka: "up", kb: "down", kc: "down", kd: "error"}
    wait_until(lambda: {k: status_of(env, k) for k in expected} == expected, 20,
               what=f"endpoint statuses {expected}")
    # The stale key goes after StartupCleanupDelay (2 s); ours stay.
    wait_until(lambda: ds.get(ghost) is None, 15, what="stale status key swept")
    wl_dir = f"{STATUS_ROOT}/{host}/workload/k8s"
    assert not exists(env, f"{wl_dir}/ghost"), "empty directories of the stale key left behind"
    assert all(status_of(env, k) == v for k, v in expected.items())

    # Many status writes (liveness every second, endpoint flaps) cause no resync.
    scraper = Scraper(port)
    scraper.wait_ready()
    ignored_before = scraper.value("felix_etcd_watch_events_ignored")
    for _ in range(3):
        b.create_interface()
        wait_until(lambda: status_of(env, kb) == "up", 15, what="sb up once its veth exists")
        b.delete_interface()
        wait_until(lambda: status_of(env, kb) == "down", 15, what="sb down without its veth")
    time.sleep(2)
    assert scraper.value("felix_resyncs_started") == 0
    assert scraper.value("felix_resync_state", state="in-sync") == 1
    # Felix did see its own writes come by on the watch (and ignored them).
    assert scraper.value("felix_etcd_watch_events_ignored") >= ignored_before + 6

    # Deleting an endpoint removes its status key; the invalid one's too.
    ds.delete_endpoint(host, "sa")
    ds.delete_endpoint(host, "sd")
    wait_until(lambda: status_of(env, ka) is None and status_of(env, kd) is None, 15,
               what="status keys of deleted endpoints removed")
    assert status_of(env, kc) == "down"
    assert not exists(env, f"{wl_dir}/sa") and not exists(env, f"{wl_dir}/sd")
    assert exists(env, f"{wl_dir}/sc/endpoint/eth0")
    assert "Traceback" not in felix.output()


def test_health_readiness_follows_sync_and_liveness_is_up(env: FelixEnv) -> None:
    port = free_port()
    env.ds.ready(False)
    felix = env.start_felix(config={"HealthEnabled": "true", "HealthHost": "127.0.0.1",
                                    "HealthPort": port}, ready=False)
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        try:
            return http_get(base + "/liveness", 1)[0] in (200, 503)
        except OSError:
            return False
    wait_until(answering, 20, what="health server")
    code, body = http_get(base + "/readiness")
    assert code == 503, body
    parsed = json.loads(body)
    assert parsed["ready"] is False and parsed["reasons"], parsed
    code, body = http_get(base + "/liveness")
    assert code == 200 and json.loads(body) == {"live": True, "problems": []}, body

    env.ds.ready(True)
    wait_until(lambda: http_get(base + "/readiness")[0] == 200, 20, what="readiness 200")
    assert json.loads(http_get(base + "/readiness")[1]) == {"ready": True, "reasons": []}
    assert http_get(base + "/liveness")[0] == 200
    assert http_get(base + "/nonsense")[0] == 404
    # Ready goes false again: felix stops trusting its view, so it is not ready meanwhile.
    env.ds.ready(False)
    wait_until(lambda: http_get(base + "/readiness")[0] == 503, 20, what="readiness 503 again")
    env.ds.ready(True)
    wait_until(lambda: http_get(base + "/readiness")[0] == 200, 20, what="readiness back")
    assert felix.running


def test_prometheus_metrics_and_per_change_programming_latency(env: FelixEnv) -> None:
    ds, host = env.ds, env.hostname
    ds.profile("p1", inbound=[{"src_tag": "p1"}], outbound=[{}], tags=["p1"])
    ds.profile("p2", inbound=[{"src_tag": "p2"}], outbound=[{}], tags=["p2"])
    ds.tier("t1", 10)
    ds.policy("t1", "allow-8080", "role == 'web'", order=1,
              inbound=[{"protocol": "tcp", "dst_ports": [8080]}], outbound=[{}])
    a = env.workload("ma", "10.65.2.2")
    b = env.workload("mb", "10.65.2.3")
    port = free_port()
    felix = env.start_felix(config={"PrometheusMetricsEnabled": "true",
                                    "PrometheusMetricsHost": "127.0.0.1",
                                    "PrometheusMetricsPort": port})
    assert felix.wait_for_log("Dataplane loop starting", 30), felix.tail()
    s = Scraper(port)
    s.wait_ready()
    wait_until(lambda: s.value("felix_int_dataplane_applies") >= 1, 15, what="first apply")
    fams = s.families()
    missing = [n for n in METRIC_NAMES if n not in fams]
    assert not missing, f"missing metrics: {missing}; have {sorted(fams)}"
    assert fams["felix_int_dataplane_apply_time_seconds"].type == "histogram"
    assert fams["felix_resyncs_started"].type == "unknown"  # untyped: exact Calico name

    def snap() -> dict[str, float]:
        return {n: s.value(n) for n in (
            "felix_iptables_restore_calls", "felix_iptables_lines_executed",
            "felix_ipset_calls", "felix_int_dataplane_apply_time_seconds_count",
            "felix_endpoint_programming_seconds_count", "felix_active_local_endpoints",
            "felix_active_local_policies", "felix_cluster_num_workload_endpoints",
            "felix_calc_graph_update_time_seconds_count", "felix_etcd_watch_events")}
    before = snap()
    assert before["felix_active_local_endpoints"] == 0
    assert before["felix_endpoint_programming_seconds_count"] == 0

    def programmed() -> float:
        return s.value("felix_endpoint_programming_seconds_count")

    # Change 1: a new endpoint.
    ds.endpoint(host, "ma", a.endpoint(profile_ids=("p1",), labels={"role": "web"}))
    wait_until(lambda: programmed() == 1, 15, what="1 programming observation")
    wait_for({Check(b, "tcp", a.ip, 8080): False}, timeout=5)  # b is not an endpoint yet
    # Change 2: its profile changes (it stays "up": still exactly one more observation).
    ds.endpoint(host, "ma", a.endpoint(profile_ids=("p2",), labels={"role": "web"}))
    wait_until(lambda: programmed() == 2, 15, what="2 programming observations")
    # Change 3: another endpoint.
    ds.endpoint(host, "mb", b.endpoint(profile_ids=("p2",)))
    wait_until(lambda: programmed() == 3, 15, what="3 programming observations")
    wait_for({Check(b, "tcp", a.ip, 8080): True, Check(b, "tcp", a.ip, 8081): False}, timeout=10)
    # Change 4: a label nobody selects on (no kernel write at all) still counts once.
    ds.endpoint(host, "mb", b.endpoint(profile_ids=("p2",), labels={"x": "y"}))
    wait_until(lambda: programmed() == 4, 15, what="4 programming observations")
    time.sleep(1.5)  # and nothing more trickles in (liveness, refreshes)
    assert programmed() == 4

    after = snap()
    for counter in ("felix_iptables_restore_calls", "felix_iptables_lines_executed",
                    "felix_ipset_calls", "felix_int_dataplane_apply_time_seconds_count",
                    "felix_calc_graph_update_time_seconds_count", "felix_etcd_watch_events"):
        assert after[counter] > before[counter], (counter, before[counter], after[counter])
    assert after["felix_active_local_endpoints"] == 2
    assert after["felix_active_local_policies"] == 1
    assert after["felix_cluster_num_workload_endpoints"] == 2
    assert s.value("felix_iptables_chains") > 0 and s.value("felix_ipsets_total") >= 1
    # Latencies are real times: under the 30 s bucket, at least some milliseconds in total.
    total = s.value("felix_endpoint_programming_seconds_sum")
    assert 0 < total < 30, total
    assert s.value("felix_endpoint_programming_seconds_bucket", le="+Inf") == 4
    assert s.value("felix_int_dataplane_failures") == 0
    assert "Traceback" not in felix.output()


def _members(path: str) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        out = {}
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name.split("/", 1)[1]] = f.read()
        return out


def test_diags_bundle_has_every_section_and_records_failures(env: FelixEnv) -> None:
    work = tempfile.mkdtemp(prefix="fvdiags-")
    log_path = os.path.join(work, "felix.log")
    env.ds.profile("open", inbound=[{}], outbound=[{}], tags=["open"])
    w = env.workload("da", "10.65.3.2")
    env.ds.endpoint(env.hostname, "da", w.endpoint(profile_ids=("open",)))
    felix = env.start_felix(config={"LogFilePath": log_path, "LogSeverityFile": "INFO"})
    assert felix.wait_for_log("Dataplane loop starting", 30), felix.tail()
    wait_until(lambda: "10.65.3.2" in env.host.exec("ip", "route").stdout, 15, what="route")

    # A broken conntrack on PATH: its sections fail, the rest of the bundle is still written.
    fakebin = os.path.join(work, "bin")
    os.mkdir(fakebin)
    with open(os.path.join(fakebin, "conntrack"), "w") as f:
        f.write("#!/bin/sh\necho 'conntrack: simulated failure' >&2\nexit 7\n")
    os.chmod(os.path.join(fakebin, "conntrack"), 0o755)
    secret = os.path.join(work, "etcd-key.pem")
    with open(secret, "w") as f:
        f.write("SECRET-KEY-MATERIAL\n")
    out = os.path.join(work, "bundle.tar.gz")
    run_env = dict(os.environ, PATH=fakebin + ":" + os.environ["PATH"])
    p = subprocess.run([FELIX_BIN, "diags", "--config-file", felix.config_path, "--output", out],
                       capture_output=True, text=True, env=run_env, timeout=90)
    assert p.returncode == 0, p.stderr
    assert out in p.stdout
    m = _members(out)
    for name in ("config.json", "iptables-legacy-save.txt", "ip6tables-legacy-save.txt",
                 "iptables-nft-save.txt", "ip6tables-nft-save.txt", "ipset-list.txt",
                 "ip-route-v4.txt", "ip-route-v6.txt", "ip-addr.txt", "ip-link.txt",
                 "felix-stats.txt", "etcd-calico.txt", "errors.txt"):
        assert name in m, (name, sorted(m))
    logs = [n for n in m if n.startswith("logs/")]
    assert logs and b"Felix" in m[logs[0]], sorted(m)
    # This host's state, not the machine's: felix's chains, ipsets, the workload's route.
    backend_saves = m["iptables-legacy-save.txt"] + m["iptables-nft-save.txt"]
    assert b"cali-tw-calida" in backend_saves
    assert b"cali4" in m["ipset-list.txt"]
    assert b"10.65.3.2" in m["ip-route-v4.txt"] and b"calida" in m["ip-link.txt"]
    assert f"/calico/v1/host/{env.hostname}/workload/k8s/da/endpoint/eth0".encode() \
        in m["etcd-calico.txt"]
    stats = m["felix-stats.txt"].decode()
    # Only this host's felix is asked (others on the machine live in other namespaces).
    assert stats.splitlines()[0] == f"SIGUSR1 sent to felix pids: {felix.proc.pid}", stats  # type: ignore[union-attr]
    assert "Diagnostics: iptables chains" in stats, stats
    errors = m["errors.txt"].decode()
    assert "conntrack-count.txt" in errors and "simulated failure" in errors, errors
    assert "conntrack-count.txt" not in m

    # Secrets are redacted in the bundle's config.
    out2 = os.path.join(work, "bundle2.tar.gz")
    p = subprocess.run([FELIX_BIN, "diags", "-c", felix.config_path, "-o", out2],
                       capture_output=True, text=True, timeout=90,
                       env=dict(os.environ, FELIX_ETCDKEYFILE=secret))
    assert p.returncode == 0, p.stderr
    m2 = _members(out2)
    assert b"conntrack" in m2["conntrack-count.txt"] or m2["conntrack-count.txt"].strip().isdigit()
    config = json.loads(m2["config.json"])
    assert config["EtcdKeyFile"] == "<redacted>"
    assert all(secret.encode() not in data and b"SECRET-KEY-MATERIAL" not in data
               for data in m2.values())
    assert felix.running
    felix.send_signal(signal.SIGTERM)
    assert felix.wait(20) == 0
