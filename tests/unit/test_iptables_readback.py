"""parse_save's inline fast scan must agree with the regex definition on every rule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from felix.dataplane.iptables.hashing import CommentFormat, hash_rules
from felix.dataplane.iptables.readback import parse_save, scan_rule

COMMENTS = CommentFormat("cali")
HASH = hash_rules("cali-x", ["-j ACCEPT"])[0].hash

_PIECES = st.sampled_from([
    "-p tcp", "-m set --match-set cali4-s src", "-j ACCEPT", "-j cali-pi-a", "-g cali-po-b",
    "--jump cali-j", "--goto cali-g", "-j", "-g", "-j -j X", '"', ' ', '\t', "-m comment",
    f'--comment "cali:{HASH}"', f"--comment cali:{HASH}", f'--comment "cali:{HASH}x"',
    '--comment "cali:short"', '--comment "docker -j DOCKER"', "--comment", "cali:" + HASH,
    '-j "cali-q"', "-j MARK --set-xmark 0x1/0x1", "-s 10.0.0.0/8", "-d", "x-j", "-jX",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_PIECES, st.sampled_from([" ", "", "  ", "\t"])), max_size=8))
def test_fast_scan_equals_regex_definition(pieces: list[tuple[str, str]]) -> None:
    rest = "".join(p + sep for p, sep in pieces).strip(" \t")
    save = f"*filter\n:cali-x - [0:0]\n-A cali-x {rest}\nCOMMIT\n"
    [(hashes, targets)] = [(kc.hashes, kc.targets)
                           for kc in parse_save(save, "filter", COMMENTS).values()]
    # (split(None, 2) already dropped leading whitespace of the spec)
    expected = scan_rule(rest.lstrip(), COMMENTS) if rest else (None, None)
    assert (hashes[0], targets[0]) == expected


def test_canonical_rules_take_the_fast_path_and_agree() -> None:
    rules = ["-p tcp -m set --match-set cali4-s src -j cali-pi-a", "-j MARK --set-xmark 0x1/0x1",
             "-m mark --mark 0x1/0x1 -j RETURN", "-g cali-po-b", "-p udp"]
    lines = [f"-A cali-x {COMMENTS.render(r)}" for r in hash_rules("cali-x", rules)]
    lines += ['-A FORWARD -m comment --comment "docker -j X" -j DOCKER', "-A FORWARD -j cali-x"]
    save = "\n".join(["# hi", "*filter", ":FORWARD ACCEPT [0:0]", ":cali-x - [0:0]", *lines,
                      "COMMIT", "*nat", ":cali-n - [0:0]", "-A cali-n -j cali-x", "COMMIT", ""])
    chains = parse_save(save, "filter", COMMENTS)
    assert set(chains) == {"FORWARD", "cali-x"}
    assert chains["cali-x"].hashes == [r.hash for r in hash_rules("cali-x", rules)]
    assert chains["cali-x"].targets == ["cali-pi-a", "MARK", "RETURN", "cali-po-b", None]
    assert chains["FORWARD"].hashes == [None, None]
    assert chains["FORWARD"].targets == ["DOCKER", "cali-x"]
    assert chains["FORWARD"].refs("cali") == {"cali-x"}
