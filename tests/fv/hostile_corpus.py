"""Hostile datastore input: a fixed corpus plus hypothesis strategies, for every key type felix
reads. Every string meant to reach a kernel tool carries MARKER, so a test can grep
iptables-save and ipset output for it: no injected token may ever appear there.

Keys are confined so that nothing written can *legitimately* change the connectivity of the
valid workloads a test watches: endpoints use interface names the test does not use, policy
selectors can only match endpoints labelled ``fuzz``, config only names what the config file
already sets (file wins) or names felix does not know, and Ready is never touched."""

from __future__ import annotations

import json
from typing import Any, Callable

from hypothesis import strategies as st

MARKER = "INJ3CT"
HOST = "fvhost"          # the felix under test
OTHER = "otherhost"      # a remote host: its endpoints only feed ipsets
# Parameters the test's config file sets: a datastore value for them must change nothing.
FILE_PARAMS = ("IptablesBackend", "LogSeverityScreen", "StartupCleanupDelay",
               "IptablesRefreshInterval", "MetadataAddr", "FelixHostname", "EtcdEndpoints",
               "EndpointReportingEnabled", "HealthEnabled", "HealthPort")

# ---- atoms ---------------------------------------------------------------------------------

INJECTIONS = [
    f"tcp -j ACCEPT {MARKER}", f"80 -j ACCEPT {MARKER}", f"{MARKER}\n-A FORWARD -j ACCEPT",
    f"{MARKER}\nCOMMIT\n*filter\n-I FORWARD -j ACCEPT", f"; rm -rf / {MARKER}",
    f"$(touch /tmp/{MARKER})", f"`id`{MARKER}", f"--dport {MARKER}", "-j", "--dport", "-A",
    "-j ACCEPT", f"{MARKER} --comment x", f"' {MARKER} '", f'" {MARKER} "', f"{MARKER}\r\n",
    f"{MARKER}\x00nul", f"cali{MARKER}", f"cali-fw-{MARKER}", f"{MARKER}ünïcødé✓", "零一二",
    f"../../{MARKER}", f"{MARKER}/..", "", " ", "\t", "%s%n", "{}", "[]", "null",
    f"create {MARKER} hash:ip", f"add cali40s:x 1.2.3.4 {MARKER}",
]
BAD_CIDRS = ["10.0.0.0/33", "10.0.0.256/32", "1.2.3.4/-1", "::/129", "fd00::g/128", "10.0.0.0/8/8",
             f"10.65.0.9/32 {MARKER}", f"10.65.0.9/32\n-j ACCEPT {MARKER}", "0x0a000001/32",
             "10.65.0.09/32", "", "/32", "10.65.0.9/", "1.2.3.4/32,5.6.7.8/32", "a" * 300]
HUGE_NUMBERS = [2 ** 64, -2 ** 63, 10 ** 400, 1e308, -1, 65536, 256, 4294967296, 0.5, -0.0]
ODD_SEGMENTS = [f"{MARKER}..", f"{MARKER}%2Fx", f"{MARKER} sp", f"{MARKER}\ttab", f"-j{MARKER}",
                f"{MARKER}ü", f"{MARKER}" * 40, f"x.{MARKER}", f"{MARKER};x", f"${MARKER}"]
LONG = "l" * 10_000
LONG_SELECTOR = " || ".join(f'fuzz == "{i}"' for i in range(900))  # > 10,000 chars, valid

# Bodies that are not even the right JSON shape.
NOT_JSON = ["", "{", "}", "[1,", "nul", "{'single': 'quotes'}", "NaN", "Infinity", "1e99999",
            "9" * 5000, '{"a": 1, "a": 2}', "\x00", "\udc80".encode("utf-8", "surrogatepass").decode(
                "utf-8", "replace"), '"just a string"', "[]", "123", "true", "null", "{}" * 3,
            "[" * 2000 + "]" * 2000, '{"state": "active"' + ', "x": 1' * 10 + "}"]

# ---- bodies ----------------------------------------------------------------------------------


def bad_endpoint_bodies(ifname: str, ip: str) -> list[dict[str, Any]]:
    """Endpoint JSON, each invalid in exactly one way felix must notice (the rest valid)."""
    base: dict[str, Any] = {"state": "active", "name": ifname, "profile_ids": ["web"],
                            "labels": {}, "ipv4_nets": [f"{ip}/32"]}

    def mut(**kw: Any) -> dict[str, Any]:
        return {**base, **kw}
    out = [mut(name=f"cali{MARKER}; -j ACCEPT"), mut(name=f"eth{MARKER}"), mut(name="cali" + "x" * 20),
           mut(name=123), mut(state=f"active -j ACCEPT {MARKER}"), mut(state=None),
           mut(profile_ids=[f"web -j ACCEPT {MARKER}"]), mut(profile_ids="web"),
           mut(ipv4_nets=[f"{ip}/32 -j ACCEPT {MARKER}"]), mut(ipv4_nets=[bad for bad in BAD_CIDRS[:3]]),
           mut(ipv4_nets=f"{ip}/32"), mut(labels={f"l {MARKER}": "v"}), mut(labels={"k": LONG}),
           mut(labels=["not", "a", "dict"]), mut(mac=f"ee:ee:ee:ee:ee:ee -j ACCEPT {MARKER}"),
           mut(mac="zz:zz:zz:zz:zz:zz"), mut(ipv4_nat=[{"int_ip": "10.99.0.1", "ext_ip": "1.2.3.4"}]),
           mut(ipv6_nets=["10.0.0.1/32"])]
    del_state = dict(base)
    del del_state["state"]
    del_name = dict(base)
    del del_name["name"]
    return out + [del_state, del_name]


# ---- hypothesis strategies -------------------------------------------------------------------

hostile_text = st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=40),
                         st.sampled_from(BAD_CIDRS), st.just(LONG),
                         st.text(alphabet="ab-_./:!&|()'\" =\n", max_size=30).map(lambda s: MARKER + s))
scalar = st.one_of(st.none(), st.booleans(), st.sampled_from(HUGE_NUMBERS),
                   st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=False), hostile_text)
json_value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)), max_leaves=12)

fuzz_ifname = st.one_of(
    st.from_regex(r"\Acalif[a-z0-9_-]{0,10}\Z"),  # valid, unused by the test's workloads
    st.sampled_from([f"cali{MARKER}", f"eth{MARKER}", "cali", "cali" + "y" * 12, f"cal {MARKER}"]),
    hostile_text)
fuzz_ipv4 = st.one_of(st.integers(0, 255).map(lambda n: f"10.66.0.{n}/32"),  # overlapping
                      st.sampled_from(BAD_CIDRS), hostile_text)
fuzz_ipv6 = st.one_of(st.integers(0, 255).map(lambda n: f"fd00:66::{n:x}/128"), hostile_text)
fuzz_labels = st.one_of(
    st.dictionaries(st.one_of(st.just("fuzz"), st.from_regex(r"\A[a-z][a-z0-9_./-]{0,8}\Z"),
                              hostile_text), st.one_of(hostile_text, st.just(LONG), scalar),
                    max_size=3),
    json_value)
port = st.one_of(st.integers(-5, 70000), st.sampled_from(HUGE_NUMBERS), hostile_text,
                 st.sampled_from(["1:2", "2:1", f"80:{MARKER}", "80 -j ACCEPT", "1:65535"]))
rule = st.fixed_dictionaries({}, optional={
    "action": st.one_of(st.sampled_from(["allow", "deny", "next-tier", "log"]), hostile_text),
    "protocol": st.one_of(st.sampled_from(["tcp", "udp", "icmp", "icmpv6", "sctp", "udplite"]),
                          st.integers(-1, 300), hostile_text),
    "ip_version": st.one_of(st.sampled_from([4, 6]), scalar),
    "src_net": st.one_of(st.sampled_from(["10.0.0.0/8", "fd00::/8"]), st.sampled_from(BAD_CIDRS), hostile_text),
    "dst_net": st.one_of(st.sampled_from(BAD_CIDRS), hostile_text),
    "src_tag": hostile_text, "!dst_tag": hostile_text,
    "src_selector": st.one_of(st.just(LONG_SELECTOR), hostile_text),
    "dst_ports": st.one_of(st.lists(port, max_size=4), scalar),
    "!src_ports": st.lists(port, max_size=3),
    "icmp_type": st.one_of(st.integers(-1, 300), scalar), "icmp_code": st.one_of(st.integers(-1, 300), scalar),
    "log_prefix": hostile_text,
    MARKER: scalar,
})
rules = st.one_of(st.lists(rule, max_size=3), json_value)


def _dumps(v: Any) -> str:
    return json.dumps(v)


def _segment() -> st.SearchStrategy[str]:
    return st.one_of(st.from_regex(r"\Afz[a-z0-9_.-]{0,10}\Z"), st.sampled_from(ODD_SEGMENTS))


def _endpoint_body() -> st.SearchStrategy[str]:
    body = st.fixed_dictionaries(
        {"state": st.one_of(st.sampled_from(["active", "inactive"]), scalar),
         "name": fuzz_ifname},
        optional={"profile_ids": st.one_of(st.lists(st.one_of(st.sampled_from(["web", "fzp"]),
                                                              hostile_text), max_size=3), scalar),
                  "labels": fuzz_labels, "ipv4_nets": st.one_of(st.lists(fuzz_ipv4, max_size=3), scalar),
                  "ipv6_nets": st.lists(fuzz_ipv6, max_size=2), "mac": hostile_text,
                  "ipv4_nat": json_value, "profile_id": hostile_text, "ipv4_gateway": hostile_text})
    return st.one_of(body.map(_dumps), st.sampled_from(NOT_JSON), json_value.map(_dumps))


def _policy_body() -> st.SearchStrategy[str]:
    selector = st.one_of(
        st.just("has(fuzz)"), st.just(LONG_SELECTOR),
        hostile_text.map(lambda s: f"has(fuzz) && fuzz == {json.dumps(s)}"),
        hostile_text)  # the test drops any selector that could match its workloads
    body = st.fixed_dictionaries({"selector": selector}, optional={
        "order": st.one_of(st.sampled_from(HUGE_NUMBERS), scalar), "inbound_rules": rules,
        "outbound_rules": rules})
    return st.one_of(body.map(_dumps), st.sampled_from(NOT_JSON), json_value.map(_dumps))


def _any_json() -> st.SearchStrategy[str]:
    return st.one_of(json_value.map(_dumps), st.sampled_from(NOT_JSON), hostile_text)


ROOT = "/calico/v1"

# (kind, strategy of (path, value)): one per key type felix reads.
KEY_KINDS: list[tuple[str, st.SearchStrategy[tuple[str, str]]]] = [
    ("workload-endpoint", st.tuples(
        st.tuples(st.sampled_from([HOST, OTHER]), _segment(), _segment(), _segment()).map(
            lambda t: f"{ROOT}/host/{t[0]}/workload/{t[1]}/{t[2]}/endpoint/{t[3]}"),
        _endpoint_body())),
    ("host-endpoint", st.tuples(
        st.tuples(st.sampled_from([HOST, OTHER]), _segment()).map(
            lambda t: f"{ROOT}/host/{t[0]}/endpoint/{t[1]}"),
        st.one_of(st.fixed_dictionaries({"name": st.one_of(st.just("ethfuzz0"), hostile_text)}, optional={
            "expected_ipv4_addrs": st.lists(fuzz_ipv4, max_size=2),
            "profile_ids": st.lists(hostile_text, max_size=2), "labels": fuzz_labels}).map(_dumps),
            _any_json()))),
    ("profile-rules", st.tuples(_segment().map(lambda p: f"{ROOT}/policy/profile/{p}/rules"),
                                st.one_of(st.fixed_dictionaries({"inbound_rules": rules,
                                                                 "outbound_rules": rules}).map(_dumps),
                                          _any_json()))),
    ("profile-tags", st.tuples(_segment().map(lambda p: f"{ROOT}/policy/profile/{p}/tags"),
                               st.one_of(st.lists(hostile_text, max_size=4).map(_dumps), _any_json()))),
    ("profile-labels", st.tuples(_segment().map(lambda p: f"{ROOT}/policy/profile/{p}/labels"),
                                 st.one_of(fuzz_labels.map(_dumps), _any_json()))),
    ("tier", st.tuples(_segment().map(lambda t: f"{ROOT}/policy/tier/{t}/metadata"),
                       st.one_of(st.fixed_dictionaries({"order": scalar}).map(_dumps), _any_json()))),
    ("policy", st.tuples(st.tuples(st.sampled_from(["fztier", "fzt2"]), _segment()).map(
        lambda t: f"{ROOT}/policy/tier/{t[0]}/policy/{t[1]}"), _policy_body())),
    ("pool", st.tuples(st.one_of(st.sampled_from([("v4", "10.67.0.0-16"), ("v6", "fd00:67::-64")]),
                                 _segment().map(lambda s: ("v4", s))).map(
                                     lambda p: f"{ROOT}/ipam/{p[0]}/pool/{p[1]}"),
                       st.one_of(st.fixed_dictionaries({"cidr": st.one_of(fuzz_ipv4, st.just("10.67.0.0/16")),
                                                        "masquerade": scalar, "ipip": hostile_text,
                                                        "disabled": scalar}).map(_dumps), _any_json()))),
    ("config", st.tuples(st.one_of(
        st.sampled_from(FILE_PARAMS).map(lambda n: f"{ROOT}/config/{n}"),
        st.sampled_from(FILE_PARAMS).map(lambda n: f"{ROOT}/host/{HOST}/config/{n}"),
        _segment().map(lambda n: f"{ROOT}/config/{MARKER}{n}"),
        _segment().map(lambda n: f"{ROOT}/host/{OTHER}/config/{n}")), hostile_text)),
    ("host-ip", st.tuples(st.sampled_from([f"{ROOT}/host/{OTHER}/bird_ip", f"{ROOT}/host/fz2/bird_ip"]),
                          st.one_of(hostile_text, st.sampled_from(BAD_CIDRS)))),
    ("odd-path", st.tuples(st.sampled_from([
        f"{ROOT}/host/{HOST}/workload/{MARKER}", f"{ROOT}/host/{HOST}/workload/a/b/endpoint",
        f"{ROOT}/host/{HOST}/workload/a/b/endpoint/c/extra", f"{ROOT}/policy/profile/{MARKER}",
        f"{ROOT}/policy/tier/fztier/policy", f"{ROOT}/policy/profile/p/unknown",
        f"{ROOT}/ipam/v5/pool/x", f"{ROOT}/host/{HOST}/endpoint/a/extra", f"{ROOT}/{MARKER}"]),
        _any_json())),
]

fuzz_write: st.SearchStrategy[tuple[str, str, str]] = st.one_of(
    [s.map(lambda pv, k=kind: (k, pv[0], pv[1])) for kind, s in KEY_KINDS])  # type: ignore[misc]


def corpus_writes(victim_ifname: str, victim_ip: str) -> list[tuple[str, str, str]]:
    """The fixed corpus, as (kind, path, value): every atom through every key type."""
    out: list[tuple[str, str, str]] = []
    seg: Callable[[int], str] = lambda i: f"fzc{i}"
    for i, text in enumerate(INJECTIONS + NOT_JSON):
        out.append(("workload-endpoint", f"{ROOT}/host/{HOST}/workload/k8s/{seg(i)}/endpoint/eth0", text))
        out.append(("profile-rules", f"{ROOT}/policy/profile/{seg(i)}/rules", json.dumps(
            {"inbound_rules": [{"protocol": text, "src_tag": text, "dst_ports": [text],
                                "log_prefix": text, "action": "log"}], "outbound_rules": []})))
        out.append(("profile-tags", f"{ROOT}/policy/profile/{seg(i)}/tags", json.dumps([text])))
        out.append(("policy", f"{ROOT}/policy/tier/fztier/policy/{seg(i)}",
                    json.dumps({"selector": text, "order": 1, "inbound_rules": [{"action": "deny"}]})))
        out.append(("config", f"{ROOT}/config/{FILE_PARAMS[i % len(FILE_PARAMS)]}", text))
    for i, body in enumerate(bad_endpoint_bodies("califz" + str(0), "10.66.1.1")):
        out.append(("workload-endpoint", f"{ROOT}/host/{HOST}/workload/k8s/fzb{i}/endpoint/eth0",
                    json.dumps(body)))
    for i, n in enumerate(HUGE_NUMBERS):
        out.append(("profile-rules", f"{ROOT}/policy/profile/fzn{i}/rules", json.dumps(
            {"inbound_rules": [{"protocol": "tcp", "dst_ports": [n]}, {"icmp_type": n, "protocol": "icmp"}],
             "outbound_rules": [{"ip_version": n}]})))
        out.append(("tier", f"{ROOT}/policy/tier/fzn{i}/metadata", json.dumps({"order": n})))
    for i, s in enumerate(ODD_SEGMENTS):
        out.append(("workload-endpoint", f"{ROOT}/host/{HOST}/workload/{s}/{s}/endpoint/{s}", json.dumps(
            {"state": "active", "name": f"califo{i}", "ipv4_nets": [f"10.66.2.{i}/32"],
             "profile_ids": [s]})))
        out.append(("profile-rules", f"{ROOT}/policy/profile/{s}/rules",
                    json.dumps({"inbound_rules": [{"src_tag": s}], "outbound_rules": []})))
    # Overlapping IPs: two local endpoints on one IP; remote endpoints on the valid ones' IPs.
    for i in range(2):
        out.append(("workload-endpoint", f"{ROOT}/host/{HOST}/workload/k8s/fzo{i}/endpoint/eth0",
                    json.dumps({"state": "active", "name": f"califov{i}", "profile_ids": ["web"],
                                "ipv4_nets": ["10.66.3.3/32"]})))
    for i, ip in enumerate(("10.65.0.2", "10.65.0.3", victim_ip)):
        out.append(("workload-endpoint", f"{ROOT}/host/{OTHER}/workload/k8s/fzr{i}/endpoint/eth0",
                    json.dumps({"state": "active", "name": f"cali{MARKER[:5]}{i}",
                                "profile_ids": ["fzp"], "ipv4_nets": [f"{ip}/32"]})))
    out.append(("policy", f"{ROOT}/policy/tier/fztier/policy/fzlong",
                json.dumps({"selector": LONG_SELECTOR, "inbound_rules": [{"src_selector": LONG_SELECTOR}]})))
    out.append(("profile-labels", f"{ROOT}/policy/profile/fzl/labels", json.dumps({"k": LONG})))
    return out
