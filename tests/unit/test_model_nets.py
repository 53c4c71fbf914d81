"""Canonical nets and addresses: the IPv4 fast path must agree with ipaddress exactly."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from felix.model.nets import _net, canonical_addr, canonical_net
from felix.model.validate import Invalid


def reference(text: str) -> str | None:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return None


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(alphabet="0123456789./", max_size=20),
    st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300),
              st.integers(0, 300), st.one_of(st.none(), st.integers(0, 40))).map(
        lambda t: ".".join(map(str, t[:4])) + ("" if t[4] is None else f"/{t[4]}"))))
def test_v4_fast_path_matches_ipaddress(text: str) -> None:
    assert _net(text) == reference(text)


@pytest.mark.parametrize("text,expected", [
    ("10.0.0.5/24", "10.0.0.0/24"), ("10.0.0.5", "10.0.0.5/32"), ("0.0.0.0/0", "0.0.0.0/0"),
    ("255.255.255.255/1", "128.0.0.0/1"), ("FD00::1/64", "fd00::/64"), ("::", "::/128"),
    ("::ffff:10.0.0.1/128", "::ffff:a00:1/128"),
])
def test_canonical_net(text: str, expected: str) -> None:
    assert canonical_net(text) == expected


@pytest.mark.parametrize("text", ["10.0.0.01", "10.0.0.0/33", "10.0.0.0/ 8", "10.0.0.0/08x",
                                  "10.0.0.0/255.0.0.0", "fe80::1%eth0", "١٠.0.0.1", "", "/8",
                                  "10.0.0.0/-1", "::/129"])
def test_canonical_net_rejects(text: str) -> None:
    with pytest.raises(Invalid):
        canonical_net(text)


@pytest.mark.parametrize("value", [167772161, b"\n\x00\x00\x01", None, ["10.0.0.1"], True])
def test_only_text_is_an_address(value: object) -> None:
    with pytest.raises(Invalid):
        canonical_net(value)
    with pytest.raises(Invalid):
        canonical_addr(value)


def test_family_checks() -> None:
    assert canonical_addr("FE80:0::1", 6) == "fe80::1"
    with pytest.raises(Invalid):
        canonical_addr("fe80::1", 4)
    with pytest.raises(Invalid):
        canonical_net("10.0.0.0/8", 6)
    with pytest.raises(Invalid):
        canonical_addr("10.0.0.0/8")
