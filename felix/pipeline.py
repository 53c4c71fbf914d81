"""The processing pipeline, built once the configuration is final: raw datastore updates →
validated model (felix/model) → calculation (felix/calc) → dataplane (felix/dataplane), with
endpoint status and programming latency tracked on the way."""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Callable

import gevent

from felix.calc.graph import CalcGraph
from felix.config import Config
from felix.dataplane.interfaces import InterfaceEvent, InterfaceMonitor
from felix.dataplane.ipsets import IpsetManager
from felix.dataplane.iptables.backend import commands_for, detect_backend
from felix.dataplane.iptables.table import Table
from felix.dataplane.loop import ApplyReport, Dataplane
from felix.dataplane.netlink import PyRoute2Netlink
from felix.dataplane.routes import RouteManager
from felix.dataplane.runner import SubprocessRunner
from felix.dataplane.stats import DataplaneStats
from felix.dataplane.sysctl import SysctlWriter
from felix.dataplane.conntrack import ConntrackFlusher
from felix.model.keys import HostEndpointKey, WorkloadEndpointKey
from felix.model.parse import ModelParser
from felix.rules.settings import RuleSettings

if TYPE_CHECKING:
    from felix.agent import Agent

log = logging.getLogger(__name__)

TABLES = ("filter", "nat", "mangle", "raw")


def ipv6_enabled(config: Config, runner: SubprocessRunner, backend: str) -> bool:
    setting = str(config.Ipv6Support)
    if setting == "false":
        return False
    usable = os.path.exists("/proc/sys/net/ipv6") and \
        runner.run([commands_for(backend, 6).save, "-t", "filter"], timeout=10).returncode == 0
    if setting == "true" and not usable:
        log.warning("Ipv6Support=true but IPv6/ip6tables is not usable here; IPv6 disabled")
    return usable


def rule_settings(config: Config, ipv6: bool) -> RuleSettings:
    return RuleSettings(
        hostname=config.hostname,
        interface_prefixes=tuple(config.InterfacePrefix),
        default_endpoint_to_host_action=config.DefaultEndpointToHostAction,
        drop_action_override=config.DropActionOverride,
        mark_mask=int(config.IptablesMarkMask),
        metadata_addr=config.MetadataAddr,
        metadata_port=int(config.MetadataPort),
        failsafe_inbound_ports=tuple(config.FailsafeInboundHostPorts),
        failsafe_outbound_ports=tuple(config.FailsafeOutboundHostPorts),
        ipv6_enabled=ipv6,
        ipip_enabled=bool(config.IpInIpEnabled),
    )


class Pipeline:
    def __init__(self, config: Config, agent: "Agent") -> None:
        self.config = config
        self.agent = agent
        self.hostname = config.hostname
        self.stats = DataplaneStats()
        runner = SubprocessRunner()
        backend = detect_backend(runner, str(config.IptablesBackend))
        self.ipv6 = ipv6_enabled(config, runner, backend)
        versions = (4, 6) if self.ipv6 else (4,)
        log.info("Using the iptables %s backend; IPv6 %s", backend,
                 "enabled" if self.ipv6 else "disabled")
        self.parser = ModelParser(tuple(config.InterfacePrefix))
        self.calc = CalcGraph(rule_settings(config, self.ipv6))
        lock_timeout = float(config.IptablesLockTimeoutSecs)
        tables = {(v, t): Table(v, t, runner, commands_for(backend, v), self.stats,
                                lock_timeout=lock_timeout)
                  for v in versions for t in TABLES}
        ipsets = {v: IpsetManager(v, runner, self.stats,
                                  max_size=int(config.MaxIpsetSize))
                  for v in versions}
        routes = RouteManager(PyRoute2Netlink(), SysctlWriter(), self.stats,
                              conntrack=ConntrackFlusher(runner))
        self.dataplane = Dataplane(
            tables=tables, ipsets=ipsets, routes=routes, stats=self.stats,
            on_endpoint_status=self._on_endpoint_status,
            on_apply=self._on_apply,
            cleanup_delay=float(config.StartupCleanupDelay),
            refresh_interval=float(config.IptablesRefreshInterval))
        self.monitor = InterfaceMonitor(self.dataplane.on_interface_event,
                                        tuple(config.InterfacePrefix))
        # Every interface's addresses, for host endpoints given by address instead of name.
        self.host_monitor = InterfaceMonitor(self._on_any_interface_event, ())
        # endpoint key → monotonic time of the etcd event not yet programmed
        self._pending_since: dict[object, float] = {}
        self._changed: set[object] = set()  # endpoints changed since the last flush
        self.endpoint_status: dict[object, str] = {}
        self.endpoint_errors: dict[object, str] = {}
        self.status_listeners: list[Callable[[object, str | None], None]] = []
        self.latency_listeners: list[Callable[[object, float], None]] = []
        self.apply_listeners: list[Callable[[ApplyReport], None]] = [
            lambda report: agent.metrics.apply_time.observe(report.seconds)]
        self.last_calc_seconds = 0.0

    def start(self, spawn: Callable[..., gevent.Greenlet]) -> None:
        spawn("dataplane", self.dataplane.run)
        spawn("interface-monitor", lambda: self.monitor.start().join())
        spawn("host-interface-monitor", lambda: self.host_monitor.start().join())

    def _on_any_interface_event(self, event: InterfaceEvent) -> None:
        # Runs in the monitor's greenlet: hand over to the agent's loop, which owns the calc.
        if not event.ifname.startswith(tuple(self.config.InterfacePrefix)):
            self.agent.on_host_interface(event)

    def on_host_interface(self, event: InterfaceEvent) -> None:
        self.calc.on_interface_addrs(event.ifname, event.addrs if event.present else None)

    def _is_local_endpoint(self, key: object) -> bool:
        return isinstance(key, (WorkloadEndpointKey, HostEndpointKey)) and key.hostname == self.hostname

    def on_update(self, path: str, value: str | None, received_at: float) -> None:
        update = self.parser.parse(path, value, received_at)
        if update is None:
            return
        if self._is_local_endpoint(update.key):
            if update.error:
                self.endpoint_errors[update.key] = update.error
                self._pending_since.pop(update.key, None)  # nothing of it will be programmed
                self._set_status(update.key, "error")
            else:
                self.endpoint_errors.pop(update.key, None)
                if update.value is None:
                    self._pending_since.pop(update.key, None)
                    self._set_status(update.key, None)
                else:
                    self._pending_since.setdefault(update.key, received_at)
                    self._changed.add(update.key)
        self.calc.on_update(update)

    def on_in_sync(self) -> None:
        self.calc.on_in_sync()

    def flush(self) -> None:
        start = time.monotonic()
        msgs = self.calc.take_messages()
        self.last_calc_seconds = time.monotonic() - start
        if msgs:
            self.dataplane.on_messages(msgs)
        if self._changed:
            # Behind the messages: the dataplane reports each of these once programmed, even
            # when the change left its status (or the kernel) as it was.
            self.dataplane.on_endpoints_changed(self._changed)
            self._changed = set()

    def _set_status(self, key: object, status: str | None) -> None:
        if self.endpoint_status.get(key) == status:
            return
        log.debug("Endpoint %s status %s", key, status or "removed")
        if status is None:
            self.endpoint_status.pop(key, None)
        else:
            self.endpoint_status[key] = status
        for listener in self.status_listeners:
            listener(key, status)

    def _on_apply(self, report: ApplyReport) -> None:
        for listener in self.apply_listeners:
            listener(report)

    def _on_endpoint_status(self, key: object, status: str, programmed_at: float | None) -> None:
        if key in self.endpoint_errors:
            status = "error"  # invalid data wins over whatever the dataplane thinks
        if programmed_at is not None and key in self._pending_since:
            seconds = programmed_at - self._pending_since.pop(key)
            log.debug("Endpoint %s programmed %.1f ms after its datastore event", key,
                      seconds * 1000)
            for listener in self.latency_listeners:
                listener(key, seconds)
        self._set_status(key, status)
