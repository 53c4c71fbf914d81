"""``python -m demo [--keep | --cleanup]`` (``make demo ARGS=--keep``): see demo/__init__.py."""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request

from demo import scenario
from demo.matrix import Matrix, Prober, diff, render
from demo.sandbox import (ETCD_PORT, HEALTH_PORT, METRICS_PORT, STATE_FILE, Sandbox, cleanup,
                          netns_list)

T0 = time.monotonic()


def say(text: str = "") -> None:
    print(f"[{time.monotonic() - T0:5.1f}s] {text}" if text else "", flush=True)


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        return e.read().decode()
    except OSError as e:
        return f"({e})"


def _converge(prober: Prober, want: Matrix, what: str, since: float) -> Matrix:
    seconds, got = prober.wait_converged(want, timeout=25)
    ok = got == want
    total = time.monotonic() - since
    say(f"{what}: {'converged' if ok else 'NOT converged'} in {total:.2f}s "
        f"(matrix polled for {seconds:.2f}s)")
    print(render(got, want))
    if not ok:
        print("  (! = not what the policy says)")
        raise SystemExit(1)
    return got


def where_to_look(sb: Sandbox, keep: bool) -> None:
    assert sb.host is not None and sb.felix is not None
    ns = sb.host.name
    host = scenario.HOSTNAME
    inns = f"ip netns exec {ns}"
    print()
    say("Where to look (everything lives inside the sandbox namespace, hence `ip netns exec`):")
    print(f"  status keys:  {inns} env ETCDCTL_API=2 etcdctl --endpoints "
          f"http://127.0.0.1:{ETCD_PORT} ls --recursive /calico/felix/v1/host/{host}")
    assert sb.ds is not None
    live = sb.ds.get(f"/calico/felix/v1/host/{host}/status")
    print(f"      /calico/felix/v1/host/{host}/status = {live}")
    for name in sb.workloads:
        print(f"      .../workload/demo/{name}/endpoint/eth0 = "
              f"{sb.ds.get(f'/calico/felix/v1/host/{host}/workload/demo/{name}/endpoint/eth0')}")
    metrics_url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
    print(f"  metrics:      {inns} curl -s {metrics_url} | grep ^felix_")
    wanted = ("felix_active_local_endpoints ", "felix_active_local_policies ",
              "felix_endpoint_programming_seconds_count", "felix_endpoint_programming_seconds_sum",
              "felix_int_dataplane_apply_time_seconds_count", "felix_iptables_restore_calls",
              "felix_resyncs_started")
    for line in _get(metrics_url).splitlines():
        if line.startswith(wanted):
            print(f"      {line}")
    health = f"http://127.0.0.1:{HEALTH_PORT}"
    print(f"  health:       {inns} curl -s {health}/readiness   (and /liveness)")
    print(f"      readiness: {_get(health + '/readiness').strip()}   "
          f"liveness: {_get(health + '/liveness').strip()}")
    print(f"  felix log:    {sb.felix.output_path}")
    print(f"  felix config: {sb.felix.config_path}")
    print(f"  kernel state: {inns} iptables-save | grep cali ;  {inns} ipset list -n ;  "
          f"{inns} ip route")
    if keep:
        wl = sb.workloads
        db = wl["db"]
        print(f"  try a probe:  ip netns exec {wl['frontend'].ns.name} timeout 1 bash -c "
              f"'</dev/tcp/{db.ip}/{scenario.PORT}' && echo open || echo blocked   "
              "(frontend -> db)")
        print("  workloads:    " + ", ".join(f"{n} {w.ip} in netns {w.ns.name} via {w.ifname}"
                                          for n, w in wl.items()))
        print(f"  change policy: {inns} env ETCDCTL_API=2 etcdctl --endpoints "
              f"http://127.0.0.1:{ETCD_PORT} set /calico/v1/policy/tier/security/policy/... '<json>'")
        print("\n  clean up:     make demo ARGS=--cleanup   (or: .venv/bin/python -m demo --cleanup)")


def run(keep: bool) -> int:
    if os.geteuid() != 0:
        print("the demo needs root (network namespaces, iptables): run `sudo make demo`",
              file=sys.stderr)
        return 2
    before = netns_list()
    sb = Sandbox()
    ok = False
    try:
        host = sb.make_host()
        say(f"Sandbox host namespace {host.name} (its own etcd, felix and routes)")
        with host.entered():
            ds = sb.start_etcd()
            ds.ready()
            say(f"etcd up at http://127.0.0.1:{ETCD_PORT} inside {host.name}")
            endpoints = {}
            for role in scenario.ROLES:
                w = sb.add_workload(role.name, role.ip)
                profile = "untrusted" if role.name == "intruder" else "app"
                endpoints[role.name] = w.endpoint(profile_ids=(profile,),
                                                  labels={"role": role.name})
            say("Workloads: " + ", ".join(f"{r.name} {r.ip}" for r in scenario.ROLES)
                + "  (each in its own namespace on a cali* veth, serving TCP "
                f"{scenario.PORT})")
            scenario.write_base_model(ds, endpoints)
            say("Wrote profiles 'app' and 'untrusted', tier 'security' with policies: "
                "frontend public; backend only from frontend; db only from backend")
            prober = Prober(sb.workloads)
            try:
                t = time.monotonic()
                sb.start_felix(scenario.HOSTNAME)
                say(f"Started felix (pid {sb.felix.proc.pid}); waiting for the matrix "  # type: ignore[union-attr]
                    "(TCP connects between every pair of workloads)")
                first = _converge(prober, scenario.expected(("backend",), False),
                                  "Initial policy", t)
                print()
                t = time.monotonic()
                scenario.quarantine_intruder(ds)
                scenario.db_access(ds, ("backend", "frontend"))
                say("Policy change: new tier 'quarantine' (order 1) drops everything from "
                    "the intruder; db now also accepts the frontend")
                second = _converge(prober, scenario.expected(("backend", "frontend"), True),
                                   "After the change", t)
                print("  changed: " + "; ".join(diff(first, second)))
            finally:
                prober.close()
            where_to_look(sb, keep)
        ok = True
    finally:
        if keep and ok:
            sb.detach()
            print(f"\nLeft running (--keep). State: {STATE_FILE}")
        else:
            say("Cleaning up")
            sb.teardown()
            after = netns_list()
            leftover = set(sb.state["namespaces"]) & after
            if leftover:
                print(f"WARNING: namespaces left behind: {sorted(leftover)}", file=sys.stderr)
            elif after == before:
                say(f"Done: removed {len(sb.state['namespaces'])} namespaces, etcd, felix "
                    "and the workload agents; `ip netns list` is as the demo found it")
            else:
                say("Done: every namespace the demo made is gone (others changed meanwhile)")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    p.add_argument("--keep", action="store_true",
                   help="leave the sandbox running to explore; remove it with --cleanup")
    p.add_argument("--cleanup", action="store_true",
                   help="remove a demo left running by --keep (or a crashed one)")
    args = p.parse_args()
    if args.cleanup:
        return cleanup()
    return run(args.keep)


if __name__ == "__main__":
    sys.exit(main())
