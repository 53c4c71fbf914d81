"""ChainStore: only chains whose rules changed are emitted, in jump order, whatever the owners
hand back; and jump targets are read the way iptables reads -j/-g."""

from __future__ import annotations

from felix.calc.chainstore import ChainKey, ChainStore, jump_targets
from felix.messages import ChainRemoved, ChainSet


def test_jump_targets_reads_jumps_and_gotos_only() -> None:
    rules = ["-j cali-a", "-m mark --mark 0/0x1 -g cali-b", "-p tcp -j  cali-c --foo",
             '-m comment --comment "x" -j LOG --log-prefix "p"', "-j", "-m state"]
    assert jump_targets(rules) == {"cali-a", "cali-b", "cali-c", "LOG"}
    assert jump_targets([]) == set()


def test_resetting_an_owner_emits_only_changed_chains() -> None:
    store = ChainStore()
    store.set_owner("d", {(4, "filter", "root"): ("-g leaf1", "-g leaf2"),
                          (4, "filter", "leaf1"): ("-j e1",), (4, "filter", "leaf2"): ("-j e2",)})
    sets, removes = store.flush()
    assert [s.name for s in sets][-1] == "root" and len(sets) == 3 and not removes
    # Same content in new (equal, not identical) tuples: nothing to emit.
    store.set_owner("d", {(4, "filter", "root"): ("-g leaf1", "-g leaf2"),
                          (4, "filter", "leaf1"): ("-j e1",),
                          (4, "filter", "leaf2"): tuple(["-j", "e2"][0] + " e2" for _ in "x")})
    assert store.flush() == ([], [])
    # One leaf changes, one goes: the root is set after the new leaf, the old leaf removed.
    store.set_owner("d", {(4, "filter", "root"): ("-g leaf1", "-g leaf3"),
                          (4, "filter", "leaf1"): ("-j e1",), (4, "filter", "leaf3"): ("-j e3",)})
    sets, removes = store.flush()
    assert [s.name for s in sets] == ["leaf3", "root"]
    assert removes == [ChainRemoved(4, "filter", "leaf2")]
    assert store.desired()[(4, "filter", "leaf3")] == ("-j e3",)


def test_a_chain_changed_and_changed_back_before_a_flush_is_not_emitted() -> None:
    store = ChainStore()
    store.set_owner("a", {(4, "filter", "x"): ("-j y",)})
    store.flush()
    store.set_owner("a", {(4, "filter", "x"): ("-j z",)})
    store.set_owner("a", {(4, "filter", "x"): ("-j y",)})
    assert store.flush() == ([], [])
    store.set_owner("a", {})
    store.set_owner("b", {(4, "filter", "x"): ("-j y",)})  # another owner takes it over
    assert store.flush() == ([], [])
    store.set_owner("b", {})
    assert store.flush() == ([], [ChainRemoved(4, "filter", "x")])


def test_repeated_rule_texts_are_stored_once() -> None:
    store = ChainStore()
    a = "".join(["-m mark --mark ", "0/0x1 -j RETURN"])
    b = "".join(["-m mark --mark 0/0x1", " -j RETURN"])
    assert a == b and a is not b
    store.set_owner("o", {(4, "filter", "p"): (a,), (6, "filter", "p"): (b,)})
    stored = store.desired()
    assert stored[(4, "filter", "p")][0] is stored[(6, "filter", "p")][0]
    sets, _ = store.flush()
    assert {s.rules for s in sets} == {(a,)} and all(isinstance(s, ChainSet) for s in sets)


def test_canonical_returns_the_stored_key_while_the_chain_is_desired() -> None:
    store = ChainStore()
    stored: ChainKey = (4, "filter", "".join(["cali-pi-", "p"]))
    store.set_owner("o", {stored: ("-j ACCEPT",)})
    probe: ChainKey = (4, "filter", "".join(["cali-", "pi-p"]))
    assert probe == stored and probe is not stored
    assert store.canonical(probe) is stored
    store.set_owner("o", {})
    assert store.canonical(probe) is probe
