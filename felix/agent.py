"""The running agent: wires datastore → model → calculation → dataplane, supervises the
essential greenlets and handles signals.

Configuration from the datastore is only known after the first snapshot, and it shapes the
parser (interface prefixes) and the calculation (hostname, actions), so updates are buffered
until the first in-sync, the final config is resolved, and only then is the pipeline built.
"""

from __future__ import annotations

import logging
import re
import signal
import time
from typing import TYPE_CHECKING, Callable

import gevent
import gevent.event
import gevent.queue

from felix import logs
from felix.config import (EXIT_CONFIG_CHANGED, EXIT_CONFIG_ERROR, EXIT_FATAL, Config,
                          ConfigError, changed_params, PARAMS_BY_LOWER)
from felix.datastore import EtcdSyncer, SyncStatus, make_client
from felix.metrics import Metrics
from felix.status.reporter import StatusReporter

if TYPE_CHECKING:
    from felix.dataplane.interfaces import InterfaceEvent
    from felix.pipeline import Pipeline

log = logging.getLogger(__name__)

_GLOBAL_CONFIG_RE = re.compile(r"^/calico/v1/config/([^/]+)$")
_HOST_CONFIG_RE = re.compile(r"^/calico/v1/host/([^/]+)/config/([^/]+)$")


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Agent:
    def __init__(self, config: Config, config_file: str | None = None) -> None:
        self.local_config = config
        self.config = config
        self.config_file = config_file
        self.hostname = config.hostname
        self.started = time.time()
        self._updates: gevent.queue.Queue = gevent.queue.Queue()
        self._exit = gevent.event.AsyncResult()
        self._global_cfg: dict[str, str] = {}
        self._host_cfg: dict[str, str] = {}
        self.pipeline: "Pipeline | None" = None
        self.sync_status = SyncStatus.WAIT_FOR_READY
        self.in_sync_once = False
        self._greenlets: list[gevent.Greenlet] = []
        self._heartbeats: dict[str, float] = {"pipeline": time.monotonic()}
        self.in_sync_at: float | None = None
        self.metrics = Metrics(self)
        self.status = StatusReporter(
            lambda: make_client(list(config.etcd_endpoints), **config.etcd_tls),
            self.hostname, interval=float(config.ReportingIntervalSecs),
            ttl=int(config.ReportingTTLSecs),
            endpoint_reporting=bool(config.EndpointReportingEnabled),
            endpoint_delay=float(config.EndpointReportingDelaySecs),
            started=self.started, in_sync=lambda: self.in_sync_once)
        self.syncer = EtcdSyncer(
            list(config.etcd_endpoints), self, **config.etcd_tls,
            resync_interval=float(config.PeriodicResyncInterval))

    # --- syncer callbacks (run in the syncer's greenlet: only enqueue)
    def on_updates(self, updates: list[tuple[str, str | None]]) -> None:
        self._updates.put(("updates", updates, time.monotonic()))

    def on_status(self, status: SyncStatus) -> None:
        self._updates.put(("status", status, time.monotonic()))

    # --- host interface monitor callback (its greenlet: only enqueue)
    def on_host_interface(self, event: InterfaceEvent) -> None:
        self._updates.put(("iface", event, time.monotonic()))

    # --- process control
    def request_exit(self, status: int) -> None:
        if not self._exit.ready():
            self._exit.set(status)

    def _spawn(self, name: str, fn: Callable[..., object], *args: object) -> gevent.Greenlet:
        g = gevent.spawn(fn, *args)
        g.name = name
        g.link_exception(self._on_greenlet_died)
        g.link_value(self._on_greenlet_returned)
        self._greenlets.append(g)
        return g

    def _on_greenlet_died(self, g: gevent.Greenlet) -> None:
        if isinstance(g.exception, _Exit):
            self.request_exit(g.exception.status)
            return
        log.error("Essential greenlet %s died: %r", getattr(g, "name", g), g.exception,
                  exc_info=g.exc_info if g.exc_info and g.exc_info[0] else None)
        self.request_exit(EXIT_FATAL)

    def _on_greenlet_returned(self, g: gevent.Greenlet) -> None:
        if not self._exit.ready():
            log.error("Essential greenlet %s returned unexpectedly", getattr(g, "name", g))
            self.request_exit(EXIT_FATAL)

    def run(self) -> int:
        gevent.signal_handler(signal.SIGTERM, self._on_term)
        gevent.signal_handler(signal.SIGINT, self._on_term)
        gevent.signal_handler(signal.SIGUSR1, self._on_usr1)
        gevent.signal_handler(signal.SIGHUP, self._on_hup)
        self._spawn("syncer", self._run_syncer)
        self._spawn("pipeline", self._run_pipeline)
        self._spawn("status-liveness", self.status.run_liveness)
        self._spawn("status-endpoints", self.status.run_endpoints, self._cleanup_due)
        cfg = self.config
        if cfg.HealthEnabled:
            from felix import health
            self._spawn("health-http", health.serve, self, str(cfg.HealthHost), int(cfg.HealthPort))
        if cfg.PrometheusMetricsEnabled:
            from felix import metrics
            self._spawn("metrics-http", metrics.serve, self.metrics, str(cfg.PrometheusMetricsHost),
                        int(cfg.PrometheusMetricsPort))
        status = self._exit.get()
        for g in self._greenlets:
            g.unlink(self._on_greenlet_returned)
        gevent.killall(self._greenlets, timeout=2)
        log.info("Felix exiting with status %d%s", status,
                 " (dataplane left in place)" if status == 0 else "")
        return int(status)

    def essential_greenlets(self) -> list[gevent.Greenlet]:
        return list(self._greenlets)

    def heartbeats(self) -> dict[str, float]:
        beats = dict(self._heartbeats)
        beats["status"] = self.status.last_heartbeat
        if self.pipeline is not None:
            beats["dataplane"] = self.pipeline.dataplane.last_heartbeat
        return beats

    def _cleanup_due(self) -> bool:
        return self.in_sync_at is not None and \
            time.monotonic() - self.in_sync_at >= float(self.config.StartupCleanupDelay)

    def _run_syncer(self) -> None:
        self.syncer.start().join()

    def _on_term(self) -> None:
        log.info("Signal received: stopping; kernel state is left in place")
        self.request_exit(0)

    def _on_hup(self) -> None:
        # SIGHUP: re-read the config file; a changed value needs a restart (exit 3, the
        # supervisor restarts us), log severities apply live.
        from felix.config import load_local
        try:
            new_local = load_local(self.config_file)
        except ConfigError as e:
            log.error("SIGHUP: config not reloaded: %s", e)
            return
        try:
            self._reconfigure(new_local, "config file (SIGHUP)")
        except _Exit as e:
            self.request_exit(e.status)

    def _on_usr1(self) -> None:
        from felix.diagsummary import log_summary
        log_summary(self)

    # --- the pipeline greenlet
    def _run_pipeline(self) -> None:
        try:
            self._pipeline_loop()
        except _Exit as e:
            # A deliberate exit (config change): not a crash, so no greenlet traceback.
            self.request_exit(e.status)

    def _pipeline_loop(self) -> None:
        buffered: list[tuple[str, str | None, float]] = []
        while True:
            self._heartbeats["pipeline"] = time.monotonic()
            try:
                kind, payload, t = self._updates.get(timeout=5)
            except gevent.queue.Empty:
                continue
            batch = [(kind, payload, t)]
            while not self._updates.empty() and len(batch) < 200:
                batch.append(self._updates.get_nowait())
            for kind, payload, t in batch:
                if kind == "status":
                    self._on_sync_status(payload, buffered)
                    buffered = []
                    continue
                if kind == "iface":
                    if self.pipeline is not None:
                        self.pipeline.on_host_interface(payload)
                    continue
                for path, value in payload:
                    if self._is_config(path, value):
                        continue
                    if self.pipeline is None:
                        buffered.append((path, value, t))
                    else:
                        self.pipeline.on_update(path, value, t)
            if self.pipeline is not None:
                start = time.monotonic()
                self.pipeline.flush()
                self.metrics.calc_time.observe(time.monotonic() - start)
            gevent.sleep(0)

    def _is_config(self, path: str, value: str | None) -> bool:
        m = _GLOBAL_CONFIG_RE.match(path)
        target = self._global_cfg
        if m:
            name = m.group(1)
        else:
            m = _HOST_CONFIG_RE.match(path)
            if not m:
                return False
            if m.group(1) != self.hostname:
                return True  # another host's config: none of our business
            name = m.group(2)
            target = self._host_cfg
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
        if self.pipeline is not None:
            self._reconfigure(self.local_config, f"datastore key {path}")
        return True

    def _resolve_config(self, local: Config) -> Config:
        return local.with_datastore(self._host_cfg, self._global_cfg)

    def _reconfigure(self, new_local: Config, why: str) -> None:
        try:
            new = self._resolve_config(new_local)
        except ConfigError as e:
            log.error("Config change from %s is invalid (%s); exiting so the supervisor "
                      "restarts felix", why, e)
            raise _Exit(EXIT_CONFIG_ERROR)
        changed = changed_params(self.config, new)
        if not changed:
            return
        live = [n for n in changed if PARAMS_BY_LOWER[n.lower()].live]
        restart = [n for n in changed if n not in live]
        if restart:
            log.warning("Config %s changed (%s); exiting with status %d to restart with it",
                        ", ".join(restart), why, EXIT_CONFIG_CHANGED)
            raise _Exit(EXIT_CONFIG_CHANGED)
        self.config = new
        self.local_config = new_local
        logs.set_levels(str(new.LogSeverityScreen), str(new.LogSeverityFile),
                        str(new.LogSeveritySys))
        log.info("Log severities changed live: %s", ", ".join(
            f"{n}={new.get(n)}" for n in live))

    def _on_sync_status(self, status: SyncStatus, buffered: list[tuple[str, str | None, float]]) -> None:
        if status != self.sync_status:
            log.info("Datastore status: %s", status.value)
        self.sync_status = status
        if status != SyncStatus.IN_SYNC:
            return
        if self.pipeline is None:
            try:
                self.config = self._resolve_config(self.local_config)
            except ConfigError as e:
                log.error("%s", e)
                raise _Exit(EXIT_CONFIG_ERROR)
            logs.set_levels(str(self.config.LogSeverityScreen), str(self.config.LogSeverityFile),
                            str(self.config.LogSeveritySys))
            for name, setting in self.config.items():
                if setting.source != "default":
                    log.info("Config %s = %s (from %s)", name, self.config.redacted()[name],
                             setting.source)
            from felix.pipeline import Pipeline
            self.pipeline = Pipeline(self.config, self)
            self.pipeline.status_listeners.append(self.status.on_endpoint_status)
            self.pipeline.latency_listeners.append(
                lambda key, seconds: self.metrics.endpoint_programming.observe(seconds))
            self.in_sync_at = time.monotonic()
            self.pipeline.start(self._spawn)
            for path, value, t in buffered:
                self.pipeline.on_update(path, value, t)
        self.in_sync_once = True
        self.pipeline.on_in_sync()
        self.pipeline.flush()
