"""iptables driver: one Table per (IP family, table) programmed through `<restore> --noflush`."""

from felix.dataplane.iptables.backend import IptablesCommands, commands_for, detect_backend
from felix.dataplane.iptables.table import ApplyResult, Table

__all__ = ["ApplyResult", "IptablesCommands", "Table", "commands_for", "detect_backend"]
