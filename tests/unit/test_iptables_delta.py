"""Properties of hashes and deltas: whatever the kernel holds, one apply converges it to the
desired state, writes no more than a rewrite would, and a refresh then finds nothing to do."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from felix.dataplane.iptables.hashing import CommentFormat, hash_rules
from tests.unit.fake_iptables import FakeIptables, make_table, norm, ours, plain

RULES = st.sampled_from([f"-j MARK --set-mark {i}" for i in range(6)] + ["-j ACCEPT"])
PROPS = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


def test_hashes_are_deterministic_comment_safe_and_position_sensitive() -> None:
    a = hash_rules("cali-x", ["-j ACCEPT", "-j DROP", "-j RETURN"])
    assert a == hash_rules("cali-x", ["-j ACCEPT", "-j  DROP", "-j RETURN"])
    assert all(len(r.hash) == 16 and r.hash.replace("-", "").replace("_", "").isalnum()
               for r in a)
    assert hash_rules("cali-y", ["-j ACCEPT"])[0].hash != a[0].hash  # chain name counts
    swapped = hash_rules("cali-x", ["-j DROP", "-j ACCEPT", "-j RETURN"])
    assert {r.hash for r in swapped}.isdisjoint({r.hash for r in a})
    # A one-rule edit changes that rule's hash and its successor's only.
    edited = hash_rules("cali-x", ["-j ACCEPT", "-j LOG", "-j RETURN"])
    assert [x.hash == y.hash for x, y in zip(a, edited)] == [True, False, False]
    longer = hash_rules("cali-x", ["-j ACCEPT", "-j LOG", "-j RETURN", "-j DROP", "-j DROP"])
    again = hash_rules("cali-x", ["-j ACCEPT", "-j DROP", "-j RETURN", "-j DROP", "-j DROP"])
    assert [x.hash == y.hash for x, y in zip(longer, again)] == [True, False, False, True, True]


def test_comment_format_round_trips_through_save_quoting() -> None:
    fmt = CommentFormat("cali")
    rule = hash_rules("cali-x", ["-p tcp --dport 80 -j ACCEPT"])[0]
    rendered = fmt.render(rule)
    assert fmt.find_hash(f"-p tcp -m tcp --dport 80 {rendered}") == rule.hash
    assert fmt.find_hash(f'-m comment --comment cali:{rule.hash} -j ACCEPT') == rule.hash
    assert fmt.find_hash('-m comment --comment "cali:short" -j ACCEPT') is None
    assert fmt.find_hash('-m comment --comment "other:' + rule.hash + '"') is None


@PROPS
@given(old=st.lists(RULES, max_size=25), new=st.lists(RULES, max_size=25))
def test_chain_converges_with_no_more_than_a_rewrite(old: list[str], new: list[str]) -> None:
    fake, t, _ = make_table()
    t.set_chain("cali-x", old)
    assert t.apply().ok
    t.set_chain("cali-x", new)
    res = t.apply()
    assert res.ok
    assert plain(fake, "cali-x") == norm(new)
    assert res.lines_written <= len(new) + 1
    t.invalidate()
    assert t.apply().lines_written == 0


@PROPS
@given(kernel=st.lists(st.one_of(st.tuples(st.just("ours"), RULES),
                                 st.tuples(st.just("foreign"), RULES)), max_size=10),
       hooks=st.lists(RULES, max_size=4))
def test_hooks_converge_to_the_top_and_foreign_rules_survive(
        kernel: list[tuple[str, str]], hooks: list[str]) -> None:
    fake = FakeIptables()
    fmt = CommentFormat("cali")
    for i, (owner, rule) in enumerate(kernel):
        if owner == "ours":  # a stale hook from an earlier layout
            stale = hash_rules("INPUT", [f"-j MARK --set-mark {100 + i}"])[0]
            fake.external(f"-A INPUT {fmt.render(stale)}")
        else:
            fake.external(f"-A INPUT {rule}")
    foreign = [r for owner, r in kernel if owner == "foreign"]
    _, t, _ = make_table(fake)
    t.set_hook("INPUT", hooks)
    res = t.apply()
    assert res.ok
    assert plain(fake, "INPUT") == norm(hooks + foreign)
    assert ours(fake, "INPUT") == [True] * len(hooks) + [False] * len(foreign)
    t.invalidate()
    assert t.apply().lines_written == 0
