"""Safe-token rules for every string that enters the model, in one place.

Anything a model object carries may end up in an iptables rule, an ipset name or member, a
route, a log line or an etcd path that felix writes. So every accepted token is plain ASCII
from a small alphabet: no whitespace, newlines, quotes, shell metacharacters, non-ASCII, and
no leading ``-`` (which a command-line parser could read as an option). Path segments are
also never ``.`` or ``..`` because felix writes status keys built from them.

All checks here are pure predicates; parsers turn a False into an ``Invalid`` with a reason.
"""

from __future__ import annotations

import re
from typing import NoReturn

# The alphabet every accepted model token lives in (config *values* excepted: they are
# free-form text interpreted per parameter by felix/config). Tests assert against this.
SAFE_TOKEN_RE = re.compile(r"^(?!-)[A-Za-z0-9_.:/\-]{0,253}\Z")

# Ids (profiles, tiers, policies, orchestrators, workloads, endpoints) and tags: the
# contract's ^[a-zA-Z0-9_.\-]+$, bounded, with no leading "-".
MAX_ID_LEN = 128
ID_RE = re.compile(r"^[a-zA-Z0-9_.][a-zA-Z0-9_.\-]{0,%d}\Z" % (MAX_ID_LEN - 1))
# Hostnames may be FQDNs, so they get DNS's length bound but the same alphabet.
HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9_.][a-zA-Z0-9_.\-]{0,252}\Z")
# Label names: letters, digits, _ . - / (k8s "prefix/name" form), starting alphanumeric.
LABEL_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_./\-]{0,252}\Z")
# Label values: Kubernetes' label-value syntax — at most 63 characters of letters, digits,
# "_", "." and "-", beginning and ending alphanumeric, or empty. Being k8s-compatible means
# values written by the k8s policy controller are accepted unchanged.
LABEL_VALUE_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9_.\-]{0,61}[a-zA-Z0-9])?)?\Z")
# iptables' --log-prefix holds at most 29 characters; keep room for felix's own suffix.
LOG_PREFIX_RE = re.compile(r"^[a-zA-Z0-9_.:][a-zA-Z0-9_.:\-]{0,26}\Z")
# Linux interface names: at most IFNAMSIZ-1 = 15 bytes. Workload (veth) names use no dots;
# host interfaces may (VLAN sub-interfaces such as eth0.100).
WORKLOAD_IFACE_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_\-]{0,14}\Z")
HOST_IFACE_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_.\-]{0,14}\Z")
IFACE_PREFIX_RE = WORKLOAD_IFACE_RE
CONFIG_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}\Z")
MAX_CONFIG_VALUE_LEN = 4096
# C0 and C1 controls, DEL, and the Unicode line/paragraph separators (log-line injection).
CONTROL_CHARS_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:\-])[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2}){4}\Z")


class Invalid(ValueError):
    """Raised inside the parsers; the message is the human-readable reason."""


def fail(reason: str) -> NoReturn:
    raise Invalid(reason)


def show(value: object, limit: int = 40) -> str:
    """A short, single-line, escaped rendering of untrusted data for reasons and logs."""
    text = repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return text


def _not_dots(s: str) -> bool:
    return s.strip(".") != ""


def is_id(s: object) -> bool:
    return isinstance(s, str) and ID_RE.match(s) is not None and _not_dots(s)


def is_tag(s: object) -> bool:
    return is_id(s)


def is_hostname(s: object) -> bool:
    return isinstance(s, str) and HOSTNAME_RE.match(s) is not None and _not_dots(s)


def is_label_name(s: object) -> bool:
    return isinstance(s, str) and LABEL_NAME_RE.match(s) is not None


def is_label_value(s: object) -> bool:
    return isinstance(s, str) and LABEL_VALUE_RE.match(s) is not None


def is_log_prefix(s: object) -> bool:
    return isinstance(s, str) and LOG_PREFIX_RE.match(s) is not None


def is_iface_prefix(s: object) -> bool:
    return isinstance(s, str) and IFACE_PREFIX_RE.match(s) is not None


def is_workload_iface(s: object, prefixes: tuple[str, ...]) -> bool:
    return (isinstance(s, str) and WORKLOAD_IFACE_RE.match(s) is not None
            and s.startswith(prefixes))


def is_host_iface(s: object) -> bool:
    return isinstance(s, str) and HOST_IFACE_RE.match(s) is not None and _not_dots(s)


def is_config_name(s: object) -> bool:
    return isinstance(s, str) and CONFIG_NAME_RE.match(s) is not None


def is_config_value(s: object) -> bool:
    return (isinstance(s, str) and len(s) <= MAX_CONFIG_VALUE_LEN
            and CONTROL_CHARS_RE.search(s) is None)


def canonical_mac(s: object) -> str | None:
    """``aa:bb:cc:dd:ee:ff`` for a MAC written with ``:`` or ``-`` separators, else None."""
    if not isinstance(s, str) or MAC_RE.match(s) is None:
        return None
    return s.lower().replace("-", ":")


def is_safe_token(s: str) -> bool:
    return SAFE_TOKEN_RE.match(s) is not None
