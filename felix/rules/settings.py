"""The configuration the renderer depends on, frozen so renderers can be shared and cached."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EndpointToHostAction = Literal["DROP", "RETURN", "ACCEPT"]
DropActionOverride = Literal["DROP", "ACCEPT", "LOG-and-DROP", "LOG-and-ACCEPT"]


@dataclass(frozen=True)
class RuleSettings:
    hostname: str
    interface_prefixes: tuple[str, ...] = ("cali",)
    default_endpoint_to_host_action: EndpointToHostAction = "DROP"
    drop_action_override: DropActionOverride = "DROP"
    mark_mask: int = 0xFF000000
    metadata_addr: str | None = "127.0.0.1"
    metadata_port: int = 8775
    failsafe_inbound_ports: tuple[int, ...] = (22,)
    failsafe_outbound_ports: tuple[int, ...] = (2379, 2380, 4001, 7001)
    ipv6_enabled: bool = True
    ipip_enabled: bool = False

    @property
    def ip_versions(self) -> tuple[int, ...]:
        return (4, 6) if self.ipv6_enabled else (4,)
