"""Kernel parameters under /proc/sys, and the set felix needs per workload interface.

Keys are written in path form relative to /proc/sys (``net/ipv4/conf/cali1234/proxy_arp``).
An interface name goes into the path as is: ``/proc/sys/net/ipv4/conf/eth0.100/`` is the real
directory of VLAN ``eth0.100`` (only the *dotted* sysctl(8) notation, ``net.ipv4.conf.eth0/100
.rp_filter``, spells the interface's dot as ``/``). ``key_from_dotted`` converts that notation.
/proc/sys/net shows the network namespace of the process that opens the file, so a writer
always acts on the namespace felix runs in.
"""

from __future__ import annotations

import os
PROC_SYS = "/proc/sys"


def key_from_dotted(dotted: str) -> str:
    """sysctl(8) notation → path form: dots become slashes and slashes (which stand for dots
    inside an interface name) become dots."""
    return dotted.translate(str.maketrans("./", "/."))


def _check_ifname(ifname: str) -> None:
    # A name with a slash or an empty/".." component would escape the interface directory.
    if not ifname or "/" in ifname or ifname in (".", ".."):
        raise ValueError(f"bad interface name for sysctl: {ifname!r}")


def interface_sysctls(ip_version: int, ifname: str) -> tuple[tuple[str, str], ...]:
    """What a workload interface needs. v4: answer ARP for any address (the workload's gateway
    is fake, e.g. 169.254.1.1) without delay, allow DNAT to 127.0.0.1 (metadata), strict
    reverse-path filtering (anti-spoofing backstop). v6: answer NDP for proxy neighbours
    (the gateway entry the route manager adds) and forward."""
    _check_ifname(ifname)
    if ip_version == 4:
        return ((f"net/ipv4/conf/{ifname}/proxy_arp", "1"),
                (f"net/ipv4/neigh/{ifname}/proxy_delay", "0"),
                (f"net/ipv4/conf/{ifname}/route_localnet", "1"),
                (f"net/ipv4/conf/{ifname}/rp_filter", "1"))
    return ((f"net/ipv6/conf/{ifname}/proxy_ndp", "1"),
            (f"net/ipv6/conf/{ifname}/forwarding", "1"))


def global_sysctls(ip_version: int) -> tuple[tuple[str, str], ...]:
    if ip_version == 4:
        return (("net/ipv4/ip_forward", "1"),)
    # Note: all/forwarding=1 also makes the kernel stop accepting router advertisements on
    # interfaces with accept_ra=1; hosts that need SLAAC must set accept_ra=2.
    return (("net/ipv6/conf/all/forwarding", "1"),)


class SysctlWriter:
    """Writes /proc/sys files (or files under another root). Unit tests subclass it with a
    recording fake (tests/unit/fake_netlink.FakeSysctl)."""

    def __init__(self, root: str = PROC_SYS) -> None:
        self._root = root

    def path(self, key: str) -> str:
        return os.path.join(self._root, key)

    def write(self, key: str, value: str) -> None:
        """Set ``key`` (path form) to ``value``; raises OSError on failure."""
        with open(self.path(key), "w") as f:
            f.write(value)

    def read(self, key: str) -> str:
        with open(self.path(key)) as f:
            return f.read().strip()
