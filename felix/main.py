"""The ``felix`` command: argument parsing, start-up checks and exit statuses.

Exit statuses: 0 clean stop (SIGTERM/SIGINT; the dataplane is left in place), 1 fatal error
(an essential greenlet died), 2 bad configuration or a failed start-up check, 3 a datastore
config value changed (the supervisor restarts felix to apply it).
"""

from __future__ import annotations

# gevent must patch the standard library before anything else imports socket/threading.
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402

from felix import __version__, logs  # noqa: E402
from felix.config import EXIT_CONFIG_ERROR, Config, ConfigError, load_local  # noqa: E402

log = logging.getLogger("felix")

REQUIRED_TOOLS = ("iptables-restore", "iptables-save", "ipset", "ip")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="felix",
        description="Per-host network policy agent for the Calico v1 data model (etcd v2).")
    p.add_argument("--version", action="version", version=f"felix {__version__}")
    p.add_argument("-c", "--config-file", default=None,
                   help="INI config file (default /etc/calico/felix.cfg if present)")
    sub = p.add_subparsers(dest="command")
    d = sub.add_parser("diags", help="write a diagnostics tarball")
    d.add_argument("--output", "-o", default=None, help="tarball path (default /tmp/felix-diags-<time>.tar.gz)")
    d.add_argument("--config-file", "-c", dest="diags_config_file", default=None)
    return p


def startup_problems(config: Config) -> list[str]:
    """Checks whose failure makes felix refuse to start, as one-line messages."""
    problems = []
    if os.geteuid() != 0:
        problems.append("felix must run as root (it programs iptables, ipsets and routes)")
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            problems.append(f"required command {tool!r} not found on PATH")
    if not config.IgnoreLooseRPF:
        try:
            with open("/proc/sys/net/ipv4/conf/all/rp_filter") as f:
                if f.read().strip() == "2":
                    problems.append("net.ipv4.conf.all.rp_filter is 2 (loose), which lets "
                                    "workloads spoof addresses; set it to 1 or set "
                                    "IgnoreLooseRPF=true")
        except OSError:
            pass
    return problems


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "diags":
        from felix.diags import run_diags
        return run_diags(args.diags_config_file or args.config_file, args.output)
    try:
        config = load_local(args.config_file)
    except ConfigError as e:
        print(f"felix: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    problems = logs.setup(str(config.LogSeverityScreen), str(config.LogSeverityFile),
                          config.LogFilePath, str(config.LogSeveritySys))
    for problem in problems:
        log.warning("%s", problem)
    failed = startup_problems(config)
    if failed:
        for problem in failed:
            print(f"felix: {problem}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    log.info("Felix %s starting (pid %d) as host %s", __version__, os.getpid(), config.hostname)
    from felix.agent import Agent
    return Agent(config, config_file=args.config_file).run()


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
