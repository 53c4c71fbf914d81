"""An immutable, hashable mapping for labels inside frozen model objects."""

from __future__ import annotations

from typing import Iterator, Mapping


class FrozenDict(Mapping[str, str]):
    """A read-only str→str mapping that can live in a frozen dataclass and be hashed."""

    __slots__ = ("_d", "_hash")

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        self._d: dict[str, str] = dict(data or {})
        self._hash: int | None = None

    def __getitem__(self, key: str) -> str:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._d.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDict):
            return self._d == other._d
        if isinstance(other, Mapping):
            return self._d == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenDict({self._d!r})"


EMPTY = FrozenDict()
