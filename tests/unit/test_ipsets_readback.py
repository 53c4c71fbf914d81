"""parse_ipset_save's set-at-a-time scan must read what a line-by-line reading reads."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from felix.dataplane.ipsets import canonical_members, parse_ipset_save


def _ours(name: str) -> bool:
    return name.startswith("cali4") or name.startswith("cali6")


def _reference(output: str, ip_version: int) -> dict[str, tuple[str, str, int, set[str]]]:
    """The line-by-line reading (as felix did it before): add lines of a set seen so far."""
    kernel: dict[str, tuple[str, str, int, set[str]]] = {}
    for line in output.splitlines():
        if line.startswith("add "):
            parts = line.split(" ", 3)
            ks = kernel.get(parts[1])
            if ks is not None and len(parts) >= 3:
                ks[3].update(canonical_members(parts[2], ks[0], 6) if ip_version == 6
                             else [parts[2]])
        elif line.startswith("create "):
            parts = line.split()
            if len(parts) < 3 or not _ours(parts[1]):
                continue
            opts = dict(zip(parts[3::2], parts[4::2]))
            kernel[parts[1]] = (parts[2], opts.get("family", ""),
                                int(opts.get("maxelem", "65536")), set())
    return kernel


_NAMES = st.sampled_from(["cali4-a", "cali4-b", "cali6-c", "kube-x", "cali4t1"])
_MEMBERS = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.1.0.0/16", "fd00::1", "fd00:0::2",
                            "10.0.0.3 timeout 5", "10.0.0.4 comment \"x\""])


@st.composite
def _save(draw: st.DrawFn) -> str:
    lines: list[str] = []
    seen: set[str] = set()
    for name in draw(st.lists(_NAMES, max_size=4)):
        if name in seen:
            continue
        seen.add(name)
        maxelem = draw(st.sampled_from(["", " maxelem 1048576"]))
        lines.append(f"create {name} hash:net family inet hashsize 1024{maxelem}")
        lines += [f"add {name} {m}" for m in draw(st.lists(_MEMBERS, max_size=5, unique=True))]
        if draw(st.booleans()):  # odd shapes: a stray add for another set, a blank line
            lines.append(draw(st.sampled_from(["", f"add {draw(_NAMES)} 10.9.9.9"])))
    return "".join(line + "\n" for line in lines)


@settings(max_examples=300, deadline=None)
@given(_save(), st.sampled_from([4, 6]))
def test_set_at_a_time_scan_equals_line_by_line(output: str, ip_version: int) -> None:
    got = parse_ipset_save(output, _ours, ip_version)
    want = _reference(output, ip_version)
    assert {n: (k.set_type, k.family, k.maxelem, k.members) for n, k in got.items()} == want


def test_plain_blocks_and_foreign_sets() -> None:
    out = ("create kube-x hash:ip family inet hashsize 1024 maxelem 65536\n"
           "add kube-x 10.0.0.1\n"
           "create cali4-a hash:ip family inet hashsize 1024 maxelem 1048576\n"
           "add cali4-a 10.0.0.2\nadd cali4-a 10.0.0.3\n"
           "create cali4-b hash:net family inet hashsize 1024 maxelem 1048576\n")
    got = parse_ipset_save(out, _ours, 4)
    assert set(got) == {"cali4-a", "cali4-b"}
    assert got["cali4-a"].members == {"10.0.0.2", "10.0.0.3"} and got["cali4-b"].members == set()
    assert got["cali4-a"].maxelem == 1048576 and got["cali4-b"].set_type == "hash:net"
