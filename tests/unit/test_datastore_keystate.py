"""KeyState: the syncer's memory, which turns snapshots into differences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from felix.datastore.keystate import KeyState

keys = st.sampled_from([f"/calico/v1/{a}/{b}" for a in "abc" for b in "xyz"] + ["/calico/v1/d"])
snapshots = st.dictionaries(keys, st.tuples(st.integers(1, 50), st.sampled_from(["1", "2", ""])))


def mirror_apply(mirror: dict[str, str], updates: list[tuple[str, str | None]]) -> None:
    for k, v in updates:
        if v is None:
            mirror.pop(k, None)
        else:
            mirror[k] = v


@settings(max_examples=200, deadline=None)
@given(st.lists(snapshots, min_size=1, max_size=5))
def test_snapshot_diffs_reproduce_each_snapshot_and_send_only_changes(
        seq: list[dict[str, tuple[int, str]]]) -> None:
    state = KeyState()
    mirror: dict[str, str] = {}
    for snap in seq:
        before = dict(mirror)
        updates = state.apply_snapshot(snap)
        mirror_apply(mirror, updates)
        assert mirror == {k: v for k, (_, v) in snap.items()}
        # Only changes: every update differs from what the consumer had, no key twice.
        assert len({k for k, _ in updates}) == len(updates)
        for k, v in updates:
            assert before.get(k) != v


def test_same_value_new_index_is_not_resent() -> None:
    state = KeyState()
    state.apply_snapshot({"/calico/v1/a": (5, "x")})
    assert state.apply_snapshot({"/calico/v1/a": (900, "x")}) == []
    assert state.apply_set("/calico/v1/a", "x", 901) == []
    assert state.apply_set("/calico/v1/a", "y", 902) == [("/calico/v1/a", "y")]


def test_directory_delete_removes_only_keys_below() -> None:
    state = KeyState()
    state.apply_snapshot({"/calico/v1/host/h1/a": (1, "1"), "/calico/v1/host/h1/b/c": (2, "2"),
                          "/calico/v1/host/h10/a": (3, "3")})
    gone = state.apply_delete("/calico/v1/host/h1", is_dir=True)
    assert sorted(gone) == [("/calico/v1/host/h1/a", None), ("/calico/v1/host/h1/b/c", None)]
    assert list(state.items()) == [("/calico/v1/host/h10/a", "3")]
    assert state.apply_delete("/calico/v1/host/h1/a", is_dir=False) == []
