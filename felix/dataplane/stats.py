"""Counters the dataplane keeps for metrics and diagnostics (exported by felix/metrics.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataplaneStats:
    iptables_restore_calls: int = 0
    iptables_restore_errors: int = 0
    iptables_save_calls: int = 0
    iptables_save_errors: int = 0
    iptables_lines_executed: int = 0
    iptables_chains: int = 0  # felix's chains currently programmed
    iptables_rules: int = 0  # rules in felix's chains + hooks currently programmed
    ipset_calls: int = 0
    ipset_errors: int = 0
    ipset_lines_executed: int = 0
    ipsets_total: int = 0
    route_ops: int = 0
    route_errors: int = 0
    applies: int = 0
    apply_failures: int = 0
    last_apply_seconds: float = 0.0
    last_apply_time: float = 0.0  # wall clock of the last successful apply
    last_error: str = ""
