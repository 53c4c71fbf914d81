"""A real etcd 3.4 server (v2 API enabled) for functional tests.

Each EtcdServer owns a temp dir (data + log) and one etcd process on loopback. It can run in
the root namespace or, via ``ip netns exec``, inside a test's own network namespace. Every
instance is registered for an atexit kill so a crashed test run never leaves etcd behind.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import weakref
from types import TracebackType

import etcd

ETCD_BINARY = "/usr/bin/etcd"
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0

_live: "weakref.WeakSet[EtcdServer]" = weakref.WeakSet()


def _kill_all_at_exit() -> None:
    for server in list(_live):
        server.kill()
        server.cleanup()


atexit.register(_kill_all_at_exit)


def _free_loopback_port() -> int:
    # The port can be taken again between this probe and etcd's bind; start() retries on
    # that, so the race only costs a retry.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdStartError(RuntimeError):
    pass


class EtcdServer:
    def __init__(self, netns: str | None = None, *, client_port: int | None = None,
                 peer_port: int | None = None, tls_dir: str | None = None) -> None:
        """tls_dir, when given, holds ca.pem, server.pem and server-key.pem (see
        make_test_certs); the server then serves https and requires client certificates."""
        self.netns = netns
        self._fixed_ports = (client_port, peer_port)
        self.tls_dir = tls_dir
        self.tmpdir = tempfile.mkdtemp(prefix="felix-etcd-")
        self.data_dir = os.path.join(self.tmpdir, "data")
        self.log_path = os.path.join(self.tmpdir, "etcd.log")
        self.client_port, self.peer_port = self._pick_ports()
        # The cluster ID is a hash of the member's peer URLs and this token: a new token per
        # wipe() is what makes a wiped server a different cluster, as a real rebuild would be.
        self._cluster_token = f"felix-test-{uuid.uuid4().hex[:12]}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None
        _live.add(self)

    # -- ports and command line ------------------------------------------------------------

    def _pick_ports(self) -> tuple[int, int]:
        client, peer = self._fixed_ports
        if self.netns is not None:
            # A fresh namespace has nothing listening; the root namespace cannot probe it.
            return client or 2379, peer or 2380
        return client or _free_loopback_port(), peer or _free_loopback_port()

    @property
    def scheme(self) -> str:
        return "https" if self.tls_dir else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    def _command(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = [
            ETCD_BINARY,
            "--name", "felix-test",
            "--data-dir", self.data_dir,
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"felix-test={peer}",
            "--initial-cluster-state", "new",
            "--initial-cluster-token", self._cluster_token,
            "--enable-v2=true",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]
        if self.tls_dir:
            cmd += [
                "--cert-file", os.path.join(self.tls_dir, "server.pem"),
                "--key-file", os.path.join(self.tls_dir, "server-key.pem"),
                "--trusted-ca-file", os.path.join(self.tls_dir, "ca.pem"),
                "--client-cert-auth",
            ]
        if self.netns is not None:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        return cmd

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running():
            return
        attempts = 1 if (self.netns is not None or any(self._fixed_ports)) else 3
        for attempt in range(attempts):
            self._spawn()
            try:
                self._wait_healthy()
                return
            except EtcdStartError:
                in_use = "address already in use" in self.log_tail(50)
                self.kill()
                if not in_use or attempt == attempts - 1:
                    raise
                # Someone took our probed port; pick new ones.  Data dir stays as it is.
                self.client_port, self.peer_port = self._pick_ports()

    def _spawn(self) -> None:
        os.makedirs(self.tmpdir, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        finally:
            log.close()

    def _probe(self) -> bool:
        if self.netns is not None:
            probe = (f"import urllib.request,sys; "
                     f"sys.exit(0 if b'true' in urllib.request.urlopen("
                     f"'{self.url}/health', timeout=1).read() else 1)")
            if self.tls_dir:
                return "ready to serve client requests" in self.log_tail(200)
            r = subprocess.run(["ip", "netns", "exec", self.netns, sys.executable, "-c", probe],
                               capture_output=True, timeout=10)
            return r.returncode == 0
        if self.tls_dir:
            try:
                self.client().read("/")
                return True
            except Exception:
                return False
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
                return b"true" in resp.read()
        except OSError:
            return False

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running():
                raise EtcdStartError(f"etcd exited during start:\n{self.log_tail()}")
            if self._probe():
                return
            time.sleep(0.1)
        raise EtcdStartError(f"etcd not healthy after {_START_TIMEOUT}s:\n{self.log_tail()}")

    def _signal(self, sig: int) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            # Own session: with `ip netns exec` the group also holds etcd itself.
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._signal(signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            proc.wait(timeout=_STOP_TIMEOUT)
        self._proc = None

    def kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._signal(signal.SIGKILL)
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def wipe(self) -> None:
        """Stop, delete all data and start fresh: a new cluster ID and index from 1."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self._cluster_token = f"felix-test-{uuid.uuid4().hex[:12]}"
        self.start()

    def cluster_id(self) -> str:
        with urllib.request.urlopen(f"{self.url}/v2/keys/", timeout=5) as resp:
            return str(resp.headers["X-Etcd-Cluster-Id"])

    def cleanup(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------------

    def client(self, read_timeout: float = 10) -> etcd.Client:
        kwargs: dict[str, object] = {}
        if self.tls_dir:
            kwargs = {
                "cert": (os.path.join(self.tls_dir, "client.pem"),
                         os.path.join(self.tls_dir, "client-key.pem")),
                "ca_cert": os.path.join(self.tls_dir, "ca.pem"),
            }
        return etcd.Client(host="127.0.0.1", port=self.client_port, protocol=self.scheme,
                           read_timeout=read_timeout, **kwargs)

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 200 * lines))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> "EtcdServer":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self.cleanup()


def make_test_certs(directory: str) -> str:
    """Write a throwaway CA plus server (127.0.0.1) and client certificates into directory.

    Files: ca.pem, server.pem, server-key.pem, client.pem, client-key.pem.
    """
    os.makedirs(directory, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=felix-test-ca",
        "-keyout", "ca-key.pem", "-out", "ca.pem")
    ext = os.path.join(directory, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=felix-test-{name}",
            "-keyout", f"{name}-key.pem", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{name}.pem")
    return directory
