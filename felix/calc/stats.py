"""Counters describing the calculation's current view (exported as metrics by the caller)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CalcStats:
    active_local_endpoints: int = 0
    active_local_policies: int = 0
    active_local_selectors: int = 0
    active_local_tags: int = 0
    cluster_num_hosts: int = 0
    cluster_num_workload_endpoints: int = 0
    cluster_num_host_endpoints: int = 0
