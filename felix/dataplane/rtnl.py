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

NLMSGHDR = struct.Struct("=IHHII")  # length type flags seq pid
RTATTR = struct.Struct("=HH")  # length type
