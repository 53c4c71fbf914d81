"""The felix process as an operator meets it: config precedence against a real etcd, etcd
down at start, clean stop, restart-on-config-change, live log levels."""

from __future__ import annotations

import json
import signal
import time

from tests.fv.conftest import FelixEnv
from tests.fv.harness.probes import wait_until

IN_SYNC = "Datastore status: in-sync"


def test_config_precedence_env_file_host_global_default(env: FelixEnv) -> None:
    ds = env.ds
    for name, value in (("ReportingTTLSecs", "44"), ("MaxIpsetSize", "54"), ("IpInIpMtu", "1304"),
                        ("MetadataPort", "9004")):
        ds.config(name, value)
    for name, value in (("ReportingTTLSecs", "43"), ("MaxIpsetSize", "53"), ("IpInIpMtu", "1303")):
        ds.config(name, value, host=env.hostname)
    ds.config("IpInIpMtu", "1399", host="some-other-host")  # not ours: ignored
    felix = env.start_felix(config={"ReportingTTLSecs": 42, "MaxIpsetSize": 52},
                            env={"FELIX_REPORTINGTTLSECS": "41"})
    assert felix.wait_for_log(IN_SYNC, 30), felix.tail()
    out = felix.output()
    assert "Config ReportingTTLSecs = 41 (from environment)" in out
    assert f"Config MaxIpsetSize = 52 (from config file {felix.config_path})" in out
    assert f"Config IpInIpMtu = 1303 (from datastore /calico/v1/host/{env.hostname}/config)" in out
    assert "Config MetadataPort = 9004 (from datastore /calico/v1/config)" in out
    assert "Config HealthPort" not in out  # default: not listed
    # And the value is really used: the liveness key carries the env's TTL.
    key = f"/calico/felix/v1/host/{env.hostname}/status"
    wait_until(lambda: env.ds.get(key) is not None, 15, what="liveness key")
    node = env.ds.client.read(key)
    assert 0 < node.ttl <= 41
    assert set(json.loads(node.value)) == {"time", "uptime", "first_update"}


def test_etcd_down_at_start_logs_once_then_connects(env: FelixEnv) -> None:
    env.ds.ready()
    env.etcd.stop()
    felix = env.start_felix(ready=False)
    time.sleep(4)
    assert felix.running, felix.tail()
    complaints = [line for line in felix.output().splitlines()
                  if "etcd" in line.lower() and ("WARNING" in line or "ERROR" in line)]
    assert 1 <= len(complaints) <= 2, "\n".join(complaints)  # once, not once per retry
    env.etcd.start()
    assert felix.wait_for_log(IN_SYNC, 30), felix.tail()
    assert felix.running


def test_sigterm_is_a_clean_exit(env: FelixEnv) -> None:
    felix = env.start_felix()
    assert felix.wait_for_log(IN_SYNC, 30), felix.tail()
    felix.send_signal(signal.SIGTERM)
    assert felix.wait(20) == 0
    assert "dataplane left in place" in felix.output()


def test_datastore_config_change_exits_3_but_log_levels_apply_live(env: FelixEnv) -> None:
    felix = env.start_felix()
    assert felix.wait_for_log(IN_SYNC, 30), felix.tail()
    env.ds.config("LogSeverityFile", "WARNING")
    assert felix.wait_for_log("Log severities changed live: LogSeverityFile=WARNING", 15), felix.tail()
    assert felix.running
    env.ds.config("MaxIpsetSize", "4096", host=env.hostname)
    assert felix.wait(20) == 3
    assert "Config MaxIpsetSize changed" in felix.output()


def test_invalid_datastore_config_value_exits_2_with_one_clear_line(env: FelixEnv) -> None:
    env.ds.config("DefaultEndpointToHostAction", "ALLOW")
    felix = env.start_felix()
    assert felix.wait(30) == 2
    out = felix.output()
    assert "invalid value 'ALLOW' for DefaultEndpointToHostAction (from datastore /calico/v1/config)" in out
    assert "Traceback" not in out


def test_sigusr1_logs_a_summary(env: FelixEnv) -> None:
    felix = env.start_felix()
    assert felix.wait_for_log("Dataplane loop starting", 30), felix.tail()
    felix.send_signal(signal.SIGUSR1)
    assert felix.wait_for_log("Diagnostics: iptables chains", 10), felix.tail()
