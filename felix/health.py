"""HTTP /liveness and /readiness for orchestrators and operators.

live  = every essential greenlet is running and has checked in recently;
ready = in sync with the datastore and the last dataplane apply succeeded.
Both answer 200 or 503 with a short JSON reason.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    from felix.agent import Agent

log = logging.getLogger(__name__)

STALE_AFTER = 30.0  # seconds without a heartbeat before a component counts as stuck


def liveness(agent: "Agent") -> tuple[bool, dict[str, object]]:
    now = time.monotonic()
    problems = [f"{g.name} stopped" for g in agent.essential_greenlets() if g.dead]
    for name, beat in agent.heartbeats().items():
        if now - beat > STALE_AFTER:
            problems.append(f"{name} has not checked in for {now - beat:.0f}s")
    return (not problems, {"live": not problems, "problems": problems})


def readiness(agent: "Agent") -> tuple[bool, dict[str, object]]:
    reasons = []
    if agent.sync_status.value != "in-sync":
        reasons.append(f"datastore {agent.sync_status.value}")
    p = agent.pipeline
    if p is None:
        reasons.append("waiting for first datastore snapshot")
    else:
        dp = p.dataplane
        if not dp.in_sync or p.stats.applies == 0:
            reasons.append("dataplane not yet programmed")
        elif not dp.last_apply_ok:
            reasons.append(f"last dataplane apply failed: {dp.last_error}"[:300])
    return (not reasons, {"ready": not reasons, "reasons": reasons})


def make_app(agent: "Agent") -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, object], start_response: Callable[..., object]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == "/liveness":
            ok, body = liveness(agent)
        elif path == "/readiness":
            ok, body = readiness(agent)
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /liveness or /readiness\n"]
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "application/json")])
        return [json.dumps(body).encode() + b"\n"]
    return app


def serve(agent: "Agent", host: str, port: int) -> None:
    from gevent.pywsgi import WSGIServer
    WSGIServer((host, port), make_app(agent), log=None, error_log=log).serve_forever()
