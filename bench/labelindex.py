"""Benchmark LabelIndex: 10,000 items (endpoints) × 500 selectors, 100 parents (profiles).

Prints the time to load (selectors first, and items first), then mean / p99 of one item's
label change and of one parent's label change, with the match events they caused.
Run: .venv/bin/python bench/labelindex.py [--items N] [--selectors N] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Callable, Hashable

from felix.calc.labelindex import LabelIndex
from felix.model.selector import Selector, parse_selector

APPS = [f"app{i}" for i in range(60)]
ROLES = ["web", "db", "cache", "worker", "frontend"]
ENVS = ["prod", "staging", "dev"]
NAMESPACES = [f"ns{i}" for i in range(30)]
TEAMS = [f"team{i}" for i in range(20)]


def make_selectors(rng: random.Random, n: int) -> list[Selector]:
    def pick(seq: list[str], k: int) -> str:
        return ", ".join(f'"{v}"' for v in rng.sample(seq, k))

    shapes: list[Callable[[], str]] = [
        lambda: f'app == "{rng.choice(APPS)}"',
        lambda: f'role in {{{pick(ROLES, 2)}}}',
        lambda: f'app == "{rng.choice(APPS)}" && env == "{rng.choice(ENVS)}"',
        lambda: f'ns == "{rng.choice(NAMESPACES)}" && role == "{rng.choice(ROLES)}"',
        lambda: f'has(quarantine)',
        lambda: f'env != "{rng.choice(ENVS)}" && team == "{rng.choice(TEAMS)}"',
        lambda: f'!has(quarantine) && app in {{{pick(APPS, 3)}}}',
        lambda: f'(role == "web" || role == "frontend") && ns == "{rng.choice(NAMESPACES)}"',
        lambda: f'version not in {{"v1", "v2"}} && app == "{rng.choice(APPS)}"',
        lambda: f'has(team) && team == "{rng.choice(TEAMS)}" && env in {{{pick(ENVS, 2)}}}',
    ]
    return [parse_selector(rng.choice(shapes)()) for _ in range(n)]


def item_labels(rng: random.Random) -> dict[str, str]:
    labels = {"app": rng.choice(APPS), "role": rng.choice(ROLES), "env": rng.choice(ENVS),
              "version": f"v{rng.randint(1, 5)}"}
    if rng.random() < 0.02:
        labels["quarantine"] = "true"
    return labels


def parent_labels(rng: random.Random) -> dict[str, str]:
    return {"ns": rng.choice(NAMESPACES), "team": rng.choice(TEAMS)}


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--selectors", type=int, default=500)
    ap.add_argument("--parents", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    events = 0

    def on_event(_sel: Hashable, _item: Hashable) -> None:
        nonlocal events
        events += 1

    selectors = make_selectors(rng, args.selectors)
    parents = {f"prof{i}": parent_labels(rng) for i in range(args.parents)}
    parent_ids = list(parents)
    items = {f"ep{i}": (item_labels(rng), rng.sample(parent_ids, rng.choice((1, 1, 2))))
             for i in range(args.items)}
    print(f"{args.items} items, {len(selectors)} selectors "
          f"({len(set(selectors))} distinct), {args.parents} parents")

    def load(selectors_first: bool) -> LabelIndex:
        idx = LabelIndex(on_event, on_event)

        def add_selectors() -> None:
            for i, s in enumerate(selectors):
                idx.update_selector(f"s{i}", s)

        def add_parents_and_items() -> None:
            for p, lab in parents.items():
                idx.update_parent_labels(p, lab)
            for i, (lab, ps) in items.items():
                idx.update_item(i, lab, ps)

        if selectors_first:
            add_selectors()
        add_parents_and_items()
        if not selectors_first:
            add_selectors()
        return idx

    for selectors_first in (True, False):
        events = 0
        t0 = time.perf_counter()
        idx = load(selectors_first)
        elapsed = time.perf_counter() - t0
        order = "selectors, then items" if selectors_first else "items, then selectors"
        print(f"load ({order}): {elapsed:.2f} s, {events} matches")
    total = sum(len(idx.matches(f"s{i}")) for i in range(len(selectors)))
    print(f"matches in index: {total}")

    item_ids = list(items)
    samples, counts = [], []
    for _ in range(3000):
        item_id = rng.choice(item_ids)
        labels, ps = items[item_id]
        labels = dict(labels)
        key = rng.choice(["app", "role", "env", "version"])
        labels[key] = item_labels(rng)[key]
        items[item_id] = (labels, ps)
        events = 0
        t0 = time.perf_counter()
        idx.update_item(item_id, labels, ps)
        samples.append(time.perf_counter() - t0)
        counts.append(events)
    print(f"item label change: mean {statistics.mean(samples) * 1e6:.1f} µs, "
          f"p99 {p99(samples) * 1e6:.1f} µs, mean {statistics.mean(counts):.2f} events")

    members = {p: sum(1 for _, ps in items.values() if p in ps) for p in parent_ids}
    samples, counts = [], []
    for _ in range(300):
        pid = rng.choice(parent_ids)
        labels = dict(parents[pid])
        key = rng.choice(["ns", "team"])
        labels[key] = parent_labels(rng)[key]
        parents[pid] = labels
        events = 0
        t0 = time.perf_counter()
        idx.update_parent_labels(pid, labels)
        samples.append(time.perf_counter() - t0)
        counts.append(events)
    print(f"parent label change (~{statistics.mean(members.values()):.0f} items per parent): "
          f"mean {statistics.mean(samples) * 1e3:.2f} ms, p99 {p99(samples) * 1e3:.2f} ms, "
          f"mean {statistics.mean(counts):.1f} events")


if __name__ == "__main__":
    main()
