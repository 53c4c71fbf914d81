"""Stateful fakes of the route manager's seams: a little kernel (links, a main routing table,
neighbours) behind the NetlinkShim protocol, and a sysctl tree that only has per-interface
directories for links that exist. Failure switches make chosen operations fail with an errno.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from felix.dataplane.interfaces import InterfaceEvent
from felix.dataplane.netlink import KernelRoute, LinkInfo, NetlinkOpError, canonical_cidr
from felix.dataplane.sysctl import SysctlWriter


@dataclass
class FakeLink:
    ifname: str
    ifindex: int
    admin_up: bool = True
    carrier: bool = True

    @property
    def oper_up(self) -> bool:
        return self.admin_up and self.carrier


@dataclass
class FakeNetlink:
    links: dict[str, FakeLink] = field(default_factory=dict)
    # (ip_version, dst) → (ifindex, proto): like the main table, one route per destination.
    routes: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    neighbours: dict[tuple[int, int, str], str] = field(default_factory=dict)
    proxy_neighbours: set[tuple[int, int, str]] = field(default_factory=set)
    # Failure switches: op name ("list", "replace", "delete", "neigh", "proxy", "link") → errno,
    # and per-ifindex errno for route replaces.
    fail_ops: dict[str, int] = field(default_factory=dict)
    fail_replace_on: dict[int, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    _next_index: int = 10

    # --- the "outside world" -------------------------------------------------------------

    def add_link(self, ifname: str, admin_up: bool = True, carrier: bool = True) -> FakeLink:
        self._next_index += 1
        link = FakeLink(ifname, self._next_index, admin_up, carrier)
        self.links[ifname] = link
        return link

    def del_link(self, ifname: str) -> None:
        link = self.links.pop(ifname)
        self._flush_link(link.ifindex)

    def set_admin(self, ifname: str, up: bool) -> None:
        link = self.links[ifname]
        link.admin_up = up
        if not up:  # like the kernel: an admin-down link loses its routes and neighbours
            self._flush_link(link.ifindex)

    def _flush_link(self, ifindex: int) -> None:
        self.routes = {k: v for k, v in self.routes.items() if v[0] != ifindex}
        self.neighbours = {k: v for k, v in self.neighbours.items() if k[1] != ifindex}
        self.proxy_neighbours = {k for k in self.proxy_neighbours if k[1] != ifindex}

    def event(self, ifname: str) -> InterfaceEvent:
        """What the interface monitor would report for this link now."""
        link = self.links.get(ifname)
        if link is None:
            return InterfaceEvent(ifname, 0, False, False)
        return InterfaceEvent(ifname, link.ifindex, True, link.oper_up)

    def routes_of(self, ip_version: int, proto: int | None = None) -> dict[str, str]:
        """dst → interface name, for assertions."""
        names = {l.ifindex: l.ifname for l in self.links.values()}
        return {dst: names.get(idx, f"#{idx}") for (v, dst), (idx, p) in self.routes.items()
                if v == ip_version and (proto is None or p == proto)}

    # --- NetlinkShim ---------------------------------------------------------------------

    def _op(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.fail_ops:
            raise NetlinkOpError(self.fail_ops[name], f"injected {name} failure")

    def _link_by_index(self, ifindex: int) -> FakeLink:
        for link in self.links.values():
            if link.ifindex == ifindex:
                return link
        raise NetlinkOpError(errno.ENODEV, "No such device")

    def list_routes(self, ip_version: int, proto: int) -> list[KernelRoute]:
        self._op("list")
        return [KernelRoute(dst, idx, p) for (v, dst), (idx, p) in sorted(self.routes.items())
                if v == ip_version and p == proto]

    def replace_route(self, ip_version: int, dst: str, ifindex: int, proto: int) -> None:
        self._op("replace")
        link = self._link_by_index(ifindex)
        if ifindex in self.fail_replace_on:
            raise NetlinkOpError(self.fail_replace_on[ifindex], "injected replace failure")
        if not link.admin_up:
            raise NetlinkOpError(errno.ENETDOWN, "Nexthop device is not up")
        self.routes[(ip_version, canonical_cidr(dst))] = (ifindex, proto)

    def delete_route(self, ip_version: int, dst: str, ifindex: int, proto: int) -> bool:
        self._op("delete")
        key = (ip_version, canonical_cidr(dst))
        if self.routes.get(key) != (ifindex, proto):
            return False
        del self.routes[key]
        return True

    def link(self, ifname: str) -> LinkInfo | None:
        self._op("link")
        link = self.links.get(ifname)
        if link is None:
            return None
        return LinkInfo(ifname, link.ifindex, link.admin_up, link.oper_up)

    def set_neighbour(self, ip_version: int, ifindex: int, ip: str, mac: str) -> None:
        self._op("neigh")
        self._link_by_index(ifindex)
        self.neighbours[(ip_version, ifindex, ip)] = mac

    def set_proxy_neighbour(self, ip_version: int, ifindex: int, ip: str) -> None:
        self._op("proxy")
        self._link_by_index(ifindex)
        self.proxy_neighbours.add((ip_version, ifindex, ip))

    def close(self) -> None:
        pass


class FakeSysctl(SysctlWriter):
    """Records values; per-interface keys only exist while the fake kernel has the link."""

    def __init__(self, kernel: FakeNetlink) -> None:
        super().__init__(root="/nonexistent")
        self.kernel = kernel
        self.values: dict[str, str] = {}
        self.fail_keys: dict[str, int] = {}  # substring → errno
        self.writes = 0

    def write(self, key: str, value: str) -> None:
        self.writes += 1
        for sub, code in self.fail_keys.items():
            if sub in key:
                raise OSError(code, f"injected failure writing {key}")
        parts = key.split("/")
        if len(parts) == 5 and parts[2] in ("conf", "neigh") and parts[3] != "all":
            if parts[3] not in self.kernel.links:
                raise FileNotFoundError(errno.ENOENT, f"No such file: /proc/sys/{key}")
        self.values[key] = value
