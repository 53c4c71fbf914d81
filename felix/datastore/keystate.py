"""Felix's memory of the datastore: the last value (and modifiedIndex) of every leaf key.

Kept so a resync sends downstream only what changed, and so a deleted directory can be
turned into one delete per leaf that was under it.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from felix.datastore.api import Update

# key -> (modifiedIndex, value)
Leaves = Mapping[str, tuple[int, str]]


class KeyState:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        return entry[1] if entry is not None else None

    def items(self) -> Iterator[tuple[str, str]]:
        for key, (_, value) in self._entries.items():
            yield key, value

    def apply_snapshot(self, leaves: Leaves) -> list[Update]:
        """Replace the state with a full snapshot; return only the differences."""
        updates: list[Update] = []
        old = self._entries
        for key, (index, value) in leaves.items():
            prev = old.get(key)
            # Compare values, not indexes: after a restore or a repopulated etcd every index
            # differs while most values are the same, and those must not be re-sent.
            if prev is None or prev[1] != value:
                updates.append((key, value))
        for key in old:
            if key not in leaves:
                updates.append((key, None))
        self._entries = dict(leaves)
        return updates

    def apply_set(self, key: str, value: str, modified_index: int) -> list[Update]:
        prev = self._entries.get(key)
        self._entries[key] = (modified_index, value)
        if prev is not None and prev[1] == value:
            return []
        return [(key, value)]

    def apply_delete(self, key: str, *, is_dir: bool) -> list[Update]:
        """Delete a leaf, or (is_dir) every known leaf below a directory."""
        if not is_dir:
            if self._entries.pop(key, None) is None:
                return []
            return [(key, None)]
        below = key.rstrip("/") + "/"
        gone = [k for k in self._entries if k.startswith(below)]
        for k in gone:
            del self._entries[k]
        return [(k, None) for k in gone]
