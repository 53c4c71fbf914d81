"""End to end through the real parser: etcd (path, JSON) pairs → ModelParser → CalcGraph, with
the rendered FORWARD chains interpreted for a few packets."""

from __future__ import annotations

import json

from felix.calc.graph import CalcGraph
from felix.model.parse import ModelParser
from felix.rules import names
from felix.rules.settings import RuleSettings
from tests.unit.packet_eval import DesiredState, Interpreter, Packet

EP = "/calico/v1/host/{h}/workload/k8s/{w}/endpoint/eth0"
DATASTORE = {
    EP.format(h="h1", w="web"): {
        "state": "active", "name": "cali1", "mac": "ee:ee:ee:ee:ee:01",
        "profile_ids": ["web"], "labels": {"role": "web"},
        "ipv4_nets": ["10.65.0.2/32"], "ipv6_nets": ["fd00:65::2/128"],
        "ipv4_nat": [{"int_ip": "10.65.0.2", "ext_ip": "172.18.0.9"}]},
    EP.format(h="h2", w="db"): {
        "state": "active", "name": "cali2", "profile_id": "db", "labels": {"role": "db"},
        "ipv4_nets": ["10.65.1.2/32"]},
    EP.format(h="h2", w="other"): {
        "state": "active", "name": "cali3", "profile_ids": ["db"], "labels": {"role": "x"},
        "ipv4_nets": ["10.65.1.3/32"]},
    "/calico/v1/policy/profile/web/rules": {
        "inbound_rules": [{"action": "allow", "protocol": "tcp", "dst_ports": [80, "8000:8080"],
                           "src_tag": "dbtag"}],
        "outbound_rules": [{"action": "allow"}]},
    "/calico/v1/policy/profile/db/tags": ["dbtag"],
    "/calico/v1/policy/tier/t1/metadata": {"order": 10},
    "/calico/v1/policy/tier/t1/policy/deny-other": {
        "order": 1, "selector": "role == 'web'",
        "inbound_rules": [{"action": "deny", "!src_selector": "role == 'db'"},
                          {"action": "next-tier"}],
        "outbound_rules": [{"action": "next-tier"}]},
    "/calico/v1/ipam/v4/pool/10.65.0.0-16": {"cidr": "10.65.0.0/16", "masquerade": True},
}


def test_parsed_datastore_renders_and_enforces() -> None:
    parser = ModelParser()
    graph = CalcGraph(RuleSettings("h1"))
    for path, value in DATASTORE.items():
        update = parser.parse(path, json.dumps(value))
        assert update is not None and update.value is not None, (path, update)
        graph.on_update(update)
    # An invalid profile update (unknown rule key) is absent: fail closed.
    bad = parser.parse("/calico/v1/policy/profile/db/rules",
                       json.dumps({"inbound_rules": [{"bogus": 1}], "outbound_rules": []}))
    assert bad is not None and bad.value is None and bad.error
    graph.on_update(bad)
    graph.on_in_sync()
    state = DesiredState()
    state.apply_all(graph.take_messages())
    assert state.in_sync
    chains = {n: r for (v, t, n), r in state.chains.items() if v == 4 and t == "filter"}
    sets = {n: m for (v, n), m in state.sets.items() if v == 4}
    assert sets["cali4-t:dbtag"] == {"10.65.1.2", "10.65.1.3"}
    assert sets[names.masq_pools_set(4)] == {"10.65.0.0/16"}
    interp = Interpreter(chains, sets)

    def verdict(src: str, dport: int) -> str:
        p = Packet(4, src, "10.65.0.2", "tcp", 1234, dport, iif="eth0", oif="cali1")
        return interp.run(names.FILTER_FORWARD, p).verdict

    assert verdict("10.65.1.2", 80) == "ACCEPT"  # db: passes the tier, profile allows
    assert verdict("10.65.1.2", 8080) == "ACCEPT"
    assert verdict("10.65.1.2", 22) == "DROP"  # not in the profile's ports
    assert verdict("10.65.1.3", 80) == "DROP"  # not role db: denied by the policy
    assert verdict("10.9.9.9", 80) == "DROP"
    assert state.routes[(4, "cali1")].dests == {"10.65.0.2/32", "172.18.0.9/32"}
