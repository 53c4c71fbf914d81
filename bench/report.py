"""Benchmark figures: each with its unit, its kernel floor (when it has one, printed as a
ratio) and its goal (printed as met/missed; goals are targets, not assertions)."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Figure:
    bench: str
    name: str
    value: float
    unit: str
    floor: float | None = None
    goal: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.floor is None or not self.floor or math.isnan(self.value):
            return None
        return self.value / self.floor


@dataclass
class Report:
    mode: str
    notes: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, bench: str, name: str, value: float, unit: str, floor: float | None = None,
            goal: str = "", check: Callable[[float], bool] | None = None) -> Figure:
        met = None if check is None or math.isnan(value) else bool(check(value))
        f = Figure(bench, name, value, unit, floor, goal, met)
        self.figures.append(f)
        print("  " + _row(f), flush=True)
        return f

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def table(self) -> str:
        head = f"{'bench':5} {'figure':44} {'value':>12} {'floor':>10} {'ratio':>7}  goal"
        lines = [head, "-" * len(head)] + [_row(f) for f in self.figures]
        if self.notes:
            lines += ["", "notes:"] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)

    def save(self, directory: str, name: str) -> str:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{time.strftime('%Y-%m-%d-%H%M')}-{name}.json")
        figs = [dict(asdict(f), ratio=f.ratio) for f in self.figures]
        with open(path, "w") as fh:
            json.dump({"mode": self.mode, "notes": self.notes, "figures": figs,
                       "extra": self.extra}, fh, indent=1, default=str)
        return path


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if math.isnan(v):
        return "n/a"
    if unit == "s" and v < 1:
        return f"{v * 1000:.1f} ms"
    if float(v).is_integer() and abs(v) >= 1:
        return f"{int(v)} {unit}".strip()
    return f"{v:.3g} {unit}".strip()


def _row(f: Figure) -> str:
    ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
    mark = "" if f.met is None else ("met" if f.met else "MISSED")
    goal = f"{f.goal} [{mark}]" if f.goal else ""
    return (f"{f.bench:5} {f.name:44} {_fmt(f.value, f.unit):>12} "
            f"{_fmt(f.floor, f.unit):>10} {ratio:>7}  {goal}")
