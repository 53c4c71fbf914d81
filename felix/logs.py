"""Logging sinks: screen (stderr), file and syslog, each with its own severity ("NONE" = off).

Every line carries time, level, pid and the module, so interleaved logs of a restart loop under
runit remain readable. Severities can be changed live (datastore log-level changes do not
restart felix).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

FORMAT = "%(asctime)s.%(msecs)03d [%(levelname)s][%(process)d] %(name)s %(lineno)d: %(message)s"
SYSLOG_FORMAT = "calico-felix[%(process)d]: %(levelname)s %(name)s %(lineno)d: %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"

_handlers: dict[str, logging.Handler] = {}

# Libraries that log every netlink message or loop step at DEBUG; their DEBUG/INFO would drown
# felix's own. A filter (not a logger level) because pyroute2 resets its loggers on import.
_CHATTY = ("pyroute2", "asyncio")


def _quiet_libraries(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not record.name.startswith(_CHATTY)


def _level(severity: str) -> int:
    return logging.CRITICAL + 10 if severity.upper() == "NONE" else getattr(logging, severity.upper())


def setup(screen: str = "INFO", file_severity: str = "INFO", file_path: str | None = None,
          sys_severity: str = "ERROR") -> list[str]:
    """(Re)configure the root logger. Returns problems that were not fatal (e.g. no syslog
    socket) so the caller can log them once logging works."""
    problems: list[str] = []
    root = logging.getLogger()
    for old in list(_handlers.values()):
        root.removeHandler(old)
        old.close()
    _handlers.clear()
    fmt = logging.Formatter(FORMAT, DATEFMT)

    # The screen handler always exists so a live change from "none" can turn it back on.
    h: logging.Handler = logging.StreamHandler(sys.stderr)
    h.setFormatter(fmt)
    _handlers["screen"] = h
    if file_path and file_severity.upper() != "NONE":
        try:
            os.makedirs(os.path.dirname(file_path) or ".", exist_ok=True)
            fh = logging.handlers.WatchedFileHandler(file_path)
            fh.setFormatter(fmt)
            _handlers["file"] = fh
        except OSError as e:
            problems.append(f"cannot open log file {file_path}: {e}")
    if sys_severity.upper() != "NONE":
        try:
            sh = logging.handlers.SysLogHandler(address="/dev/log")
            sh.setFormatter(logging.Formatter(SYSLOG_FORMAT))
            _handlers["sys"] = sh
        except OSError:
            pass  # no syslog daemon (containers): not worth a warning every start
    for handler in _handlers.values():
        root.addHandler(handler)
    # The etcd client and urllib3 log every failed request and retry; felix's syncer logs
    # datastore state changes itself, once each, so theirs would only flood an outage.
    for noisy in ("etcd", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    for handler in _handlers.values():
        handler.addFilter(_quiet_libraries)
    set_levels(screen, file_severity, sys_severity)
    return problems


def set_levels(screen: str, file_severity: str, sys_severity: str) -> None:
    levels = {"screen": _level(screen), "file": _level(file_severity), "sys": _level(sys_severity)}
    for name, h in _handlers.items():
        h.setLevel(levels[name])
    active = [levels[n] for n in _handlers] or [logging.CRITICAL + 10]
    logging.getLogger().setLevel(min(active))
