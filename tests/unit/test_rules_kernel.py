"""The rendered rules are accepted by the real iptables-restore (legacy and nft) and ipset, in a
throw-away network namespace (``unshare --net``: nothing outside it is touched, and it is gone
when the command exits). Skipped without root or the tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from felix.calc.graph import CalcGraph
from felix.messages import ChainSet, IpsetSet
from felix.model.keys import PolicyKey
from felix.model.objects import (NatMapping, Policy, PortRange, ProfileRules, Rule,
                                 Tier)
from felix.model.selector import parse_selector
from felix.rules.settings import RuleSettings
from tests.unit.test_calc_graph import up, wl

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ipset"),
    reason="needs root, unshare and ipset")


def _rich_messages() -> list[object]:
    g = CalcGraph(RuleSettings("h1", drop_action_override="LOG-and-DROP", ipip_enabled=True))
    sel = parse_selector('role == "db" && has(x)')
    rules = (Rule(action="log", log_prefix="p:x"),
             Rule(protocol="tcp", src_ports=tuple(PortRange(i, i + 1) for i in range(1, 40, 2)),
                  not_dst_ports=(PortRange(5, 5),), src_selector=sel, not_dst_tag="t"),
             Rule(action="deny", protocol="icmp", icmp_type=8, icmp_code=0, ip_version=4,
                  not_src_net="10.0.0.0/8"),
             Rule(action="next-tier", protocol="icmpv6", not_icmp_type=128),
             Rule(protocol="udplite", not_protocol="tcp", dst_net="fd00::/64"),
             Rule(src_net="10.0.0.0/8", not_src_net="10.1.0.0/16", dst_net="10.2.0.0/16",
                  not_dst_net="10.2.3.4/32"),
             Rule(src_net="fd00::/16", not_src_net="fd00:1::/32"),
             Rule(protocol="47"))
    for obj in [ProfileRules("web", rules, rules), Tier("t1", 1.0),
                Policy(PolicyKey("t1", "p"), parse_selector("all()"), 1.0, rules, rules)]:
        g.on_update(up(obj))
    g.on_update(up(wl(1, nat=(NatMapping("10.0.0.1", "172.18.0.9"),))))
    for i in range(2, 60):
        g.on_update(up(wl(i)))
    return g.take_messages()  # type: ignore[return-value]


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_kernel_accepts_rendered_rules(backend: str) -> None:
    if not shutil.which(f"iptables-{backend}-restore"):
        pytest.skip(f"no iptables-{backend}")
    msgs = _rich_messages()
    script = ["set -e"]
    with tempfile.TemporaryDirectory() as tmp:
        for m in msgs:
            if isinstance(m, IpsetSet):
                fam = "inet" if m.ip_version == 4 else "inet6"
                script.append(f"ipset create {m.name} {m.set_type} family {fam}")
                script += [f"ipset add {m.name} {x}" for x in sorted(m.members)]
        for v, tool in ((4, "iptables"), (6, "ip6tables")):
            for table in ("filter", "nat"):
                cs = [m for m in msgs if isinstance(m, ChainSet) and m.ip_version == v
                      and m.table == table]
                lines = ([f"*{table}"] + [f":{c.name} - [0:0]" for c in cs]
                         + [f"-A {c.name} {r}" for c in cs for r in c.rules] + ["COMMIT", ""])
                path = os.path.join(tmp, f"{v}{table}")
                with open(path, "w") as f:
                    f.write("\n".join(lines))
                script.append(f"{tool}-{backend}-restore < {path}")
                n_rules = sum(len(c.rules) for c in cs)
                script.append(f"test $({tool}-{backend}-save -t {table} | grep -c '^-A cali') "
                              f"-eq {n_rules}")
        proc = subprocess.run(["unshare", "--net", "sh", "-c", "\n".join(script)],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
