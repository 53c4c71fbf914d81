"""Time to parse 10,000 workload endpoint values and 1,000 profiles into model objects.

Run: .venv/bin/python bench/model_parse.py [--repeat N]
Each endpoint and profile is distinct (different nets, names, tags) and the address caches
are cleared before each round, so they only help as much as with real data (shared gateways).
"""

from __future__ import annotations

import argparse
import json
import time

from felix.model import nets
from felix.model.parse import ModelParser


def endpoints(n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        a, b = divmod(i, 250)
        value = {"state": "active", "name": f"cali{i:011d}", "mac": "ee:ee:ee:ee:ee:ee",
                 "profile_ids": [f"prof{i % 1000}"], "labels": {"role": f"r{i % 50}", "app": "x"},
                 "ipv4_nets": [f"10.65.{a}.{b + 1}/32"], "ipv6_nets": [f"fd00:65::{i:x}/128"],
                 "ipv4_gateway": "169.254.1.1", "ipv6_gateway": "fe80::1"}
        out.append((f"/calico/v1/host/h{i % 100}/workload/k8s/ns.pod{i}/endpoint/eth0",
                    json.dumps(value)))
    return out


def profiles(n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        inbound = [{"action": "allow", "protocol": "tcp", "src_tag": f"prof{i}",
                    "dst_ports": [80, 443, "8000:8080"]},
                   {"action": "allow", "src_selector": f"role == 'r{i % 50}'"},
                   {"action": "deny", "src_net": f"10.{i % 256}.0.0/16"}]
        outbound = [{"action": "allow"}]
        out.append((f"/calico/v1/policy/profile/prof{i}/rules",
                    json.dumps({"inbound_rules": inbound, "outbound_rules": outbound})))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data = endpoints(10_000) + profiles(1_000)
    best = float("inf")
    for _ in range(args.repeat):
        # Cold caches each round: every value here is distinct, as in a real snapshot.
        nets._net.cache_clear()
        nets._addr.cache_clear()
        parser = ModelParser()
        t0 = time.perf_counter()
        results = [parser.parse(p, v) for p, v in data]
        best = min(best, time.perf_counter() - t0)
        bad = [u for u in results if u is None or u.value is None]
        assert not bad, bad[:3]
    print(f"parsed 10,000 endpoints + 1,000 profiles (3 rules each): best of {args.repeat}: "
          f"{best * 1000:.0f} ms ({best / len(data) * 1e6:.1f} us per value)")


if __name__ == "__main__":
    main()
