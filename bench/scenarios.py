"""B1-B8 on one environment (1,000 local endpoints in full mode), in an order where each
scenario leaves the state the next expects. Each adds its figures to the report."""

from __future__ import annotations

import copy
import re
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench import observe as ob
from bench import profile
from bench import workload_gen as gen
from bench.env import HEALTH_PORT, METRICS_PORT, BenchEnv
from bench.floor import Capture, FloorNamespace, capture, timed_chain_rewrite
from bench.report import Report


@dataclass(frozen=True)
class Scale:
    local: int
    remote: int
    policies: int
    big_tag: int
    idle_secs: float
    churn_secs: float
    churn_rates: tuple[int, ...]
    sweep_rules: tuple[int, ...]
    sweep_backends: tuple[str, ...]


QUICK = Scale(local=200, remote=2000, policies=200, big_tag=10_000, idle_secs=20,
              churn_secs=2, churn_rates=(10, 50, 100, 200), sweep_rules=(1000, 10_000),
              sweep_backends=("legacy",))
FULL = Scale(local=1000, remote=10_000, policies=200, big_tag=100_000, idle_secs=60,
             churn_secs=10, churn_rates=(10, 50, 100, 200),
             sweep_rules=(1000, 5000, 10_000, 25_000, 50_000), sweep_backends=("legacy", "nft"))


@dataclass
class Ctx:
    env: BenchEnv
    report: Report
    scale: Scale
    rng: random.Random
    local: dict[str, dict[str, Any]] = field(default_factory=dict)
    cap: Capture | None = None
    floor_ns: FloorNamespace | None = None

    @property
    def backend(self) -> str:
        return self.env.backend

    def metrics(self) -> dict[str, float]:
        return ob.scrape(METRICS_PORT)

    def lines(self) -> tuple[float, float]:
        return ob.kernel_lines(self.metrics())

    def wait_programmed(self, names: set[str], timeout: float, poll: float = 0.02) -> float:
        return ob.wait_until(lambda: names <= ob.programmed_ifaces(self.backend), timeout, poll)

    def wait_cpu_idle(self, below: float = 0.05, window: float = 1.0, timeout: float = 120) -> float:
        """Until felix used < `below` of a core over `window` s (caught up with its input)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            a = ob.ProcSample.of(self.env.felix_pid)
            time.sleep(window)
            b = ob.ProcSample.of(self.env.felix_pid)
            if (b.cpu - a.cpu) / window < below:
                break
        return time.monotonic() - t0

    def wait_quiet(self, settle: float = 0.5, timeout: float = 30) -> None:
        """Until felix has written nothing to the kernel for `settle` seconds."""
        deadline = time.monotonic() + timeout
        last = self.lines()
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.lines()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= settle:
                return


def b1_cold_start(c: Ctx) -> None:
    s, r = c.scale, c.report
    t0 = time.monotonic()
    c.local = c.env.populate(c.rng, s.local, s.remote, s.policies)
    r.extra["populate_secs"] = time.monotonic() - t0
    names = set(c.local)
    t0 = time.monotonic()
    c.env.start_felix({"IptablesRefreshInterval": int(s.idle_secs)})
    pid = c.env.felix_pid
    with profile.sampled(pid, "B1"):
        c.wait_programmed(names, timeout=600, poll=0.05)
        elapsed = time.monotonic() - t0
    at_prog = ob.ProcSample.of(pid)
    ob.wait_until(lambda: ob.health_ready(HEALTH_PORT), 120, 0.1)
    c.wait_quiet(settle=1.0)
    time.sleep(2.5)  # past StartupCleanupDelay, so the capture is the steady state
    c.wait_quiet()
    m = c.metrics()
    c.cap = capture(c.backend)
    c.floor_ns = FloorNamespace(c.cap)
    fl = c.floor_ns.load()
    r.extra["B1_floor_parts"] = fl.parts
    r.extra["B1_state"] = {"iptables_save_lines": c.cap.iptables_lines,
                           "ipset_save_lines": c.cap.ipset_lines,
                           "routes": sum(len(v) for v in c.cap.routes.values()),
                           "felix_iptables_rules": m.get("felix_iptables_rules"),
                           "felix_ipsets_total": m.get("felix_ipsets_total")}
    r.add("B1", f"cold start to programmed ({s.local} local)", elapsed, "s", fl.total,
          "<= 1.5x floor", lambda v: v <= 1.5 * fl.total)
    r.add("B1", "felix CPU at programmed (own)", at_prog.cpu, "s", fl.total)
    r.add("B1", "children CPU at programmed (iptables/ipset)", at_prog.child_cpu, "s")
    r.add("B1", "peak RSS (VmHWM)", at_prog.hwm_mb, "MB", None, "<= 150 MB", lambda v: v <= 150)
    ipt, ips = ob.kernel_lines(m)
    r.add("B1", "iptables lines written", ipt, "lines", float(c.cap.iptables_lines))
    r.add("B1", "ipset lines written", ips, "lines", float(c.cap.ipset_lines))
    sm, cnt, _ = ob.histogram(m, "felix_endpoint_programming_seconds")
    r.add("B1", "felix_endpoint_programming_seconds mean", sm / cnt if cnt else float("nan"), "s")
    r.note("B1 floor parts: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in fl.parts.items()))

def b2_warm_restart(c: Ctx) -> None:
    r = c.report
    c.env.stop_felix()
    t0 = time.monotonic()
    c.env.start_felix({"IptablesRefreshInterval": int(c.scale.idle_secs)})
    ready = ob.wait_until(lambda: ob.health_ready(HEALTH_PORT), 120, 0.05)
    at_ready = ob.ProcSample.of(c.env.felix_pid)
    time.sleep(2.5)  # past StartupCleanupDelay: the sweep must find nothing to remove
    c.wait_quiet()
    ipt, ips = c.lines()
    r.add("B2", "warm restart to ready", ready, "s")
    r.add("B2", "felix CPU to ready", at_ready.cpu, "s")
    r.add("B2", "kernel lines written (iptables+ipset)", ipt + ips, "lines", None, "== 0",
          lambda v: v == 0)
    r.extra["B2_lines"] = {"iptables": ipt, "ipset": ips}
    del t0


def _dport_present(backend: str, port: int) -> bool:
    out = ob._run(f"iptables-{backend}-save", "-t", "filter")
    return re.search(rf"--dports {port}\b", out) is not None


def b5_profile_rule(c: Ctx) -> None:
    from felix.model import keys
    r = c.report
    assert c.cap is not None and c.floor_ns is not None
    # the chain holding the shared profile's marker rule, as felix rendered it
    chain = next(l.split()[1] for l in c.cap.tables[(4, "filter")].splitlines()
                 if l.startswith("-A ") and "--dports 61000 " in l)
    m0 = c.metrics()
    before = ob.kernel_lines(m0)
    t0 = time.monotonic()
    c.env.ds.set(keys.ProfileRulesKey(gen.SHARED_PROFILE).path,
                 __import__("json").dumps(gen.shared_profile_rules(61001)))
    lat = ob.wait_until(lambda: _dport_present(c.backend, 61001), 60, 0.01)
    c.wait_quiet()
    m1 = c.metrics()
    after = ob.kernel_lines(m1)
    applied, n_applies = ob.apply_seconds(m0, m1)
    fl = timed_chain_rewrite(c.floor_ns, chain, "--dports 61000 ", "--dports 61001 ")
    ipt, ips = after[0] - before[0], after[1] - before[1]
    r.add("B5", f"profile rule change ({len(c.local)} eps) latency", lat, "s", fl,
          "<= floor + 10 ms", lambda v: v <= fl + 0.010)
    r.add("B5", f"  felix's own apply time ({int(n_applies)} applies)", applied, "s", fl)
    r.add("B5", "kernel lines written", ipt + ips, "lines", None, "<= 5", lambda v: v <= 5)
    r.extra["B5"] = {"chain": chain, "iptables_lines": ipt, "ipset_lines": ips,
                     "elapsed_incl_write": time.monotonic() - t0}


def b6_label_into_selector(c: Ctx) -> None:
    from felix.model.selector import parse_selector
    from felix.rules.names import selector_set
    r = c.report
    assert c.floor_ns is not None
    set_name = selector_set(4, parse_selector(gen.B6_SELECTOR).uid)
    name = sorted(c.local)[0]
    ep = copy.deepcopy(c.local[name])
    ip = ep["ipv4_nets"][0].split("/")[0]
    assert not subprocess_ok(["ipset", "test", set_name, ip])
    ep["labels"]["b6"] = "yes"
    m0 = c.metrics()
    c.env.write_endpoint(name, ep)
    # `ipset test` is cheap (one netlink request), so this polls finely
    lat = ob.wait_until(lambda: subprocess_ok(["ipset", "test", set_name, ip]), 60, 0.002)
    c.wait_quiet()
    m1 = c.metrics()
    before, after = ob.kernel_lines(m0), ob.kernel_lines(m1)
    applied, n_applies = ob.apply_seconds(m0, m1)
    c.local[name] = ep
    fl = c.floor_ns.timed_ipset(f"add {set_name} {ip}\n")
    r.add("B6", "label change into 200-policy selector latency", lat, "s", fl)
    r.add("B6", f"  felix's own apply time ({int(n_applies)} applies)", applied, "s", fl)
    r.add("B6", "iptables lines written", after[0] - before[0], "lines", None, "== 0",
          lambda v: v == 0)
    r.add("B6", "ipset lines written", after[1] - before[1], "lines")


class Watcher:
    """Background poller of the kernel. Routes are polled cheaply and continuously; only when a
    pending endpoint's route has appeared (or gone) is the filter table read to confirm its
    chains (at most a third of the time, so the observer does not starve felix). Each change gets a bracket: the route time (a lower bound on "programmed": felix
    writes routes before iptables) and the confirming chain read's end (an upper bound)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.lock = threading.Lock()
        self.pending: dict[str, tuple[str, float, float | None]] = {}  # ifname -> (op, t, route_t)
        self.done: list[tuple[float, str, float, float]] = []  # (t_write, op, route_lat, full_lat)
        self.polls: list[float] = []
        self._next_chain_read = 0.0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def expect(self, ifname: str, op: str, t: float) -> None:
        with self.lock:
            self.pending[ifname] = (op, t, None)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                idle = not self.pending
            if idle:
                time.sleep(0.002)
                continue
            t_start = time.monotonic()
            routed = ob.routed_ifaces()
            now = time.monotonic()
            confirm = False
            with self.lock:
                for i, (op, t, rt) in list(self.pending.items()):
                    if rt is None and t < t_start and (i in routed) == (op == "add"):
                        self.pending[i] = (op, t, now)
                    confirm = confirm or self.pending[i][2] is not None
            if not confirm or now < self._next_chain_read:
                time.sleep(0.002)
                continue
            t_start = time.monotonic()
            chains = ob.filter_chains(self.backend)
            now = time.monotonic()
            self.polls.append(now - t_start)
            # A full table read costs seconds of CPU at 190k rules (nft); back-to-back reads
            # would starve felix on 2 cores and measure the observer. Keep them to a 1/3 duty
            # cycle (routes are still polled meanwhile): the upper bound gets coarser, the route
            # lower bound stays exact.
            self._next_chain_read = now + 2 * (now - t_start)
            with self.lock:
                for i, (op, t, rt) in list(self.pending.items()):
                    if rt is None or rt > t_start:
                        continue
                    tw, fw = f"cali-tw-{i}" in chains, f"cali-fw-{i}" in chains
                    if (tw and fw) if op == "add" else not (tw or fw):
                        self.done.append((t, op, rt - t, now - t))
                        del self.pending[i]

    def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.pending:
                    return
            time.sleep(0.02)
        raise TimeoutError(f"{len(self.pending)} endpoint changes not programmed")

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()


def _new_endpoints(c: Ctx, n: int, start: int) -> dict[str, dict[str, Any]]:
    eps = {}
    for k in range(start, start + n):
        name = gen.local_ifname(k)
        eps[name] = gen.endpoint(c.rng, name, gen.local_ip(k),
                                 [gen.SHARED_PROFILE, f"prof{c.rng.randrange(gen.N_PROFILES)}"])
    c.env.add_veths(list(eps))
    return eps


def b4_burst(c: Ctx) -> None:
    r = c.report
    eps = _new_endpoints(c, 100, 20_000)
    names = set(eps)
    m0 = c.metrics()
    t0 = time.monotonic()
    def write(part: list[str]) -> None:
        for n in part:
            c.env.write_endpoint(n, eps[n])
    threads = [threading.Thread(target=write, args=(sorted(names)[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wrote = time.monotonic() - t0
    with profile.sampled(c.env.felix_pid, "B4"):
        c.wait_programmed(names, 60, 0.02)
        last = time.monotonic() - t0
    r.add("B4", "100 endpoints burst: last programmed", last, "s", None, "<= 2 s", lambda v: v <= 2)
    r.add("B4", "  (time to write the 100 to etcd)", wrote, "s")
    _, cnt0, b0 = ob.histogram(m0, "felix_endpoint_programming_seconds")
    m1 = c.metrics()
    _, cnt1, b1 = ob.histogram(m1, "felix_endpoint_programming_seconds")
    r.add("B4", "  felix histogram p99 (bucket bound)", ob.histogram_quantile(0.99, b1, b0), "s")
    for n in names:
        c.env.delete_endpoint(n)
    ob.wait_until(lambda: not (names & ob.routed_ifaces()), 60, 0.05)
    c.wait_quiet()


def b3_churn(c: Ctx) -> None:
    r = c.report
    s = c.scale
    # Enough interfaces that no add reuses one: when felix lags, few adds are "ripe" for
    # deletion and most ops are adds.
    pool_n = max(s.churn_rates) * int(s.churn_secs) + 50
    pool = _new_endpoints(c, pool_n, 10_000)
    names = sorted(pool)
    c.wait_quiet()
    for rate in s.churn_rates:
        w = Watcher(c.backend)
        m0 = c.metrics()
        prof = profile.sampled(c.env.felix_pid, f"B3-{rate}")
        prof.__enter__()
        n_ops = int(rate * s.churn_secs)
        added: list[str] = []
        nxt = 0
        n_adds = n_dels = 0
        t_begin = time.monotonic()
        for k in range(n_ops):
            target = t_begin + k / rate
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with w.lock:
                # delete only endpoints whose add was seen programmed, so each delete is a
                # real removal from the kernel (an add then delete of the same endpoint
                # within one batch would be a no-op, measured as "instant")
                ripe = [a for a in added if a not in w.pending]
            if k % 2 == 0 or not ripe:
                n = names[nxt % len(names)]
                nxt += 1
                t = time.monotonic()
                w.expect(n, "add", t)
                c.env.write_endpoint(n, pool[n])
                added.append(n)
                n_adds += 1
            else:
                n = ripe[0]
                added.remove(n)
                t = time.monotonic()
                w.expect(n, "del", t)
                c.env.delete_endpoint(n)
                n_dels += 1
        write_secs = time.monotonic() - t_begin
        try:
            w.drain(300)
        finally:
            w.stop()
        prof.__exit__(None, None, None)
        lats = [x[3] for x in sorted(w.done)]
        route_lats = [x[2] for x in sorted(w.done)]
        third = max(1, len(lats) // 3)
        early, late = sum(lats[:third]) / third, sum(lats[-third:]) / third
        m1 = c.metrics()
        _, _, b0 = ob.histogram(m0, "felix_endpoint_programming_seconds")
        _, _, b1 = ob.histogram(m1, "felix_endpoint_programming_seconds")
        goal50 = ("<= 30 ms", lambda v: v <= 0.030) if rate == 50 else ("", None)
        goal99 = ("<= 100 ms", lambda v: v <= 0.100) if rate == 50 else ("", None)
        r.add("B3", f"churn {rate}/s p50 route (lower bound)", ob.percentile(route_lats, 0.5), "s",
              None, goal50[0], goal50[1])
        r.add("B3", f"churn {rate}/s p50 route+chains (upper bound)", ob.percentile(lats, 0.5), "s")
        r.add("B3", f"churn {rate}/s p99 route (lower bound)", ob.percentile(route_lats, 0.99), "s",
              None, goal99[0], goal99[1])
        r.add("B3", f"churn {rate}/s p99 route+chains (upper bound)", ob.percentile(lats, 0.99), "s")
        r.add("B3", f"churn {rate}/s backlog: last/first third mean", late / early if early else float("nan"),
              "x", None, "no growth (<= 2x)" if rate == 200 else "",
              (lambda v: v <= 2) if rate == 200 else None)
        r.add("B3", f"churn {rate}/s felix's histogram observations",
              ob.histogram(m1, "felix_endpoint_programming_seconds")[1]
              - ob.histogram(m0, "felix_endpoint_programming_seconds")[1], "")
        r.add("B3", f"churn {rate}/s felix's histogram p50 (bucket bound, adds)",
              ob.histogram_quantile(0.5, b1, b0), "s")
        r.add("B3", f"churn {rate}/s felix's histogram p99 (bucket bound, adds)",
              ob.histogram_quantile(0.99, b1, b0), "s")
        r.extra[f"B3_{rate}"] = {"ops": n_ops, "adds": n_adds, "deletes": n_dels, "write_secs": write_secs,
                                 "achieved_rate": n_ops / write_secs,
                                 "felix_p99_bound": ob.histogram_quantile(0.99, b1, b0),
                                 "mean_poll_secs": sum(w.polls) / max(1, len(w.polls)),
                                 "latencies": lats, "route_latencies": route_lats}
        r.note(f"B3 {rate}/s: {n_adds} adds, {n_dels} deletes (only programmed endpoints are "
               f"deleted); achieved {n_ops / write_secs:.0f} ops/s; a filter-table read took "
               f"{1000 * sum(w.polls) / max(1, len(w.polls)):.0f} ms (upper-bound slack)")
        settle = c.wait_cpu_idle()
        r.add("B3", f"churn {rate}/s felix busy after the last op confirmed", settle, "s")
        for n in added:
            c.env.delete_endpoint(n)
        ob.wait_until(lambda: not (set(added) & ob.routed_ifaces()), 60, 0.05)
        c.wait_quiet()
        c.wait_cpu_idle()


def b8_idle(c: Ctx) -> None:
    r = c.report
    c.wait_quiet()
    r.extra["B8_catch_up_secs"] = c.wait_cpu_idle()
    pid = c.env.felix_pid
    a = ob.ProcSample.of(pid)
    with profile.sampled(pid, "B8"):
        time.sleep(c.scale.idle_secs)
    b = ob.ProcSample.of(pid)
    own = (b.cpu - a.cpu) / c.scale.idle_secs
    total = own + (b.child_cpu - a.child_cpu) / c.scale.idle_secs
    r.add("B8", f"idle CPU over {c.scale.idle_secs:.0f} s (felix + children)", total * 100,
          "% core", None, "<= 1%", lambda v: v <= 1)
    r.add("B8", "  felix own", own * 100, "% core")
    r.note(f"B8: IptablesRefreshInterval={int(c.scale.idle_secs)} s so one periodic read-back "
           f"falls in the window")


def b7_big_tag(c: Ctx) -> None:
    import json
    from felix.model import keys
    r = c.report
    assert c.floor_ns is not None
    n = c.scale.big_tag
    items = [(keys.ProfileRulesKey("bigprof").path, json.dumps(
        {"inbound_rules": [], "outbound_rules": [{"action": "allow"}]})),
        (keys.ProfileTagsKey("bigprof").path, json.dumps(["bigtag"]))]
    for i in range(n):
        items.append((c.env.endpoint_path(f"bhost{i % 100}", f"bpod{i}"), json.dumps(
            gen.endpoint(c.rng, f"calig{i:06d}", gen.big_ip(i), ["bigprof"]))))
    wsecs = c.env.write_many(items)
    expected = c.metrics().get("felix_cluster_num_workload_endpoints", 0)
    target = len(c.local) + c.scale.remote + n
    ob.wait_until(lambda: c.metrics().get("felix_cluster_num_workload_endpoints", 0) >= target,
                  600, 0.5)
    c.wait_quiet()
    del expected
    rules = gen.shared_profile_rules(61001)
    rules["inbound_rules"].append({"action": "allow", "protocol": "tcp", "dst_ports": [8088],
                                   "src_tag": "bigtag"})
    t0 = time.monotonic()
    c.env.ds.set(keys.ProfileRulesKey(gen.SHARED_PROFILE).path, json.dumps(rules))
    big: list[str] = []

    def loaded() -> bool:
        sizes = ob.ipset_sizes()
        big[:] = [k for k, v in sizes.items() if v >= n]
        return bool(big) and _dport_present(c.backend, 8088)
    with profile.sampled(c.env.felix_pid, "B7-load"):
        lat = ob.wait_until(loaded, 600, 0.05)
    del t0
    saved = ob._run("ipset", "save", big[0]).replace(big[0], "bnbig")
    fl = c.floor_ns.timed_ipset(saved)
    r.add("B7", f"tag of {n} members: load", lat, "s", fl, "<= 1.2x floor",
          lambda v: v <= 1.2 * fl)
    c.wait_quiet()
    before = c.lines()
    ip = gen.big_ip(n)
    t1 = time.monotonic()
    c.env.ds.set(c.env.endpoint_path("bhost0", f"bpod{n}"), json.dumps(
        gen.endpoint(c.rng, f"calig{n:06d}", ip, ["bigprof"])))
    with profile.sampled(c.env.felix_pid, "B7-one"):
        lat1 = ob.wait_until(lambda: subprocess_ok(["ipset", "test", big[0], ip]), 60, 0.005)
    del t1
    c.wait_quiet()
    after = c.lines()
    fl1 = c.floor_ns.timed_ipset(f"add bnbig {ip}\n")
    r.add("B7", "  one member added", lat1, "s", fl1)
    r.add("B7", "  lines written for it (iptables, ipset)", after[0] - before[0] + after[1] - before[1],
          "lines")
    r.extra["B7"] = {"etcd_write_secs": wsecs, "set": big[0]}


def subprocess_ok(argv: list[str]) -> bool:
    import subprocess
    return subprocess.run(argv, capture_output=True).returncode == 0


STEPS = [("B1", b1_cold_start), ("B2", b2_warm_restart), ("B5", b5_profile_rule),
         ("B6", b6_label_into_selector), ("B4", b4_burst), ("B3", b3_churn), ("B8", b8_idle),
         ("B7", b7_big_tag)]
