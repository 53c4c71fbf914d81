"""The SIGUSR1 summary: one block in the log with what an operator asks first."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from felix.agent import Agent

log = logging.getLogger("felix.diags")


def summary_lines(agent: "Agent") -> list[str]:
    lines = [f"uptime {time.time() - agent.started:.0f}s; datastore {agent.sync_status.value}"]
    p = agent.pipeline
    if p is None:
        lines.append("pipeline not started yet (waiting for the first datastore snapshot)")
        return lines
    st = p.calc.stats
    statuses: dict[str, int] = {}
    for s in p.endpoint_status.values():
        statuses[s] = statuses.get(s, 0) + 1
    lines.append(f"local endpoints {st.active_local_endpoints} (status {statuses or 'none'}); "
                 f"cluster workload endpoints {st.cluster_num_workload_endpoints}, "
                 f"host endpoints {st.cluster_num_host_endpoints}, hosts {st.cluster_num_hosts}")
    lines.append(f"active local policies {st.active_local_policies}, selectors "
                 f"{st.active_local_selectors}, tags {st.active_local_tags}")
    d = p.stats
    last = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d.last_apply_time))
            if d.last_apply_time else "never")
    lines.append(f"iptables chains {d.iptables_chains}, rules {d.iptables_rules}; ipsets "
                 f"{d.ipsets_total}; applies {d.applies} (failures {d.apply_failures}); last "
                 f"apply {last} took {d.last_apply_seconds * 1000:.1f} ms")
    lines.append(f"iptables-restore calls {d.iptables_restore_calls} (errors "
                 f"{d.iptables_restore_errors}), lines {d.iptables_lines_executed}; ipset calls "
                 f"{d.ipset_calls} (errors {d.ipset_errors}), lines {d.ipset_lines_executed}")
    lines.append(f"last error: {d.last_error or 'none'}")
    errors = sorted(f"{k}: {v}" for k, v in p.endpoint_errors.items())
    for e in errors[:20]:
        lines.append(f"invalid endpoint {e}")
    return lines


def log_summary(agent: "Agent") -> None:
    for line in summary_lines(agent):
        log.info("Diagnostics: %s", line)
