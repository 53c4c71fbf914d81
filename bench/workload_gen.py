"""Deterministic synthetic cluster contents (endpoints, profiles, tiered policies) as datastore
JSON, shaped like bench/calc_full.py: labels from small vocabularies, selectors that match a
fraction of endpoints, rules that reference selectors and tags (so ipsets are needed)."""

from __future__ import annotations

import random
from typing import Any

APPS = [f"app{i}" for i in range(40)]
ROLES = ["web", "db", "cache", "worker", "frontend"]
ENVS = ["prod", "staging", "dev"]
N_PROFILES = 100
N_TIERS = 5


def local_ifname(i: int) -> str:
    return f"calib{i:06d}"


def local_ip(i: int) -> str:
    return f"10.65.{i >> 8 & 255}.{i & 255}"


def remote_ip(i: int) -> str:
    return f"10.{66 + (i >> 16)}.{i >> 8 & 255}.{i & 255}"


def labels(rng: random.Random) -> dict[str, str]:
    return {"app": rng.choice(APPS), "role": rng.choice(ROLES), "env": rng.choice(ENVS)}


def endpoint(rng: random.Random, ifname: str, ip: str, profiles: list[str] | None = None,
             extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    lab = labels(rng)
    lab.update(extra_labels or {})
    return {"state": "active", "name": ifname, "mac": "ee:ee:ee:ee:ee:ee",
            "profile_ids": profiles or [f"prof{rng.randrange(N_PROFILES)}"],
            "labels": lab, "ipv4_nets": [f"{ip}/32"], "ipv4_gateway": "169.254.1.1"}


def selector(rng: random.Random) -> str:
    return rng.choice([
        f'app == "{rng.choice(APPS)}"',
        f'role == "{rng.choice(ROLES)}" && env == "{rng.choice(ENVS)}"',
        f'app in {{"{rng.choice(APPS)}", "{rng.choice(APPS)}"}} && has(role)',
        f'env != "{rng.choice(ENVS)}" && role == "{rng.choice(ROLES)}"',
    ])


def rules(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(n):
        kind = rng.randrange(3)
        ports = sorted(rng.sample(range(1, 10000), rng.randint(1, 4)))
        if kind == 0:
            out.append({"action": "allow", "protocol": "tcp", "dst_ports": ports,
                        "src_selector": selector(rng)})
        elif kind == 1:
            out.append({"action": "allow", "protocol": "udp", "dst_ports": ports,
                        "src_tag": f"tag{rng.randrange(50)}"})
        else:
            out.append({"action": "deny", "src_net": f"192.168.{rng.randrange(256)}.0/24"})
    return out


def port_rules(n: int, base: int = 1000) -> list[dict[str, Any]]:
    """n distinct single-port rules (for rule-count sweeps)."""
    return [{"action": "allow", "protocol": "tcp", "dst_ports": [base + k]} for k in range(n)]


# A profile every local endpoint uses (B5), and a selector every policy references (B6).
SHARED_PROFILE = "shared"
B6_SELECTOR = 'b6 == "yes"'


def shared_profile_rules(port: int) -> dict[str, Any]:
    return {"inbound_rules": [{"action": "allow", "protocol": "tcp", "dst_ports": [port]},
                              {"action": "allow", "protocol": "udp", "dst_ports": [5353]}],
            "outbound_rules": [{"action": "allow"}]}


def big_ip(i: int) -> str:
    return f"10.{128 + (i >> 16)}.{i >> 8 & 255}.{i & 255}"
