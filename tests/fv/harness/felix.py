"""Runs the real ``felix`` process (the installed console script) inside the current network
namespace — the caller enters the test host namespace first — with a generated config file,
capturing its output for failure reports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Mapping

FELIX_BIN = os.path.join(os.path.dirname(sys.executable), "felix")


class FelixProcess:
    def __init__(self, etcd_url: str, hostname: str, config: Mapping[str, object] | None = None,
                 env: Mapping[str, str] | None = None, workdir: str | None = None) -> None:
        self.workdir = workdir or tempfile.mkdtemp(prefix="fvfelix-")
        self.hostname = hostname
        self.config_path = os.path.join(self.workdir, "felix.cfg")
        self.output_path = os.path.join(self.workdir, "felix.out")
        settings: dict[str, object] = {
            "EtcdEndpoints": etcd_url,
            "FelixHostname": hostname,
            "LogFilePath": "none",
            "LogSeverityScreen": "DEBUG",
            "LogSeveritySys": "none",
            "StartupCleanupDelay": 2,
            "IptablesRefreshInterval": 10,
            "MetadataAddr": "none",
            "ReportingIntervalSecs": 5,
        }
        settings.update(config or {})
        with open(self.config_path, "w") as f:
            f.write("[global]\n")
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._out = None

    def start(self) -> "FelixProcess":
        self._out = open(self.output_path, "ab")
        self.proc = subprocess.Popen([FELIX_BIN, "--config-file", self.config_path],
                                     stdout=self._out, stderr=subprocess.STDOUT, env=self.env)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out:
            self._out.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def output(self) -> str:
        try:
            with open(self.output_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def tail(self, lines: int = 120) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for_log(self, text: str, timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if not self.running:
                return text in self.output()
            time.sleep(0.05)
        return False
