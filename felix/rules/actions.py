"""Terminal actions, with DropActionOverride applied to every drop felix decides on."""

from __future__ import annotations

from felix.rules.settings import DropActionOverride

DROP_LOG_PREFIX = "calico-drop:"


def drop_rules(match: str, override: DropActionOverride) -> list[str]:
    """Rules that 'drop' packets matching ``match`` (empty or ending in a space)."""
    log = [f'{match}-j LOG --log-prefix "{DROP_LOG_PREFIX}"'] if override.startswith("LOG") \
        else []
    verdict = "ACCEPT" if override.endswith("ACCEPT") else "DROP"
    return log + [f"{match}-j {verdict}"]
