"""`make demo` end to end: `python -m demo` builds its sandbox, shows the matrix converge
before and after the policy change, points at status/metrics/health, and leaves no namespace
behind; `--keep` leaves a working sandbox that `--cleanup` removes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from demo.sandbox import STATE_FILE, netns_list

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHANGES = "changed: frontend -> db: deny => allow; intruder -> frontend: allow => deny"


def run_demo(*args: str, timeout: float = 90) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "demo", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=timeout)
    return p, time.monotonic() - start


@pytest.fixture(autouse=True)
def _root_and_no_kept_demo() -> None:
    if os.geteuid() != 0:
        pytest.skip("the demo needs root")
    if os.path.exists(STATE_FILE):
        pytest.fail(f"a demo is still set up ({STATE_FILE}): `python -m demo --cleanup` first")


def demo_namespaces(output: str) -> set[str]:
    return set(re.findall(r"\b(fdemo-[0-9a-f]{8}|fvw-[0-9a-f]{8})\b", output))


def test_demo_runs_end_to_end_within_a_minute_and_cleans_up() -> None:
    p, seconds = run_demo()
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    assert seconds < 60, seconds
    assert out.count(": converged in ") == 2, out
    assert CHANGES in out
    assert "NOT converged" not in out and "allow!" not in out and "deny!" not in out
    # Where to look, with working live values.
    assert "ETCDCTL_API=2 etcdctl" in out and '{"status": "up"}' in out
    assert "felix_endpoint_programming_seconds_count 4.0" in out
    assert '{"ready": true, "reasons": []}' in out
    assert "ip netns exec fdemo-" in out
    assert "is as the demo found it" in out or "others changed meanwhile" in out
    made = demo_namespaces(out)
    assert any(n.startswith("fdemo-") for n in made), out
    assert not made & netns_list()
    assert not os.path.exists(STATE_FILE)


def test_demo_keep_leaves_it_running_and_cleanup_removes_it() -> None:
    state: dict[str, list[str]] = {"namespaces": [], "dirs": []}
    host = "(not created)"
    try:
        p, _ = run_demo("--keep")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "make demo ARGS=--cleanup" in p.stdout
        with open(STATE_FILE) as f:
            state = json.load(f)
        host = state["namespaces"][0]
        assert set(state["namespaces"]) <= netns_list()
        # Still enforcing after the demo process is gone: frontend -> db open, intruder shut out.
        wl = {m.group(1): m.group(2) for m in re.finditer(r"(\w+) [\d.]+ in netns (fvw-[0-9a-f]+)",
                                                          p.stdout)}

        def connects(src: str, dst_ip: str) -> bool:
            return subprocess.run(["ip", "netns", "exec", wl[src], sys.executable, "-c",
                                   f"import socket; socket.create_connection(('{dst_ip}', 8080), 1)"],
                                  capture_output=True, timeout=20).returncode == 0
        assert connects("frontend", "10.65.0.30")
        assert not connects("intruder", "10.65.0.10")
        ready = subprocess.run(["ip", "netns", "exec", host, "curl", "-s",
                                "http://127.0.0.1:9099/readiness"], capture_output=True,
                               text=True, timeout=20)
        assert '"ready": true' in ready.stdout
    finally:
        c, _ = run_demo("--cleanup")
    assert c.returncode == 0, c.stdout + c.stderr
    assert host in c.stdout
    assert not set(state["namespaces"]) & netns_list()
    assert not os.path.exists(STATE_FILE)
    assert not any(os.path.exists(d) for d in state["dirs"])
