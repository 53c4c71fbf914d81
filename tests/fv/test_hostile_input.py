"""Hostile datastore input while the real felix runs: a fixed corpus plus seeded hypothesis
inputs into every key type (tests/fv/hostile_corpus.py). Meanwhile felix must stay alive and
ready, two valid workloads keep exactly their matrix, a victim endpoint whose data turns
invalid is cut off with status `error` (and comes back when fixed), and no injected token
ever reaches iptables or ipsets."""

from __future__ import annotations

import collections
import re
import json
import os
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings

from felix.model import keys
from felix.model.objects import HostEndpoint, Policy, WorkloadEndpoint
from felix.model.parse import ModelParser
from tests.fv import hostile_corpus as hc
from tests.fv.conftest import FelixEnv, free_port
from tests.fv.harness.probes import Check, wait_for, wait_until

PROTECTED_IFACES = {"caliwa", "caliwb", "caliwv"}
CHECK_EVERY = 40
# Injected syntax must never reach a kernel tool. MARKER itself may: a *valid* profile id or
# tag such as "INJ3CT.." legitimately names a chain or ipset; so it may appear only inside such
# a name token.
FORBIDDEN = ("rm -rf", "$(", "`id`", f"ACCEPT {hc.MARKER}", f"{hc.MARKER} --comment",
             "-I FORWARD -j ACCEPT")
NAME_TOKEN = re.compile(r"cali[A-Za-z0-9_.:-]*")
# A valid host endpoint's interface name may itself carry the marker (`-i <name>`): a name,
# validated like any other, not injected syntax.
IFACE_TOKEN = re.compile(r"(?<=-[io] )[A-Za-z0-9_.-]{1,15}(?= )")


def injected(dump: str) -> list[str]:
    """Lines carrying injected syntax, or MARKER outside a chain/ipset/interface name."""
    return [line for line in dump.splitlines()
            if any(t in line for t in FORBIDDEN)
            or hc.MARKER in IFACE_TOKEN.sub("", NAME_TOKEN.sub("", line))]


def generated(n: int) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(hc.fuzz_write)
    def collect(w: tuple[str, str, str]) -> None:
        out.append(w)
    collect()
    return out


def neutralise(parser: ModelParser, path: str, value: str) -> str | None:
    """None if this write could legitimately change the valid workloads' connectivity (so it
    proves nothing about robustness); otherwise the value to write. Uses felix's own parser."""
    upd = parser.parse(path, value)
    obj = None if upd is None else upd.value
    if isinstance(obj, Policy) and (obj.selector.evaluate({}) or obj.selector.evaluate(
            {"fvvalid": "yes"})):
        return None
    if isinstance(obj, WorkloadEndpoint) and obj.key.hostname == hc.HOST and (
            obj.name in PROTECTED_IFACES
            or any(n.startswith("10.65.") for n in obj.ipv4_nets)):
        return None
    if isinstance(obj, HostEndpoint) and obj.key.hostname == hc.HOST and (
            obj.name in ("lo", "fvdef0", "fvdef1") or obj.expected_ipv4_addrs
            or obj.expected_ipv6_addrs):
        return None
    return value


def kernel_dump(env: FelixEnv) -> str:
    h = env.host
    return (h.exec("iptables-nft-save").stdout + h.exec("ip6tables-nft-save").stdout
            + h.exec("ipset", "list").stdout)


def status_of(env: FelixEnv, workload: str) -> str | None:
    raw = env.ds.get(keys.WorkloadEndpointKey(env.hostname, "k8s", workload, "eth0").status_path)
    return None if raw is None else str(json.loads(raw).get("status"))


def readiness(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readiness", timeout=3) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def run_hostile(env: FelixEnv, n_generated: int) -> None:
    a = env.workload("wa", "10.65.0.2", "fd00:65::2")
    b = env.workload("wb", "10.65.0.3")
    v = env.workload("wv", "10.65.0.5")
    ds, h = env.ds, env.hostname
    ds.ready()
    ds.profile("web", inbound=[{"src_tag": "web"}], outbound=[{}], tags=["web"])
    ds.profile("db", inbound=[{"src_tag": "web", "protocol": "tcp", "dst_ports": [8080]}],
               outbound=[{}], tags=["db"])
    labels = {"fvvalid": "yes"}
    ds.endpoint(h, "wa", a.endpoint(profile_ids=("web",), labels=labels))
    ds.endpoint(h, "wb", b.endpoint(profile_ids=("db",), labels=labels))
    victim_ok = v.endpoint(profile_ids=("web",), labels=labels)
    ds.endpoint(h, "wv", victim_ok)
    ds.tier("fztier", 5)   # fuzzed policies live here and are really rendered
    ds.tier("fzt2", "default")
    port = free_port()
    env.start_felix(config={
        "IptablesBackend": "nft", "EndpointReportingEnabled": "true",
        "EndpointReportingDelaySecs": 0, "HealthEnabled": "true", "HealthHost": "127.0.0.1",
        "HealthPort": port, "LogSeverityScreen": "INFO"})
    matrix = {Check(a, "tcp", b.ip, 8080): True, Check(a, "tcp", b.ip, 8081): False,
              Check(a, "udp", b.ip, 5353): False, Check(b, "tcp", a.ip, 8080): False,
              Check(b, "icmp", a.ip): False, Check(a, "icmp", b.ip): False,
              Check(a, "tcp", v.ip, 8080): True, Check(v, "udp", a.ip, 5353): True}
    victim_cut = {Check(a, "tcp", v.ip, 8080): False, Check(v, "udp", a.ip, 5353): False,
                  Check(v, "icmp", a.ip): False}
    wait_for(matrix, timeout=30)
    wait_until(lambda: readiness(port) == 200, 20, what="readiness")
    wait_until(lambda: status_of(env, "wv") == "up", 15, what="victim up")

    parser = ModelParser()
    writes = hc.corpus_writes(v.ifname, v.ip) + generated(n_generated)
    tried: collections.Counter[str] = collections.Counter()
    skipped: collections.Counter[str] = collections.Counter()
    invalid: collections.Counter[str] = collections.Counter()
    written_paths: list[str] = []

    def healthy(where: str) -> None:
        assert env.felix.running, f"felix died after {where}:\n{env.felix.tail(60)}"
        wait_until(lambda: readiness(port) == 200, 20, what=f"readiness after {where}")
        wait_for(matrix, timeout=20)

    victim_bodies = [json.dumps(b_) for b_ in hc.bad_endpoint_bodies(v.ifname, v.ip)[:3]] + [
        "{", json.dumps({**victim_ok, "ipv4_nets": [f"{v.ip}/32 -j ACCEPT {hc.MARKER}"]})]
    victim_at = {len(writes) * (i + 1) // (len(victim_bodies) + 1): body
                 for i, body in enumerate(victim_bodies)}
    for i, (kind, path, value) in enumerate(writes):
        safe = neutralise(parser, path, value)
        if safe is None:
            skipped[kind] += 1
            continue
        upd = parser.parse(path, value)
        if upd is None or upd.value is None:
            invalid[kind] += 1
        try:
            ds.set(path, safe)
        except Exception as e:  # etcd itself refuses some paths/values: count, go on
            skipped[kind + " (etcd refused: " + type(e).__name__ + ")"] += 1
            continue
        tried[kind] += 1
        written_paths.append(path)
        if i in victim_at:
            # The victim's own data turns invalid mid-stream: cut off, status error, and back.
            ds.endpoint(h, "wv", victim_at[i])
            wait_for({**{c: ok for c, ok in matrix.items() if v not in (c.src,) and c.dst != v.ip},
                      **victim_cut}, timeout=20)
            wait_until(lambda: status_of(env, "wv") == "error", 15, what="victim status error")
            ds.endpoint(h, "wv", victim_ok)
            wait_until(lambda: status_of(env, "wv") == "up", 15, what="victim status up")
        if i % CHECK_EVERY == CHECK_EVERY - 1:
            healthy(f"write #{i} ({kind} {path!r})")
    healthy("all writes")
    dump = kernel_dump(env)
    bad = injected(dump)
    assert not bad, "injected tokens in the kernel:\n" + "\n".join(bad[:40])
    named = sorted({m for m in NAME_TOKEN.findall(dump) if hc.MARKER in m})
    assert not os.path.exists(f"/tmp/{hc.MARKER}")
    # Everything removed again (deletes of hostile paths included): still healthy.
    for path in set(written_paths):
        ds.delete(path)
    healthy("deleting everything")
    left = [l for l in kernel_dump(env).splitlines() if hc.MARKER in l]
    assert not left, left[:20]
    print(f"\nhostile input: {sum(tried.values())} writes tried "
          f"({sum(invalid.values())} invalid per felix's parser), by kind {dict(tried)}; "
          f"invalid {dict(invalid)}; skipped {dict(skipped)}; victim invalidated "
          f"{len(victim_at)} times; valid names carrying the marker: {named[:8]}")


def test_hostile_input(env: FelixEnv) -> None:
    run_hostile(env, 200)


@pytest.mark.slow
def test_hostile_input_long(env: FelixEnv) -> None:
    run_hostile(env, 1500)
