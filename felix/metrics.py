"""Prometheus metrics, with the names operators already graph for Calico's felix.

Counters and gauges are read from the components' own stats at scrape time (a custom
collector), so the hot paths only bump plain integers; histograms are observed directly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterable

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, PlatformCollector
from prometheus_client.core import GaugeMetricFamily, Metric, UnknownMetricFamily

if TYPE_CHECKING:
    from felix.agent import Agent

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)


class Metrics:
    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.calc_time = Histogram("felix_calc_graph_update_time_seconds",
                                   "Time to turn a batch of datastore updates into dataplane messages",
                                   registry=self.registry)
        self.apply_time = Histogram("felix_int_dataplane_apply_time_seconds",
                                    "Time of one dataplane apply (all kernel writes of a batch)",
                                    registry=self.registry)
        self.endpoint_programming = Histogram(
            "felix_endpoint_programming_seconds",
            "Per local endpoint change: time from the etcd event to its routes and chains being in the kernel",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_StatsCollector(agent))


class _StatsCollector:
    def __init__(self, agent: "Agent") -> None:
        self.agent = agent

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        a = self.agent
        syncer = a.syncer.stats
        yield _counter("felix_resyncs_started", "Datastore resyncs started", syncer.resyncs_started)
        state = GaugeMetricFamily("felix_resync_state",
                                  "Datastore sync state (1 for the current state)", labels=["state"])
        for s in ("wait-for-ready", "resync", "in-sync"):
            state.add_metric([s], 1.0 if a.sync_status.value == s else 0.0)
        yield state
        yield _counter("felix_etcd_watch_events", "etcd watch events received",
                       syncer.watch_events)
        yield _counter("felix_etcd_watch_events_ignored",
                       "etcd watch events outside the synced tree (e.g. felix's own status writes)",
                       syncer.watch_events_ignored)
        yield _counter("felix_etcd_reconnects", "etcd reconnections", syncer.reconnects)
        yield _counter("felix_etcd_snapshots", "Complete datastore reads (first, resyncs, periodic)",
                       syncer.snapshots)
        p = a.pipeline
        if p is None:
            return
        st = p.calc.stats
        for name, value, doc in (
                ("felix_active_local_endpoints", st.active_local_endpoints, "Local endpoints"),
                ("felix_active_local_policies", st.active_local_policies, "Policies used by local endpoints"),
                ("felix_active_local_selectors", st.active_local_selectors, "Selectors with an active ipset"),
                ("felix_active_local_tags", st.active_local_tags, "Tags with an active ipset"),
                ("felix_cluster_num_hosts", st.cluster_num_hosts, "Hosts in the cluster"),
                ("felix_cluster_num_workload_endpoints", st.cluster_num_workload_endpoints, "Workload endpoints in the cluster"),
                ("felix_cluster_num_host_endpoints", st.cluster_num_host_endpoints, "Host endpoints in the cluster")):
            yield _gauge(name, doc, value)
        d = p.stats
        yield _counter("felix_int_dataplane_failures", "Dataplane applies that failed", d.apply_failures)
        yield _counter("felix_int_dataplane_applies", "Dataplane applies", d.applies)
        yield _counter("felix_iptables_restore_calls", "iptables-restore invocations", d.iptables_restore_calls)
        yield _counter("felix_iptables_restore_errors", "Failed iptables-restore invocations", d.iptables_restore_errors)
        yield _counter("felix_iptables_save_calls", "iptables-save invocations", d.iptables_save_calls)
        yield _counter("felix_iptables_save_errors", "Failed iptables-save invocations", d.iptables_save_errors)
        yield _counter("felix_iptables_lines_executed", "iptables-restore lines written", d.iptables_lines_executed)
        yield _gauge("felix_iptables_chains", "felix's chains in the kernel", d.iptables_chains)
        yield _gauge("felix_iptables_rules", "Rules in felix's chains and hooks", d.iptables_rules)
        yield _counter("felix_ipset_calls", "ipset invocations", d.ipset_calls)
        yield _counter("felix_ipset_errors", "Failed ipset invocations", d.ipset_errors)
        yield _counter("felix_ipset_lines_executed", "ipset restore lines written", d.ipset_lines_executed)
        yield _gauge("felix_ipsets_total", "felix's ipsets in the kernel", d.ipsets_total)
        yield _counter("felix_route_operations", "Route/neighbour netlink operations", d.route_ops)
        statuses = GaugeMetricFamily("felix_local_endpoints_by_status", "Local endpoints by status",
                                     labels=["status"])
        counts = {"up": 0, "down": 0, "error": 0}
        for s in p.endpoint_status.values():
            counts[s] = counts.get(s, 0) + 1
        for s, n in counts.items():
            statuses.add_metric([s], float(n))
        yield statuses


def _counter(name: str, doc: str, value: float) -> UnknownMetricFamily:
    """A monotonic counter exposed under exactly Calico's series name. prometheus_client would
    rename a typed counter to ``<name>_total``, which breaks the dashboards and alerts operators
    already have for felix; an untyped family keeps the name, and rate() works on it."""
    return UnknownMetricFamily(name, doc + " (counter)", value=float(value))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def serve(metrics: Metrics, host: str, port: int) -> None:
    """Serve /metrics from a gevent WSGI server (blocks: run in a greenlet)."""
    from gevent.pywsgi import WSGIServer
    from prometheus_client import make_wsgi_app
    app = make_wsgi_app(metrics.registry)
    WSGIServer((host, port), app, log=None, error_log=log).serve_forever()
