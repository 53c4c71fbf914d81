"""B9: the cost of a one-rule change as the total rule count grows (1k → 50k), against the
kernel floor (rewriting that one chain with `iptables-restore --noflush` in a namespace holding
the same full state), on each iptables backend. Each size gets its own namespace and etcd."""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING

from bench import observe as ob
from bench.env import HEALTH_PORT, BenchEnv
from bench.floor import FloorNamespace, capture, timed_chain_rewrite
from bench.report import Report

if TYPE_CHECKING:
    from bench.scenarios import Scale

RULES_PER_POLICY = 50
SWEEP_LOCAL = 10


def _policy(j: int) -> str:
    base = 1000 + j * RULES_PER_POLICY
    return json.dumps({"selector": "has(app)", "order": j,
                       "inbound_rules": [{"action": "allow", "protocol": "tcp",
                                          "dst_ports": [base + k]}
                                         for k in range(RULES_PER_POLICY)],
                       "outbound_rules": []})


def _present(backend: str, port: int) -> bool:
    out = ob._run(f"iptables-{backend}-save", "-t", "filter")
    return re.search(rf"--dports {port}\b", out) is not None


def one_size(report: Report, backend: str, total_rules: int) -> None:
    from felix.model import keys
    import random
    from bench import workload_gen as gen
    # ~280 kernel rules per policy here: 50 rules and the endpoints' jumps, IPv4 and IPv6
    n_pol = max(1, round(total_rules / 280))
    with BenchEnv(backend) as env:
        rng = random.Random(9)
        items = [(keys.TierKey("tier0").path, json.dumps({"order": 0}))]
        items += [(keys.PolicyKey("tier0", f"pol{j}").path, _policy(j)) for j in range(n_pol)]
        local = {gen.local_ifname(i): gen.endpoint(rng, gen.local_ifname(i), gen.local_ip(i))
                 for i in range(SWEEP_LOCAL)}
        env.add_veths(list(local))
        items += [(env.endpoint_path("benchhost", n), json.dumps(e)) for n, e in local.items()]
        items += [(keys.ProfileRulesKey(f"prof{p}").path, json.dumps(
            {"inbound_rules": [], "outbound_rules": []})) for p in range(gen.N_PROFILES)]
        env.write_many(items)
        t0 = time.monotonic()
        env.start_felix()
        ob.wait_until(lambda: set(local) <= ob.programmed_ifaces(backend), 600, 0.1)
        prog = time.monotonic() - t0
        ob.wait_until(lambda: ob.health_ready(HEALTH_PORT), 120, 0.1)
        time.sleep(2.5)
        cap = capture(backend)
        rules = float(ob.scrape(9091).get("felix_iptables_rules", 0))
        floor = FloorNamespace(cap)
        try:
            fl = floor.load()
            last = 1000 + n_pol * RULES_PER_POLICY - 1
            chain = next(l.split()[1] for l in cap.tables[(4, "filter")].splitlines()
                         if l.startswith("-A ") and f"--dports {last} " in l)
            new_port = 65000
            body = json.loads(_policy(n_pol - 1))
            body["inbound_rules"][-1]["dst_ports"] = [new_port]
            m0 = ob.scrape(9091)
            env.ds.set(keys.PolicyKey("tier0", f"pol{n_pol - 1}").path, json.dumps(body))
            lat = ob.wait_until(lambda: _present(backend, new_port), 120, 0.01)
            time.sleep(0.3)
            applied, _ = ob.apply_seconds(m0, ob.scrape(9091))
            fl1 = timed_chain_rewrite(floor, chain, f"--dports {last} ", f"--dports {new_port} ")
        finally:
            floor.close()
        tag = f"{backend} {int(rules)} rules"
        report.add("B9", f"{tag}: start to programmed", prog, "s", fl.total)
        report.add("B9", f"{tag}: one-rule change (seen by polling save)", lat, "s", fl1)
        report.add("B9", f"{tag}:   felix's own apply time for it", applied, "s", fl1)


def b9_sweep(report: Report, scale: "Scale") -> None:
    for backend in scale.sweep_backends:
        for n in scale.sweep_rules:
            try:
                one_size(report, backend, n)
            except Exception as e:  # keep the other sizes
                import traceback
                traceback.print_exc()
                report.note(f"B9 {backend} {n} failed: {e!r}")
