"""Felix under runit, as calico-node runs it: the repo's runit/felix service (run + log/run)
copied into a temp service dir and supervised by a real `runsv` inside the test host namespace.

A datastore config change makes felix exit with status 3 and runit brings it back in sync; a
log-severity change applies live (same pid); SIGHUP re-reads the config file (README,
"Operations"): changed log severities apply live, any other change exits with status 3.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Iterator

import pytest

from tests.fv.conftest import FelixEnv
from tests.fv.harness.felix import FELIX_BIN
from tests.fv.harness.probes import wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IN_SYNC = "Datastore status: in-sync"
# runsv runs ./finish with the exit status after every run; recording it is the test's only
# addition to the shipped service.
FINISH = "#!/bin/sh\necho \"$1\" >> \"$(dirname \"$0\")/exits\"\n"


class RunitFelix:
    def __init__(self, env: FelixEnv) -> None:
        if shutil.which("runsv") is None or shutil.which("svlogd") is None:
            pytest.fail("runit not installed: run `make test`, which installs it")
        self.root = tempfile.mkdtemp(prefix="fvrunit-")
        self.svc = os.path.join(self.root, "felix")
        shutil.copytree(os.path.join(REPO, "runit", "felix"), self.svc)
        with open(os.path.join(self.svc, "finish"), "w") as f:
            f.write(FINISH)
        os.chmod(os.path.join(self.svc, "finish"), 0o755)
        self.log_dir = os.path.join(self.root, "log")
        self.config_path = os.path.join(self.root, "felix.cfg")
        self.write_config(LogSeverityScreen="DEBUG")
        # The calico-node environment the run script maps onto FELIX_* variables.
        env_vars = {k: v for k, v in os.environ.items() if not k.startswith("FELIX_")}
        env_vars.update(HOSTNAME=env.hostname, ETCD_ENDPOINTS=env.etcd.url, FELIX_BIN=FELIX_BIN,
                        FELIX_CONFIG_FILE=self.config_path, FELIX_LOG_DIR=self.log_dir)
        self.proc = subprocess.Popen(["runsv", self.svc], env=env_vars,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def write_config(self, **settings: object) -> None:
        base: dict[str, object] = {"LogFilePath": "none", "LogSeveritySys": "none",
                                   "StartupCleanupDelay": 2, "MetadataAddr": "none",
                                   "ReportingIntervalSecs": 5}
        base.update(settings)
        with open(self.config_path, "w") as f:
            f.write("[global]\n" + "".join(f"{k} = {v}\n" for k, v in base.items()))

    def pid(self) -> int | None:
        try:
            with open(os.path.join(self.svc, "supervise", "pid")) as f:
                text = f.read().strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None

    def log(self) -> str:
        try:
            with open(os.path.join(self.log_dir, "current"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def exits(self) -> list[str]:
        try:
            with open(os.path.join(self.svc, "exits")) as f:
                return f.read().split()
        except OSError:
            return []

    def wait_in_sync(self, count: int, timeout: float = 40) -> int:
        """Waits for the count-th in-sync in the log and returns the pid then running."""
        wait_until(lambda: self.log().count(IN_SYNC) >= count, timeout,
                   what=f"in-sync #{count} under runit")
        pid = self.pid()
        assert pid is not None
        return pid

    def stop(self) -> None:
        felix_pid = self.pid()
        subprocess.run(["sv", "-w", "10", "exit", self.svc], capture_output=True, timeout=20)
        subprocess.run(["sv", "-w", "5", "exit", os.path.join(self.svc, "log")],
                       capture_output=True, timeout=20)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if felix_pid is not None:  # should be gone; make sure
            try:
                os.kill(felix_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def runit(env: FelixEnv) -> Iterator[RunitFelix]:
    env.ds.ready()
    r = RunitFelix(env)
    try:
        yield r
    finally:
        r.stop()
        tail = "\n".join(r.log().splitlines()[-80:])
        print(f"\n----- runit felix log (tail) -----\n{tail}")  # shown if the test failed


def test_runit_restarts_on_datastore_config_change_and_log_levels_apply_live(
        env: FelixEnv, runit: RunitFelix) -> None:
    pid1 = runit.wait_in_sync(1)
    log = runit.log()
    # The run script mapped calico-node's variables and used the config file.
    assert f"as host {env.hostname}" in log
    assert f"Config FelixHostname = '{env.hostname}' (from environment)" in log
    assert "Config EtcdEndpoints" in log and "(from environment)" in log
    assert f"(from config file {runit.config_path})" in log
    # svlogd timestamps every line (-tt).
    assert log.splitlines()[0][:2] == "20"

    env.ds.config("LogSeverityFile", "WARNING", host=env.hostname)
    wait_until(lambda: "Log severities changed live: LogSeverityFile=WARNING" in runit.log(), 15,
               what="live log-severity change")
    time.sleep(1)
    assert runit.pid() == pid1 and runit.exits() == []

    env.ds.config("MaxIpsetSize", "4096")
    pid2 = runit.wait_in_sync(2)
    assert pid2 != pid1
    assert runit.exits() == ["3"]
    assert "Config MaxIpsetSize changed" in runit.log()
    assert "Config MaxIpsetSize = 4096 (from datastore /calico/v1/config)" in runit.log()
    time.sleep(2)
    assert runit.pid() == pid2 and runit.exits() == ["3"]  # stays up: no restart loop


def test_runit_sighup_rereads_config_file(env: FelixEnv, runit: RunitFelix) -> None:
    pid1 = runit.wait_in_sync(1)
    wait_until(lambda: "[DEBUG]" in runit.log(), 15, what="DEBUG lines at first")
    runit.write_config(LogSeverityScreen="INFO")
    subprocess.run(["sv", "hup", runit.svc], check=True, capture_output=True)
    wait_until(lambda: "Log severities changed live: LogSeverityScreen=INFO" in runit.log(),
               15, what="SIGHUP log-severity change")
    time.sleep(1)
    assert runit.pid() == pid1 and runit.exits() == []
    # DEBUG lines stop: the new screen severity really applies.
    lines = len(runit.log().splitlines())
    time.sleep(2)
    assert "[DEBUG]" not in "\n".join(runit.log().splitlines()[lines:])

    # Any other change in the file: exit 3, runit restarts felix with it.
    runit.write_config(LogSeverityScreen="INFO", ReportingTTLSecs=77)
    subprocess.run(["sv", "hup", runit.svc], check=True, capture_output=True)
    pid2 = runit.wait_in_sync(2)
    assert pid2 != pid1 and runit.exits() == ["3"]
    assert f"Config ReportingTTLSecs = 77 (from config file {runit.config_path})" in runit.log()
