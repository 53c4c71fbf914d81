"""Which iptables backend (legacy xtables or nf_tables) to drive, and its binaries.

Both backends can be loaded in one kernel at once, and rules in the one the rest of the host
does not use are silently ineffective for that host's tooling (kube-proxy, docker, ...). So
`auto` follows whatever this network namespace already uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from felix.dataplane.runner import CommandRunner

_log = logging.getLogger(__name__)

BACKENDS = ("legacy", "nft")
_DETECT_TIMEOUT = 30.0


@dataclass(frozen=True)
class IptablesCommands:
    """Resolved binaries for one backend and IP family (Debian bookworm names)."""
    restore: str
    save: str
    name: str  # "legacy" | "nft"

    @property
    def supports_wait(self) -> bool:
        # iptables-nft-restore accepts --wait but ignores it: nf_tables transactions do not
        # take the xtables lock, so only legacy gets a meaningful --wait.
        return self.name == "legacy"


def commands_for(backend: str, ip_version: int) -> IptablesCommands:
    if backend not in BACKENDS:
        raise ValueError(f"unknown iptables backend {backend!r}")
    if ip_version not in (4, 6):
        raise ValueError(f"unknown IP version {ip_version!r}")
    base = "iptables" if ip_version == 4 else "ip6tables"
    return IptablesCommands(restore=f"{base}-{backend}-restore",
                            save=f"{base}-{backend}-save", name=backend)


@dataclass(frozen=True)
class _Usage:
    cali_chains: int
    rules: int


def _usage(runner: CommandRunner, backend: str, chain_prefix: str) -> _Usage:
    cali = rules = 0
    for ip_version in (4, 6):
        result = runner.run([commands_for(backend, ip_version).save], timeout=_DETECT_TIMEOUT)
        if result.returncode != 0:
            _log.debug("%s backend probe failed (rc=%s): %s", backend, result.returncode,
                       result.stderr.strip())
            continue
        for line in result.stdout.splitlines():
            if line.startswith(":" + chain_prefix):
                cali += 1
            elif line.startswith("-A "):
                rules += 1
    return _Usage(cali, rules)


def detect_backend(runner: CommandRunner, setting: str, chain_prefix: str = "cali") -> str:
    """Map the configured setting ("auto" | "legacy" | "nft") to the backend to use."""
    setting = setting.strip().lower()
    if setting in BACKENDS:
        return setting
    if setting != "auto":
        raise ValueError(f"iptables backend setting must be auto, legacy or nft: {setting!r}")
    legacy = _usage(runner, "legacy", chain_prefix)
    nft = _usage(runner, "nft", chain_prefix)
    _log.info("iptables backend probe: legacy %s, nft %s", legacy, nft)
    if legacy.cali_chains or nft.cali_chains:
        # Our own chains are the strongest evidence; a tie goes to nft, the distro default.
        return "legacy" if legacy.cali_chains > nft.cali_chains else "nft"
    if legacy.rules or nft.rules:
        return "legacy" if legacy.rules > nft.rules else "nft"
    return "nft"
