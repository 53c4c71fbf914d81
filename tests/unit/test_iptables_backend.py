"""Backend detection and the per-family binary factory, against the stateful fake."""

from __future__ import annotations

import pytest

from felix.dataplane.iptables.backend import IptablesCommands, commands_for, detect_backend
from tests.unit.fake_iptables import FakeIptables


def test_commands_for_builds_bookworm_names() -> None:
    assert commands_for("legacy", 4) == IptablesCommands(
        "iptables-legacy-restore", "iptables-legacy-save", "legacy")
    assert commands_for("nft", 6) == IptablesCommands(
        "ip6tables-nft-restore", "ip6tables-nft-save", "nft")
    assert commands_for("legacy", 4).supports_wait and not commands_for("nft", 4).supports_wait
    with pytest.raises(ValueError):
        commands_for("bpf", 4)
    with pytest.raises(ValueError):
        commands_for("nft", 5)


def test_explicit_setting_wins_without_probing() -> None:
    fake = FakeIptables()
    assert detect_backend(fake, "legacy") == "legacy"
    assert detect_backend(fake, " NFT ") == "nft"
    assert fake.save_calls == 0
    with pytest.raises(ValueError):
        detect_backend(fake, "iptables")


def test_auto_on_an_empty_host_is_nft() -> None:
    assert detect_backend(FakeIptables(), "auto") == "nft"


def test_auto_follows_the_backend_holding_rules() -> None:
    fake = FakeIptables()
    fake.external("-A INPUT -j ACCEPT", backend="legacy")
    assert detect_backend(fake, "auto") == "legacy"
    fake2 = FakeIptables()
    fake2.external("-A FORWARD -j DROP", backend="nft", ip_version=6)
    fake2.table("legacy")  # legacy tables loaded but empty
    assert detect_backend(fake2, "auto") == "nft"


def test_auto_prefers_our_chains_over_more_rules() -> None:
    fake = FakeIptables()
    for i in range(5):  # e.g. docker's rules in legacy...
        fake.external(f"-A FORWARD -j MARK --set-mark {i}", backend="legacy")
    fake.external(":cali-INPUT - [0:0]", backend="nft", table="filter")  # ...ours in nft
    assert detect_backend(fake, "auto") == "nft"


def test_auto_survives_a_missing_backend() -> None:
    fake = FakeIptables()
    fake.external("-A INPUT -j ACCEPT", backend="legacy")
    fake.missing = {"iptables-nft-save", "ip6tables-nft-save"}
    assert detect_backend(fake, "auto") == "legacy"
