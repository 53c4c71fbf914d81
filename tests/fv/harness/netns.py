"""Throwaway network namespaces for functional tests and benchmarks.

Every namespace made here is registered and removed at teardown (and at interpreter exit, as a
last resort), with the processes inside it killed first. Only namespaces created here are ever
touched.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
    from felix.dataplane.runner import CommandResult

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_created: set[str] = set()


def sh(*argv: str, check: bool = True, input: str | None = None,
       timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _setns_fd(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns({what}): {os.strerror(err)}")


class Netns:
    """One named namespace (``ip netns add``)."""

    def __init__(self, prefix: str = "fv") -> None:
        self.name = f"{prefix}-{secrets.token_hex(4)}"
        sh("ip", "netns", "add", self.name)
        _created.add(self.name)
        self.exec("ip", "link", "set", "lo", "up")

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def exec(self, *argv: str, check: bool = True, input: str | None = None,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *argv, check=check, input=input,
                  timeout=timeout)

    def popen(self, argv: Sequence[str], **kw: object) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kw)  # type: ignore[call-overload]

    def sysctl(self, key: str, value: str) -> None:
        self.exec("sysctl", "-qw", f"{key}={value}")

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Move this (single-threaded) process into the namespace for the block, so sockets,
        subprocesses and servers started inside it live there."""
        # Remember where we came from by fd: /proc/1 may not be ours to read in a sandbox.
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.path, os.O_RDONLY)
        try:
            _setns_fd(target, self.path)
            try:
                yield
            finally:
                _setns_fd(home, "original namespace")
        finally:
            os.close(target)
            os.close(home)

    def pids(self) -> list[int]:
        out = sh("ip", "netns", "pids", self.name, check=False).stdout.split()
        return [int(p) for p in out if p.isdigit()]

    def delete(self) -> None:
        if self.name not in _created:
            return
        delete_netns(self.name)


def delete_netns(name: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        out = sh("ip", "netns", "pids", name, check=False).stdout.split()
        pids = [int(p) for p in out if p.isdigit()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + 3
        while time.time() < deadline and sh("ip", "netns", "pids", name, check=False).stdout.strip():
            time.sleep(0.05)
    sh("ip", "netns", "del", name, check=False)
    _created.discard(name)


@atexit.register
def _cleanup_all() -> None:
    for name in list(_created):
        delete_netns(name)


class HostNamespace(Netns):
    """A test "host": lo up, forwarding on, DAD off (so link-locals are usable at once) and a
    default route through a veth whose peer stays in the same namespace — proxy ARP for
    169.254.1.1 on cali* interfaces only answers when the host has a route to it elsewhere."""

    def __init__(self, prefix: str = "fvh") -> None:
        super().__init__(prefix)
        for key, value in (("net.ipv4.ip_forward", "1"),
                           ("net.ipv6.conf.all.forwarding", "1"),
                           ("net.ipv6.conf.all.accept_dad", "0"),
                           ("net.ipv6.conf.default.accept_dad", "0"),
                           ("net.ipv4.conf.all.rp_filter", "1"),
                           ("net.ipv4.conf.default.rp_filter", "1")):
            self.sysctl(key, value)
        self.exec("ip", "link", "add", "fvdef0", "type", "veth", "peer", "name", "fvdef1")
        self.exec("ip", "link", "set", "fvdef0", "up")
        self.exec("ip", "link", "set", "fvdef1", "up")
        self.exec("ip", "addr", "add", "198.18.255.1/30", "dev", "fvdef0")
        self.exec("ip", "route", "add", "default", "via", "198.18.255.2", "dev", "fvdef0")
        self.exec("ip", "-6", "addr", "add", "fd99:ffff::1/64", "dev", "fvdef0", "nodad")
        self.exec("ip", "-6", "route", "add", "default", "via", "fd99:ffff::2", "dev", "fvdef0")


class NetnsRunner:
    """A felix CommandRunner that runs every command inside one namespace (``ip netns exec``),
    so a driver under test programs that namespace's kernel state only."""

    def __init__(self, ns: str) -> None:
        from felix.dataplane.runner import SubprocessRunner
        self.ns = ns
        self._inner = SubprocessRunner()

    def run(self, argv: Sequence[str], input: str | None = None,
            timeout: float | None = None) -> "CommandResult":
        return self._inner.run(["ip", "netns", "exec", self.ns, *argv], input, timeout)

    def check(self, *argv: str) -> str:
        res = self.run(argv, timeout=30)
        assert res.returncode == 0, f"{argv}: {res.stderr}"
        return res.stdout
