"""The demo's cluster: who runs where and which policy applies, as datastore writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.fv.harness.datastore import Datastore

HOSTNAME = "demo-host"
PORT = 8080  # every workload's agent serves TCP 8080


@dataclass(frozen=True)
class Role:
    name: str
    ip: str


ROLES = (Role("frontend", "10.65.0.10"), Role("backend", "10.65.0.20"),
         Role("db", "10.65.0.30"), Role("intruder", "10.65.0.40"))


def write_base_model(ds: Datastore, endpoints: dict[str, dict[str, Any]]) -> None:
    """A profile every workload uses (outbound open, inbound from the "app" tag only), and a
    tier "security" that decides before the profiles:
      - frontend: anyone may connect (it is the public entry point);
      - backend: only from frontend;
      - db: only from backend.
    """
    ds.profile("app", inbound=[{"src_tag": "app"}], outbound=[{}], tags=["app"])
    ds.profile("untrusted", inbound=[], outbound=[{}], tags=["untrusted"])
    ds.tier("security", 10)
    ds.policy("security", "public-frontend", "role == 'frontend'", order=10,
              inbound=[{"protocol": "tcp", "dst_ports": [PORT]}], outbound=[{}])
    ds.policy("security", "backend-from-frontend", "role == 'backend'", order=20,
              inbound=[{"protocol": "tcp", "src_selector": "role == 'frontend'"}], outbound=[{}])
    db_access(ds, ("backend",))
    for name, data in endpoints.items():
        ds.endpoint(HOSTNAME, name, data, orchestrator="demo")


def db_access(ds: Datastore, roles: tuple[str, ...]) -> None:
    sel = " || ".join(f"role == '{r}'" for r in roles)
    ds.policy("security", "db-from-backend", "role == 'db'", order=30,
              inbound=[{"protocol": "tcp", "dst_ports": [PORT], "src_selector": sel}],
              outbound=[{}])


def quarantine_intruder(ds: Datastore) -> None:
    """A tier before "security": drop everything from the intruder, pass the rest on."""
    ds.tier("quarantine", 1)
    ds.policy("quarantine", "block-intruder", "all()", order=1,
              inbound=[{"action": "deny", "src_selector": "role == 'intruder'"},
                       {"action": "next-tier"}],
              outbound=[{"action": "next-tier"}])


def expected(db_clients: tuple[str, ...], quarantined: bool) -> dict[tuple[str, str], bool]:
    """(source role, destination role) → may connect to TCP 8080."""
    allowed = {"frontend": {"frontend", "backend", "db", "intruder"},  # public
               "backend": {"frontend"},
               "db": set(db_clients)}
    out = {}
    for src in ROLES:
        for dst in ROLES:
            if src == dst:
                continue
            # The intruder's profile accepts nothing inbound and no tier policy selects it.
            ok = dst.name != "intruder" and src.name in allowed.get(dst.name, set())
            if quarantined and src.name == "intruder":
                ok = False
            out[(src.name, dst.name)] = ok
    return out
