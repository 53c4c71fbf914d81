"""Time for the calculation graph to produce the full desired state from a cold start:
1,000 local endpoints, 10,000 remote ones, 100 profiles (with tags and labels) and 200 tiered
policies with selectors whose rules use selectors and tags. Prints the time to feed the
updates, the time of the first take_messages (all rendering and diffing), the output's size
(chains, rules, ipsets, members, messages), and the cost of a few incremental changes.

Run: .venv/bin/python bench/calc_full.py [--local N] [--remote N] [--seed N] [--memory]
(--memory: also what the calculation graph holds once built, by tracemalloc; slower)
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc

from felix.calc.graph import CalcGraph
from felix.messages import ChainSet, IpsetSet, Message
from felix.model.frozen import FrozenDict
from felix.model.keys import (PolicyKey, ProfileLabelsKey, ProfileRulesKey, ProfileTagsKey,
                              TierKey, WorkloadEndpointKey)
from felix.model.objects import (ModelUpdate, Policy, PortRange, ProfileLabels, ProfileRules,
                                 ProfileTags, Rule, Tier, WorkloadEndpoint)
from felix.model.selector import parse_selector
from felix.rules.settings import RuleSettings

APPS = [f"app{i}" for i in range(40)]
ROLES = ["web", "db", "cache", "worker", "frontend"]
ENVS = ["prod", "staging", "dev"]


def endpoint(rng: random.Random, i: int, host: str) -> WorkloadEndpoint:
    key = WorkloadEndpointKey(host, "k8s", f"pod{i}", "eth0")
    return WorkloadEndpoint(
        key, f"cali{i:011x}", "active", mac="ee:ee:ee:ee:ee:ee",
        profile_ids=(f"prof{rng.randrange(100)}",),
        labels=FrozenDict({"app": rng.choice(APPS), "role": rng.choice(ROLES),
                           "env": rng.choice(ENVS)}),
        ipv4_nets=(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32",),
        ipv6_nets=(f"fd00::{i:x}/128",))


def sel(rng: random.Random) -> str:
    return rng.choice([
        f'app == "{rng.choice(APPS)}"',
        f'role == "{rng.choice(ROLES)}" && env == "{rng.choice(ENVS)}"',
        f'app in {{"{rng.choice(APPS)}", "{rng.choice(APPS)}"}} && has(role)',
        f'env != "{rng.choice(ENVS)}" && role == "{rng.choice(ROLES)}"',
    ])


def rules(rng: random.Random, n: int) -> tuple[Rule, ...]:
    out = []
    for _ in range(n):
        kind = rng.randrange(3)
        ports = tuple(PortRange(p, p) for p in rng.sample(range(1, 10000), rng.randint(1, 4)))
        if kind == 0:
            out.append(Rule(protocol="tcp", dst_ports=ports,
                            src_selector=parse_selector(sel(rng))))
        elif kind == 1:
            out.append(Rule(protocol="udp", dst_ports=ports, src_tag=f"tag{rng.randrange(50)}"))
        else:
            out.append(Rule(action="deny", src_net=f"192.168.{rng.randrange(256)}.0/24"))
    return tuple(out)


def updates(rng: random.Random, n_local: int, n_remote: int) -> list[ModelUpdate]:
    ups: list[ModelUpdate] = []
    for p in range(100):
        pid = f"prof{p}"
        ups.append(ModelUpdate(ProfileRulesKey(pid), ProfileRules(pid, rules(rng, 3),
                                                                  (Rule(),))))
        ups.append(ModelUpdate(ProfileTagsKey(pid), ProfileTags(pid, (f"tag{p % 50}",))))
        ups.append(ModelUpdate(ProfileLabelsKey(pid), ProfileLabels(
            pid, FrozenDict({"team": f"team{p % 10}"}))))
    for t in range(5):
        ups.append(ModelUpdate(TierKey(f"tier{t}"), Tier(f"tier{t}", float(t))))
    for j in range(200):
        key = PolicyKey(f"tier{j % 5}", f"pol{j}")
        ups.append(ModelUpdate(key, Policy(key, parse_selector(sel(rng)), float(j),
                                           rules(rng, 4), rules(rng, 2))))
    for i in range(n_local):
        ep = endpoint(rng, i, "local")
        ups.append(ModelUpdate(ep.key, ep))
    for i in range(n_remote):
        ep = endpoint(rng, n_local + i, f"host{i % 100}")
        ups.append(ModelUpdate(ep.key, ep))
    rng.shuffle(ups)
    return ups


def summarize(msgs: list[Message]) -> str:
    chains = [m for m in msgs if isinstance(m, ChainSet)]
    sets = [m for m in msgs if isinstance(m, IpsetSet)]
    return (f"{len(msgs)} messages: {len(chains)} chains, "
            f"{sum(len(c.rules) for c in chains)} rules, {len(sets)} ipsets, "
            f"{sum(len(s.members) for s in sets)} members")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--local", type=int, default=1000)
    ap.add_argument("--remote", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--memory", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    ups = updates(rng, args.local, args.remote)
    if args.memory:
        # The model objects (built above) are the datastore side's: not counted.
        tracemalloc.start()
    g = CalcGraph(RuleSettings("local"))
    t0 = time.perf_counter()
    for u in ups:
        g.on_update(u)
    t1 = time.perf_counter()
    g.on_in_sync()
    msgs = g.take_messages()
    t2 = time.perf_counter()
    print(f"{len(ups)} updates: on_update {t1 - t0:.2f} s, take_messages {t2 - t1:.2f} s, "
          f"total {t2 - t0:.2f} s")
    print(summarize(msgs))
    print(g.stats)
    if args.memory:
        del msgs  # handed to the dataplane and dropped there
        gc.collect()
        snap = tracemalloc.take_snapshot()
        tracemalloc.stop()
        top = snap.statistics("lineno")
        print(f"calc graph holds {sum(s.size for s in top) / 1e6:.1f} MB; biggest sites:")
        for stat in top[:8]:
            print(f"  {stat.size / 1e6:6.1f} MB  {stat.traceback}")

    def timed(label: str, update: ModelUpdate) -> None:
        t = time.perf_counter()
        g.on_update(update)
        out = g.take_messages()
        dt = time.perf_counter() - t
        print(f"{label}: {dt * 1000:.1f} ms -> "
              f"{sorted({type(m).__name__ for m in out})} x{len(out)}")

    ep = endpoint(rng, args.local + args.remote + 1, "local")
    timed("add one local endpoint", ModelUpdate(ep.key, ep))
    timed("delete one local endpoint", ModelUpdate(ep.key, None))
    remote = endpoint(random.Random(99), args.local + 5, "host5")
    relabelled = WorkloadEndpoint(remote.key, remote.name, "active",
                                  profile_ids=remote.profile_ids,
                                  labels=FrozenDict({"app": "app1", "role": "db",
                                                     "env": "prod"}),
                                  ipv4_nets=remote.ipv4_nets, ipv6_nets=remote.ipv6_nets)
    timed("relabel one remote endpoint", ModelUpdate(remote.key, relabelled))
    timed("change one profile's rules", ModelUpdate(
        ProfileRulesKey("prof7"), ProfileRules("prof7", rules(rng, 3), (Rule(),))))
    key = PolicyKey("tier0", "pol0")
    timed("change one policy's selector", ModelUpdate(key, Policy(
        key, parse_selector('role == "web"'), 0.0, rules(rng, 4), rules(rng, 2))))


if __name__ == "__main__":
    main()
