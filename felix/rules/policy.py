"""Policy and profile chains: one chain per (object, direction, family).

Allow sets the accept mark and returns; next-tier sets the pass mark and returns (in a profile,
where there are no tiers, it just ends that profile); deny drops; log logs and goes on.
The endpoint chain reads the marks after the jump.
"""

from __future__ import annotations

from typing import Iterable

from felix.model.objects import Rule
from felix.rules.actions import drop_rules
from felix.rules.marks import Marks, mark_match, set_mark
from felix.rules.matches import render_matches
from felix.rules.settings import DropActionOverride

DEFAULT_LOG_PREFIX = "calico-packet"


def render_rule_list(rules: Iterable[Rule], ip_version: int, marks: Marks,
                     drop_override: DropActionOverride, is_profile: bool) -> tuple[str, ...]:
    out: list[str] = []
    for rule in rules:
        for match in render_matches(rule, ip_version):
            if rule.action == "allow":
                out.append(f"{match}{set_mark(marks.accept, marks.accept)}")
                out.append(f"{mark_match(marks.accept, marks.accept)} -j RETURN")
            elif rule.action == "deny":
                out.extend(drop_rules(match, drop_override))
            elif rule.action == "next-tier":
                if is_profile:
                    out.append(f"{match}-j RETURN")
                else:
                    out.append(f"{match}{set_mark(marks.pass_, marks.pass_)}")
                    out.append(f"{mark_match(marks.pass_, marks.pass_)} -j RETURN")
            else:  # log
                prefix = rule.log_prefix or DEFAULT_LOG_PREFIX
                out.append(f'{match}-j LOG --log-prefix "{prefix}"')
    return tuple(out)
