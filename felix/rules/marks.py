"""The packet-mark bits felix uses, carved out of IptablesMarkMask."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Marks:
    accept: int  # a policy/profile allowed the packet (or, briefly, anti-spoofing passed)
    pass_: int  # a policy said next-tier: skip the rest of the tier

    @property
    def all(self) -> int:
        return self.accept | self.pass_

    @staticmethod
    def from_mask(mask: int) -> Marks:
        """The two lowest set bits of ``mask``; ValueError when it has fewer than two."""
        bits = [1 << i for i in range(32) if mask & (1 << i)]
        if len(bits) < 2:
            raise ValueError(
                f"IptablesMarkMask {mask:#x} must have at least 2 bits set (accept and pass)")
        return Marks(accept=bits[0], pass_=bits[1])


def mark_match(value: int, mask: int) -> str:
    return f"-m mark --mark {value:#x}/{mask:#x}"


def set_mark(value: int, mask: int) -> str:
    return f"-j MARK --set-xmark {value:#x}/{mask:#x}"
