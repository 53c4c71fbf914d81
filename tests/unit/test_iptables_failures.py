"""Failure scenarios, one test each: break something, apply, check the damage is contained
and reported, heal, apply, check the kernel converged to the desired state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest

from felix.dataplane.iptables.table import ApplyResult, Table
from tests.unit.fake_iptables import FakeIptables, make_table, norm, plain, user_chains

BASE = {
    "cali-a": ["-p tcp --dport 22 -j ACCEPT", "-j DROP"],
    "cali-b": ["-j cali-a"],
}
HOOK = ["-j cali-b"]


@dataclass(frozen=True)
class Scenario:
    name: str
    # Breaks things (and may change the desired state); returns the chains expected to fail.
    breaks: Callable[[FakeIptables, Table, dict[str, list[str]]], set[str]]
    heal: Callable[[FakeIptables, Table], None] = lambda fake, t: None
    expect_ok: bool = False
    max_restores: int = 30


def _change_a(t: Table, desired: dict[str, list[str]]) -> None:
    desired["cali-a"] = ["-p tcp --dport 2222 -j ACCEPT", "-j DROP"]
    t.set_chain("cali-a", desired["cali-a"])


def lock_briefly(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    fake.lock_held_calls = 2
    _change_a(t, d)
    return set()


def lock_throughout(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    fake.lock_held_calls = 100
    _change_a(t, d)
    return {"cali-a"}


def save_fails(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    fake.fail_saves = 1
    t.invalidate()
    _change_a(t, d)
    return {"cali-a"}


def save_garbled(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    fake.garbled_saves = 1
    t.invalidate()
    _change_a(t, d)
    return {"cali-a"}


def binary_missing(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    fake.missing = {"iptables-legacy-restore"}
    _change_a(t, d)
    return {"cali-a"}


def chain_rejected(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    fake.fail_chains = {"cali-a"}
    _change_a(t, d)
    d["cali-c"] = ["-j LOG"]
    t.set_chain("cali-c", d["cali-c"])
    return {"cali-a"}


def chain_deleted_under_us(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    fake.external("-D INPUT 1")
    fake.external("-F cali-b")
    fake.external("-X cali-b")
    d["cali-b"] = ["-j LOG", "-j cali-a"]
    t.set_chain("cali-b", d["cali-b"])
    return set()


def hook_chain_missing(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    t.set_hook("USER-CHAIN", ["-j cali-a"])
    _change_a(t, d)
    return {"USER-CHAIN"}


def create_user_chain(fake: FakeIptables, t: Table) -> None:
    fake.external(":USER-CHAIN - [0:0]")


def loop(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    t.set_chain("cali-a", ["-j cali-b"])  # cali-b already jumps to cali-a
    return {"cali-a"}


def unloop(fake: FakeIptables, t: Table) -> None:
    t.set_chain("cali-a", BASE["cali-a"])


def foreign_rule_in_ours(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    fake.external("-I cali-a 1 -j ACCEPT")
    t.invalidate()
    return set()


def chain_flushed(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    fake.external("-F cali-a")
    t.invalidate()
    return set()


def hook_deleted(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    fake.external("-D INPUT 1")
    t.invalidate()
    return set()


def name_clash(fake: FakeIptables, t: Table, d: dict[str, list[str]]) -> set[str]:
    fake.external(":cali-c - [0:0]")
    fake.external("-A cali-c -j ACCEPT")
    d["cali-c"] = ["-j DROP"]
    t.set_chain("cali-c", d["cali-c"])
    return set()


def heal_fake(fake: FakeIptables, t: Table) -> None:
    fake.lock_held_calls = fake.fail_saves = 0
    fake.fail_chains = set()
    fake.missing = set()


SCENARIOS = [
    Scenario("lock held briefly", lock_briefly, expect_ok=True, max_restores=3),
    Scenario("lock held throughout", lock_throughout, max_restores=3),
    Scenario("save fails on refresh", save_fails, max_restores=0),
    Scenario("save prints something unparseable", save_garbled, max_restores=0),
    Scenario("restore binary missing", binary_missing, max_restores=1),
    Scenario("one chain rejected", chain_rejected),
    Scenario("our chain deleted under us", chain_deleted_under_us, expect_ok=True),
    Scenario("hook into a missing kernel chain", hook_chain_missing, create_user_chain),
    Scenario("update would create a loop", loop, unloop),
    Scenario("foreign rule in our chain", foreign_rule_in_ours, expect_ok=True),
    Scenario("our chain flushed", chain_flushed, expect_ok=True),
    Scenario("our hook deleted", hook_deleted, expect_ok=True),
    Scenario("name clash with an existing chain", name_clash, expect_ok=True),
]


def _converged(fake: FakeIptables, t: Table, desired: dict[str, list[str]]) -> None:
    for chain, rules in desired.items():
        assert plain(fake, chain) == norm(rules), chain
    assert plain(fake, "INPUT")[:len(HOOK)] == HOOK
    t.invalidate()
    assert t.apply().lines_written == 0


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_failure_scenario(sc: Scenario) -> None:
    fake, t, stats = make_table()
    desired = {k: list(v) for k, v in BASE.items()}
    for chain, rules in desired.items():
        t.set_chain(chain, rules)
    t.set_hook("INPUT", HOOK)
    assert t.apply().ok
    restores = fake.restore_count

    expected_failed = sc.breaks(fake, t, desired)
    res: ApplyResult = t.apply()
    assert res.ok == sc.expect_ok, res
    assert res.failed_chains == expected_failed, res
    assert fake.restore_count - restores <= sc.max_restores
    if not res.ok:
        assert res.error and stats.last_error
        assert t.dirty
        # Nothing that failed is left half-done: every chain present is whole and every
        # jump in the kernel has its target.
        for chain in user_chains(fake):
            for rule in fake.rules(chain):
                target = rule.split("-j ")[-1].split()[0]
                assert not target.startswith("cali") or target in user_chains(fake)

    heal_fake(fake, t)
    sc.heal(fake, t)
    res = t.apply()
    assert res.ok and not res.failed_chains, res
    if sc.name == "hook into a missing kernel chain":
        assert plain(fake, "USER-CHAIN") == ["-j cali-a"]
    _converged(fake, t, desired)
