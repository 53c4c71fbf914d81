"""Sort orders of tiers and policies: by (order, name), a missing order sorting last."""

from __future__ import annotations

from felix.model.objects import Policy, Tier


def tier_sort_key(tier: Tier) -> tuple[bool, float, str]:
    return (tier.order is None, tier.order or 0.0, tier.name)


def policy_sort_key(policy: Policy) -> tuple[bool, float, str]:
    return (policy.order is None, policy.order or 0.0, policy.key.policy_id)
