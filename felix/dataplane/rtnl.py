"""rtnetlink wire constants and framing shared by felix's raw-socket users (the interface
monitor and the route/neighbour shim), so both parse and frame messages the same way."""

from __future__ import annotations

import struct

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000

IF_OPER_UNKNOWN = 0
IF_OPER_UP = 6
# IFLA_OPERSTATE values in kernel order (pyroute2 reports the names).
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

NLMSGHDR = struct.Struct("=IHHII")  # length type flags seq pid
RTATTR = struct.Struct("=HH")  # length type


def is_oper_up(flags: int, operstate: int | None) -> bool:
    """UP, or UNKNOWN (drivers that don't report operstate) with admin up and carrier."""
    if operstate == IF_OPER_UP:
        return True
    if operstate in (None, IF_OPER_UNKNOWN):
        return bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
    return False
