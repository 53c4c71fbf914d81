"""Functional-test fixtures: a throwaway host namespace with a real etcd inside it, the real
felix process, and workloads on cali* veths. The test process enters the host namespace for
the test's duration, so its sockets, etcd and felix all live there; nothing outside the
namespaces a test created is touched, and everything is removed even when the test fails."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from typing import Any, Iterator

import pytest

from tests.fv.harness.datastore import Datastore
from tests.fv.harness.etcd import EtcdServer
from tests.fv.harness.felix import FelixProcess
from tests.fv.harness.netns import HostNamespace
from tests.fv.harness.workload import Workload

HOSTNAME = "fvhost"


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("functional tests need root (network namespaces, iptables)")
    for tool in ("ip", "iptables-legacy-restore", "iptables-nft-restore", "ipset", "etcd"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not installed: run `make test`, which installs it")


class FelixEnv:
    def __init__(self, host: HostNamespace, etcd: EtcdServer) -> None:
        self.host = host
        self.etcd = etcd
        self.ds = Datastore(etcd.client())
        self.hostname = HOSTNAME
        self.felixes: list[FelixProcess] = []
        self.workloads: list[Workload] = []

    @property
    def felix(self) -> FelixProcess:
        return self.felixes[-1]

    def start_felix(self, config: dict[str, Any] | None = None,
                    env: dict[str, str] | None = None, ready: bool = True) -> FelixProcess:
        if ready:
            self.ds.ready()
        f = FelixProcess(self.etcd.url, self.hostname, config, env).start()
        self.felixes.append(f)
        return f

    def workload(self, name: str, ip: str, ip6: str | None = None, **kw: Any) -> Workload:
        w = Workload(self.host, name, ip, ip6, **kw)
        self.workloads.append(w)
        return w

    def teardown(self) -> None:
        for f in self.felixes:
            f.stop()
        for w in self.workloads:
            w.stop()
        self.etcd.stop()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def env(request: pytest.FixtureRequest) -> Iterator[FelixEnv]:
    _need_root()
    host = HostNamespace()
    fenv: FelixEnv | None = None
    try:
        with host.entered():
            etcd = EtcdServer()
            etcd.start()
            fenv = FelixEnv(host, etcd)
            try:
                yield fenv
            finally:
                failed = getattr(request.node, "rep_call", None)
                if failed is not None and failed.failed:
                    for i, f in enumerate(fenv.felixes):
                        sys.stdout.write(f"\n----- felix #{i} output (tail) -----\n{f.tail(200)}\n")
                    sys.stdout.write(f"\n----- etcd log (tail) -----\n{etcd.log_tail()}\n")
                fenv.teardown()
    finally:
        host.delete()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
