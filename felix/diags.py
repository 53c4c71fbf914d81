"""``felix diags``: a tarball with what is needed to debug a host, each collector's failure
recorded in the bundle (``errors.txt``) instead of aborting the rest."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from typing import Callable

from felix.config import Config, ConfigError, load_local

COMMANDS: tuple[tuple[str, list[str]], ...] = (
    ("iptables-legacy-save.txt", ["iptables-legacy-save", "-c"]),
    ("ip6tables-legacy-save.txt", ["ip6tables-legacy-save", "-c"]),
    ("iptables-nft-save.txt", ["iptables-nft-save", "-c"]),
    ("ip6tables-nft-save.txt", ["ip6tables-nft-save", "-c"]),
    ("ipset-list.txt", ["ipset", "list"]),
    ("ip-route-v4.txt", ["ip", "-4", "route", "show", "table", "all"]),
    ("ip-route-v6.txt", ["ip", "-6", "route", "show", "table", "all"]),
    ("ip-addr.txt", ["ip", "addr"]),
    ("ip-link.txt", ["ip", "-d", "link"]),
    ("ip-neigh.txt", ["ip", "neigh", "show", "proxy"]),
    ("conntrack-count.txt", ["conntrack", "-C"]),
    ("conntrack-stats.txt", ["conntrack", "-S"]),
)
LOG_CANDIDATES = ("/var/log/calico/felix/current",)


class Bundle:
    def __init__(self, path: str) -> None:
        self.tar = tarfile.open(path, "w:gz")
        self.errors: list[str] = []
        self.prefix = "felix-diags/"

    def add(self, name: str, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        info = tarfile.TarInfo(self.prefix + name)
        info.size = len(raw)
        info.mtime = int(time.time())
        self.tar.addfile(info, io.BytesIO(raw))

    def collect(self, name: str, fn: Callable[[], str | bytes]) -> None:
        try:
            self.add(name, fn())
        except Exception as e:  # any collector may fail; record it and go on
            self.errors.append(f"{name}: {type(e).__name__}: {e}")

    def close(self) -> None:
        self.add("errors.txt", "\n".join(self.errors) + ("\n" if self.errors else "none\n"))
        self.tar.close()


def _run(argv: list[str]) -> Callable[[], str]:
    def fn() -> str:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()[:500]}")
        return p.stdout
    return fn


def _tail(path: str, max_bytes: int = 5_000_000) -> Callable[[], bytes]:
    def fn() -> bytes:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read()
    return fn


def _etcd_dump(config: Config) -> Callable[[], str]:
    def fn() -> str:
        from felix.datastore import make_client
        client = make_client(list(config.etcd_endpoints), **config.etcd_tls)
        out = []
        for root in ("/calico/v1", "/calico/felix/v1"):
            try:
                for node in client.read(root, recursive=True).leaves:
                    if not node.dir:
                        out.append(f"{node.key}\t{node.value}")
            except Exception as e:
                out.append(f"# {root}: {type(e).__name__}: {e}")
        return "\n".join(out) + "\n"
    return fn


def _same_netns(pid: str) -> bool:
    """Felix processes of *this* host share our network namespace; felixes of other
    (sandboxed) hosts on the same machine are none of this bundle's business."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
    except OSError:
        return False


def _felix_stats(log_path: str | None) -> Callable[[], str]:
    """Ask this host's running felix for its SIGUSR1 summary and copy it out of its log."""
    def fn() -> str:
        pids = subprocess.run(["pgrep", "-f", "bin/(calico-)?felix( |$)"], capture_output=True,
                              text=True).stdout.split()
        me = str(os.getpid())
        sent = []
        for pid in pids:
            if pid == me or not _same_netns(pid):
                continue
            try:
                os.kill(int(pid), signal.SIGUSR1)
                sent.append(pid)
            except OSError:
                pass
        out = ["SIGUSR1 sent to felix pids: " + (", ".join(sent) or "none running")]
        if sent and log_path:
            time.sleep(1.0)  # let it log the summary
            try:
                tail = _tail(log_path, 1_000_000)().decode(errors="replace").splitlines()
            except OSError as e:
                out.append(f"(could not read {log_path}: {e})")
            else:
                lines = [line for line in tail if "Diagnostics: " in line]
                out.extend(lines[-40:] or [f"(no summary found in {log_path} yet)"])
        elif sent:
            out.append("(felix logs to no file here: the summary is in its stderr/svlogd log)")
        return "\n".join(out) + "\n"
    return fn


def run_diags(config_file: str | None, output: str | None) -> int:
    output = output or time.strftime("/tmp/felix-diags-%Y%m%d-%H%M%S.tar.gz")
    try:
        config = load_local(config_file)
    except ConfigError as e:
        print(f"felix diags: {e}", file=sys.stderr)
        return 2
    bundle = Bundle(output)
    bundle.collect("config.json", lambda: json.dumps(config.redacted(), indent=1) + "\n")
    for name, argv in COMMANDS:
        bundle.collect(name, _run(argv))
    bundle.collect("felix-stats.txt", _felix_stats(
        str(config.LogFilePath) if config.LogFilePath else None))
    # The configured log file always (its absence is worth an error line); runit's svlogd
    # files only where they exist.
    logs = [p for p in (config.LogFilePath,) if p] + [p for p in LOG_CANDIDATES if os.path.exists(p)]
    for path in logs:
        bundle.collect("logs/" + str(path).strip("/").replace("/", "_"), _tail(str(path)))
    bundle.collect("etcd-calico.txt", _etcd_dump(config))
    bundle.close()
    print(f"felix diags: wrote {output} ({len(bundle.errors)} collector(s) failed; see errors.txt)")
    return 0
