"""Table against the stateful fake: programming, read-back, minimal deltas, drift repair,
failure isolation and cleanup. Assertions are on the fake's resulting kernel state and on
counts of kernel calls/lines, never on call sequences."""

from __future__ import annotations

from felix.dataplane.stats import DataplaneStats
from tests.unit.fake_iptables import FakeIptables
from tests.unit.fake_iptables import make_table, norm, ours, plain, user_chains


def big_chain(n: int, tag: str = "") -> list[str]:
    return [f"-s 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/32 -j MARK --set-mark {i}{tag}"
            for i in range(n)]


def test_programs_chains_and_hooks_in_one_restore_above_foreign_rules() -> None:
    fake = FakeIptables()
    fake.external("-A INPUT -j ACCEPT")
    fake, t, stats = make_table(fake)
    t.set_chain("cali-a", ["-p tcp --dport 80 -j ACCEPT", "-j DROP"])
    t.set_chain("cali-b", ["-j cali-a"])
    t.set_hook("INPUT", ["-j cali-b", "-j cali-a"])
    assert fake.restore_count == 0  # setters only record
    res = t.apply()
    assert res.ok and not res.failed_chains and res.error == ""
    assert fake.restore_count == 1
    assert plain(fake, "cali-a") == ["-p tcp -m tcp --dport 80 -j ACCEPT", "-j DROP"]
    assert plain(fake, "cali-b") == ["-j cali-a"]
    assert plain(fake, "INPUT") == ["-j cali-b", "-j cali-a", "-j ACCEPT"]
    assert ours(fake, "INPUT") == [True, True, False]
    assert not t.dirty
    assert stats.iptables_chains == 2 and stats.iptables_rules == 5
    assert stats.iptables_restore_calls == 1 and stats.iptables_save_calls == 1
    assert stats.iptables_lines_executed == res.lines_written


def test_restore_flags_per_backend() -> None:
    for backend, wait in (("legacy", True), ("nft", False)):
        fake, t, _ = make_table(backend=backend)
        t.set_chain("cali-a", ["-j ACCEPT"])
        assert t.apply().ok
        argv = fake.restore_calls[-1].argv
        assert argv[0] == f"iptables-{backend}-restore" and "--noflush" in argv
        assert ("--wait" in argv) == wait


def test_ipv6_uses_ip6tables_binaries() -> None:
    fake, t, _ = make_table(ip_version=6)
    t.set_chain("cali-a", ["-j ACCEPT"])
    assert t.apply().ok
    assert fake.restore_calls[-1].argv[0] == "ip6tables-legacy-restore"
    assert plain(fake, "cali-a", ip_version=6) == ["-j ACCEPT"]
    assert "cali-a" not in fake.table("legacy", 4).chains


def test_no_writes_when_nothing_changed_even_after_refresh() -> None:
    fake, t, _ = make_table()
    t.set_chain("cali-a", big_chain(50))
    t.set_hook("FORWARD", ["-j cali-a"])
    assert t.apply().ok
    calls = fake.restore_count
    t.set_chain("cali-a", big_chain(50))  # same content again
    assert not t.dirty
    assert t.apply() .lines_written == 0
    t.invalidate()
    assert t.dirty
    saves = fake.save_calls
    res = t.apply()
    assert res.ok and res.lines_written == 0
    assert fake.restore_count == calls and fake.save_calls == saves + 1


def test_a_restarted_felix_recognises_its_own_rules() -> None:
    fake, t, _ = make_table()
    t.set_chain("cali-a", big_chain(20))
    t.set_hook("INPUT", ["-j cali-a"])
    assert t.apply().ok
    _, t2, _ = make_table(fake)
    t2.set_chain("cali-a", big_chain(20))
    t2.set_hook("INPUT", ["-j cali-a"])
    calls = fake.restore_count
    res = t2.apply()
    assert res.ok and res.lines_written == 0 and fake.restore_count == calls


def test_one_rule_change_in_a_1000_rule_chain_writes_at_most_3_lines() -> None:
    fake, t, _ = make_table()
    rules = big_chain(1000)
    t.set_chain("cali-big", rules)
    assert t.apply().ok
    for edit in ("replace", "insert", "delete", "append", "prepend"):
        if edit == "replace":
            rules[500] = "-j DROP"
        elif edit == "insert":
            rules.insert(300, "-p udp -j ACCEPT")
        elif edit == "delete":
            del rules[700]
        elif edit == "append":
            rules.append("-j RETURN")
        else:
            rules.insert(0, "-j LOG")
        t.set_chain("cali-big", rules)
        before = fake.lines_applied
        res = t.apply()
        assert res.ok, edit
        assert res.lines_written <= 3, (edit, res.lines_written)
        assert fake.lines_applied - before == res.lines_written
        assert plain(fake, "cali-big") == norm(rules), edit
    # And the model stayed right: a refresh finds nothing to do.
    t.invalidate()
    assert t.apply().lines_written == 0


def test_one_rule_change_in_a_10000_rule_table_writes_at_most_3_lines() -> None:
    fake, t, _ = make_table()
    chains = {f"cali-c{i}": big_chain(1000, tag=f" {i}") for i in range(10)}
    for name, rules in chains.items():
        t.set_chain(name, rules)
    assert t.apply().ok
    chains["cali-c7"][10] = "-j ACCEPT"
    t.set_chain("cali-c7", chains["cali-c7"])
    res = t.apply()
    assert res.ok and res.lines_written <= 3
    assert plain(fake, "cali-c7") == norm(chains["cali-c7"])


def test_two_distant_edits_stay_small() -> None:
    fake, t, _ = make_table()
    rules = big_chain(1000)
    t.set_chain("cali-big", rules)
    assert t.apply().ok
    rules[10] = "-j DROP"
    rules[990] = "-j RETURN"
    t.set_chain("cali-big", rules)
    res = t.apply()
    assert res.ok and res.lines_written <= 4
    assert plain(fake, "cali-big") == norm(rules)


def test_large_rewrite_prefers_flush_when_shorter() -> None:
    fake, t, _ = make_table()
    t.set_chain("cali-a", big_chain(100))
    assert t.apply().ok
    new = [f"-j MARK --set-mark {i + 5000}" for i in range(10)]
    t.set_chain("cali-a", new)
    res = t.apply()
    assert res.ok and res.lines_written == 11  # -F + 10 appends beats 10 -R + 90 -D
    assert plain(fake, "cali-a") == norm(new)


def test_drift_repair_flushed_chain() -> None:
    fake, t, _ = make_table()
    rules = big_chain(30)
    t.set_chain("cali-x", rules)
    assert t.apply().ok
    fake.external("-F cali-x")
    assert t.apply().lines_written == 0  # we do not notice until a refresh...
    t.invalidate()
    res = t.apply()  # ...which repairs it
    assert res.ok and res.lines_written == 30
    assert plain(fake, "cali-x") == norm(rules)


def test_drift_repair_deleted_rule_is_one_line() -> None:
    fake, t, _ = make_table()
    rules = big_chain(100)
    t.set_chain("cali-x", rules)
    assert t.apply().ok
    fake.external("-D cali-x 40")
    t.invalidate()
    res = t.apply()
    assert res.ok and res.lines_written == 1
    assert plain(fake, "cali-x") == norm(rules)


def test_drift_repair_foreign_rule_in_our_chain_rewrites_it() -> None:
    fake, t, _ = make_table()
    t.set_chain("cali-x", ["-j ACCEPT", "-j DROP"])
    assert t.apply().ok
    fake.external("-I cali-x 2 -j RETURN")
    t.invalidate()
    assert t.apply().ok
    assert plain(fake, "cali-x") == ["-j ACCEPT", "-j DROP"]
    assert all(ours(fake, "cali-x"))


def test_drift_repair_deleted_and_moved_hooks() -> None:
    fake = FakeIptables()
    fake.external("-A INPUT -j ACCEPT")
    fake, t, _ = make_table(fake)
    t.set_chain("cali-a", ["-j DROP"])
    t.set_hook("INPUT", ["-j cali-a", "-p udp -j cali-a"])
    assert t.apply().ok
    # Deleted.
    fake.external("-D INPUT 1")
    t.invalidate()
    res = t.apply()
    assert res.ok and res.lines_written == 1
    assert plain(fake, "INPUT") == ["-j cali-a", "-p udp -j cali-a", "-j ACCEPT"]
    # Moved below a foreign rule: someone deletes it and re-adds the same rule at the end.
    moved = fake.rules("INPUT")[0]
    fake.external("-D INPUT 1")
    fake.external(f"-A INPUT {moved}")
    assert plain(fake, "INPUT") == ["-p udp -j cali-a", "-j ACCEPT", "-j cali-a"]
    t.invalidate()
    res = t.apply()
    assert res.ok and res.lines_written <= 3
    assert plain(fake, "INPUT") == ["-j cali-a", "-p udp -j cali-a", "-j ACCEPT"]
    # A foreign rule inserted above ours: ours go back to the top, the foreign rule stays.
    fake.external("-I INPUT 1 -j LOG")
    t.invalidate()
    assert t.apply().ok
    assert plain(fake, "INPUT") == ["-j cali-a", "-p udp -j cali-a", "-j LOG", "-j ACCEPT"]


def test_hook_change_and_removal_keep_foreign_rules() -> None:
    fake = FakeIptables()
    fake.external("-A FORWARD -j ACCEPT")
    fake, t, _ = make_table(fake)
    t.set_chain("cali-a", ["-j DROP"])
    t.set_chain("cali-b", ["-j DROP"])
    t.set_hook("FORWARD", ["-j cali-a"])
    assert t.apply().ok
    t.set_hook("FORWARD", ["-j cali-b", "-j cali-a"])
    assert t.apply().ok
    assert plain(fake, "FORWARD") == ["-j cali-b", "-j cali-a", "-j ACCEPT"]
    t.set_hook("FORWARD", ())
    assert t.apply().ok
    assert plain(fake, "FORWARD") == ["-j ACCEPT"]


def test_stale_hooks_in_a_hooked_chain_are_removed() -> None:
    fake, old, _ = make_table()
    old.set_chain("cali-a", ["-j DROP"])
    old.set_hook("INPUT", ["-j cali-a", "-p tcp -j cali-a"])
    assert old.apply().ok
    fake.external("-A INPUT -j ACCEPT")
    _, t, _ = make_table(fake)  # restarted felix, new hook layout
    t.set_chain("cali-a", ["-j DROP"])
    t.set_hook("INPUT", ["-p udp -j cali-a"])
    assert t.apply().ok
    assert plain(fake, "INPUT") == ["-p udp -j cali-a", "-j ACCEPT"]


def test_model_stays_right_after_external_chain_deletion() -> None:
    fake, t, _ = make_table()
    t.set_chain("cali-x", ["-j ACCEPT"])
    t.set_chain("cali-y", ["-j DROP"])
    assert t.apply().ok
    fake.external("-F cali-x")
    fake.external("-X cali-x")
    t.set_chain("cali-x", ["-j RETURN"])  # our model says cali-x exists: -R fails
    res = t.apply()
    assert res.ok, res
    assert plain(fake, "cali-x") == ["-j RETURN"]
    assert plain(fake, "cali-y") == ["-j DROP"]


def test_failure_isolated_by_bisection() -> None:
    fake, t, stats = make_table()
    names = [f"cali-c{i}" for i in range(64)]
    for n in names:
        t.set_chain(n, [f"-j MARK --set-mark {n[6:]}"])
    fake.fail_chains = {"cali-c5", "cali-c41"}
    res = t.apply()
    assert not res.ok and res.failed_chains == {"cali-c5", "cali-c41"}
    assert user_chains(fake) == set(names) - {"cali-c5", "cali-c41"}
    # Bisection: at most 1 + 2 * failures * log2(64) restores, not one per chain.
    assert fake.restore_count <= 1 + 2 * 2 * 6
    assert t.dirty and stats.iptables_restore_errors >= 1
    fake.fail_chains = set()
    res = t.apply()
    assert res.ok and user_chains(fake) == set(names)


def test_referrers_of_a_failed_new_chain_fail_closed_instead_of_waiting() -> None:
    # A new chain the kernel rejects must not hold back its referrers (e.g. the dispatch
    # chains every other endpoint needs): they go ahead with a DROP in place of the jump,
    # and get the real jump once the chain is programmed.
    fake, t, _ = make_table()
    t.set_chain("cali-bad", ["-j DROP"])
    t.set_chain("cali-mid", ["-i x -j cali-bad", "-j ACCEPT"])
    t.set_chain("cali-ok", ["-j ACCEPT"])
    t.set_hook("INPUT", ["-j cali-mid"])
    fake.fail_chains = {"cali-bad"}
    res = t.apply()
    assert res.failed_chains == {"cali-bad"}
    assert user_chains(fake) == {"cali-ok", "cali-mid"}
    assert plain(fake, "cali-mid") == ["-i x -j DROP", "-j ACCEPT"]
    assert plain(fake, "INPUT") == ["-j cali-mid"]
    fake.fail_chains = set()
    assert t.apply().ok
    assert plain(fake, "cali-mid") == ["-i x -j cali-bad", "-j ACCEPT"]
    t.invalidate()
    assert t.apply().lines_written == 0


def test_blocked_chains_are_not_entered_until_unblocked() -> None:
    fake, t, _ = make_table()
    t.set_chain("cali-ep", ["-j ACCEPT"])
    t.set_chain("cali-disp", ["-o a -g cali-ep", "-j DROP"])
    assert t.apply().ok
    t.set_blocked(frozenset({"cali-ep"}))
    assert t.dirty and t.apply().ok
    assert plain(fake, "cali-disp") == ["-o a -j DROP", "-j DROP"]
    assert plain(fake, "cali-ep") == ["-j ACCEPT"]  # still there, just not entered
    t.invalidate()
    assert t.apply().lines_written == 0
    t.set_blocked(frozenset())
    assert t.apply().ok
    assert plain(fake, "cali-disp") == ["-o a -g cali-ep", "-j DROP"]


def test_referrer_of_an_existing_chain_whose_update_fails_is_programmed() -> None:
    fake, t, _ = make_table()
    t.set_chain("cali-pol", ["-j ACCEPT"])
    t.set_chain("cali-ep", ["-j DROP"])
    assert t.apply().ok
    t.set_chain("cali-pol", ["-j DROP"])
    t.set_chain("cali-ep", ["-j cali-pol", "-j DROP"])
    fake.fail_chains = {"cali-pol"}
    res = t.apply()
    assert res.failed_chains == {"cali-pol"}
    assert plain(fake, "cali-pol") == ["-j ACCEPT"]  # old version kept, still exists
    assert plain(fake, "cali-ep") == ["-j cali-pol", "-j DROP"]


def test_cleanup_only_after_allow_cleanup_and_never_foreign() -> None:
    fake = FakeIptables()
    # Left over from a previous run, plus someone else's chain and rules.
    _, old, _ = make_table(fake)
    old.set_chain("cali-old", ["-j DROP"])
    old.set_chain("cali-old2", ["-j cali-old"])
    old.set_chain("cali-keep", ["-j ACCEPT"])
    old.set_hook("INPUT", ["-j cali-old2", "-j cali-keep"])
    assert old.apply().ok
    fake.external(":KUBE-X - [0:0]")
    fake.external("-A KUBE-X -j ACCEPT")
    fake.external("-A INPUT -j KUBE-X")
    fake.external(":cali-foreign-ref - [0:0]")
    fake.external("-A FORWARD -j cali-foreign-ref")

    _, t, _ = make_table(fake)
    t.set_chain("cali-keep", ["-j ACCEPT"])
    t.set_chain("cali-new", ["-j DROP"])
    assert t.apply().ok
    assert user_chains(fake) == {"cali-old", "cali-old2", "cali-keep", "cali-new", "KUBE-X",
                                 "cali-foreign-ref"}
    assert plain(fake, "INPUT") == ["-j cali-old2", "-j cali-keep", "-j KUBE-X"]
    t.allow_cleanup()
    assert t.dirty
    res = t.apply()
    assert res.ok, res
    assert user_chains(fake) == {"cali-keep", "cali-new", "KUBE-X", "cali-foreign-ref"}
    assert plain(fake, "INPUT") == ["-j KUBE-X"]
    assert plain(fake, "FORWARD") == ["-j cali-foreign-ref"]
    assert plain(fake, "KUBE-X") == ["-j ACCEPT"]
    assert not t.dirty


def test_removed_chain_and_its_references_go_in_one_restore() -> None:
    fake, t, _ = make_table()
    t.set_chain("cali-x", ["-j DROP"])
    t.set_chain("cali-top", ["-j cali-x"])
    assert t.apply().ok
    t.remove_chain("cali-x")
    t.set_chain("cali-top", ["-j ACCEPT"])
    calls = fake.restore_count
    res = t.apply()
    assert res.ok and fake.restore_count == calls + 1
    assert user_chains(fake) == {"cali-top"}


def test_remove_chain_before_cleanup_leaves_unknown_chains_alone() -> None:
    fake = FakeIptables()
    fake.external(":cali-prev - [0:0]")
    _, t, _ = make_table(fake)
    t.remove_chain("cali-prev")
    assert t.apply().ok
    assert "cali-prev" in user_chains(fake)


def test_stats_are_shared_between_tables() -> None:
    stats = DataplaneStats()
    fake, filt, _ = make_table(stats=stats)
    _, nat, _ = make_table(fake, table="nat", stats=stats)
    filt.set_chain("cali-a", ["-j ACCEPT", "-j DROP"])
    nat.set_chain("cali-n", ["-j MASQUERADE"])
    nat.set_hook("POSTROUTING", ["-j cali-n"])
    assert filt.apply().ok and nat.apply().ok
    assert stats.iptables_chains == 2 and stats.iptables_rules == 4
    filt.remove_chain("cali-a")
    assert filt.apply().ok
    assert stats.iptables_chains == 1 and stats.iptables_rules == 2
