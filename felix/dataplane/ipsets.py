"""Felix's ipsets for one IP family.

``on_message`` only records desired membership; ``apply_updates`` programs every pending create,
add and del in ONE ``ipset restore``; ``apply_deletions`` destroys sets nobody wants any more
(the dataplane loop calls it after iptables has stopped referencing them).

We keep a model of what we believe the kernel holds for our sets, so a one-member change is a
one-line restore; ``invalidate`` drops that model and the next apply re-reads the kernel
(``ipset save``) and repairs drift. Rewrites of a whole set (first sight of a set that differs,
maxelem change, large drift) are built in a temporary set and swapped in, so packets never see
a half-filled set.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from felix.dataplane.runner import CommandRunner
from felix.dataplane.stats import DataplaneStats
from felix.messages import IpsetDelta, IpsetRemoved, IpsetSet

log = logging.getLogger(__name__)

MAX_NAME_LEN = 31  # IPSET_MAXNAMELEN - 1
SET_TYPES = ("hash:ip", "hash:net")
# Below this many differing members a drift/update is patched in place with add/del lines;
# above it (and above half the set) a temp+swap rewrite is both cheaper and atomic.
_REWRITE_MIN_DIFF = 64
_RESTORE_TIMEOUT = 60.0


@dataclass(frozen=True)
class IpsetApplyResult:
    ok: bool
    lines_written: int
    failed_sets: frozenset[str]
    error: str = ""


@dataclass
class _Desired:
    set_type: str
    members: set[str]


@dataclass
class _Kernel:
    set_type: str
    family: str
    maxelem: int
    members: set[str] = field(default_factory=set)


@dataclass
class _Plan:
    """Restore lines for one set and the kernel state they produce."""

    name: str
    lines: list[str]
    result: _Kernel | None
    drop_temp: str | None = None  # temp set name that no longer exists after these lines


_Replanner = Callable[[str], "_Plan | str | None"]


def canonical_members(member: str, set_type: str, ip_version: int) -> list[str]:
    """The kernel's own spelling of ``member`` (so read-back compares equal), or [] if it is
    not valid in such a set. hash:net refuses /0, so it becomes two /1s."""
    if "/" not in member:
        # inet_pton/ntop: ~10x faster than ipaddress, which matters at 100k members.
        family = socket.AF_INET if ip_version == 4 else socket.AF_INET6
        try:
            return [socket.inet_ntop(family, socket.inet_pton(family, member))]
        except (OSError, ValueError):
            return []
    try:
        net = ipaddress.ip_network(member, strict=False)
    except ValueError:
        return []
    if net.version != ip_version:
        return []
    if net.prefixlen == net.max_prefixlen:
        return canonical_members(str(net.network_address), set_type, ip_version)
    if set_type == "hash:ip":
        return []  # the kernel would expand a CIDR into every address in it
    if net.prefixlen == 0:
        return [str(sub) for sub in net.subnets()]
    return [str(net)]


def parse_ipset_save(output: str, is_ours: Callable[[str], bool],
                     ip_version: int) -> dict[str, _Kernel]:
    """Our sets in `ipset save` output. Runs on every refresh over every member (100k+), so
    it works a set at a time: save prints each set's create line followed by its add lines,
    so a foreign set's block is skipped whole and ours becomes one comprehension over its
    lines. Lines out of that shape (options after a member, an add for another set) take the
    line-by-line path."""
    kernel: dict[str, _Kernel] = {}
    recanon = ip_version == 6  # inet_ntop and Python may spell IPv6 differently
    blocks = ("\n" + output).split("\ncreate ")
    # (block index, line): like save itself, an add only counts after its set's create line.
    stray: list[tuple[int, str]] = []
    seen_at: dict[str, int] = {}
    for i, block in enumerate(blocks[1:], 1):
        head, _, body = block.partition("\n")
        parts = head.split()
        if len(parts) < 2 or not is_ours(parts[0]):
            if parts:  # (its own members are of no interest; anything else might be)
                own = f"add {parts[0]} "
                stray += [(i, line) for line in body.splitlines() if not line.startswith(own)]
            continue
        name = parts[0]
        seen_at[name] = i
        opts = dict(zip(parts[2::2], parts[3::2]))
        ks = kernel[name] = _Kernel(parts[1], opts.get("family", ""),
                                    int(opts.get("maxelem", "65536")))
        prefix = f"add {name} "
        cut = len(prefix)
        lines = body.splitlines()
        members = {line[cut:] for line in lines if line.startswith(prefix)}
        # Plain shape: every line is "add <name> <member>" (exactly two spaces each).
        if len(members) != len(lines) or body.count(" ") != 2 * len(lines):
            # Not the plain shape: fall back for this block.
            members = set()
            for line in lines:
                stray.append((i, line))
        ks.members = members
    for i, line in stray:
        words = line.split(" ", 3)
        if words[0] == "add" and len(words) >= 3 and seen_at.get(words[1], i + 1) <= i:
            kernel[words[1]].members.add(words[2])
    if recanon:
        for ks in kernel.values():
            ks.members = {c for m in ks.members
                          for c in canonical_members(m, ks.set_type, 6)}
    return kernel


class IpsetManager:
    def __init__(self, ip_version: int, runner: CommandRunner, stats: DataplaneStats, *,
                 max_size: int = 1048576, prefix: str = "cali") -> None:
        if ip_version not in (4, 6):
            raise ValueError(f"ip_version must be 4 or 6, not {ip_version}")
        self.ip_version = ip_version
        self._runner = runner
        self._stats = stats
        self._max_size = max_size
        self._family = "inet" if ip_version == 4 else "inet6"
        self._own_prefix = f"{prefix}{ip_version}"
        self._temp_prefix = f"{prefix}{ip_version}t"

        self._desired: dict[str, _Desired] = {}
        self._kernel: dict[str, _Kernel] = {}
        self._kernel_known = False
        # Sets whose kernel contents must be diffed in full (new, rewritten, refreshed).
        self._full_check: set[str] = set()
        # Sets known in sync except for these members (IpsetDelta fast path).
        self._touched: dict[str, set[str]] = {}
        self._removed: set[str] = set()
        # Sets we have written or verified since start: anything else is "first sight".
        self._programmed: set[str] = set()
        self._cleanup_allowed = False
        self._cleanup_pending = False

    # ---- recording ----------------------------------------------------------------------

    def on_message(self, msg: IpsetSet | IpsetDelta | IpsetRemoved) -> None:
        if msg.ip_version != self.ip_version:
            log.error("IPv%d ipset message sent to IPv%d manager: %r", msg.ip_version,
                      self.ip_version, msg)
            return
        if not self._is_ours(msg.name):
            log.error("Ignoring ipset %r: not a felix IPv%d set name (prefix %s, <= %d chars)",
                      msg.name, self.ip_version, self._own_prefix, MAX_NAME_LEN)
            return
        if isinstance(msg, IpsetSet):
            if msg.set_type not in SET_TYPES:
                log.error("Ignoring ipset %s: unsupported type %s", msg.name, msg.set_type)
                return
            self._desired[msg.name] = _Desired(msg.set_type,
                                               self._canonical(msg.members, msg.set_type))
            self._full_check.add(msg.name)
            self._touched.pop(msg.name, None)
            self._removed.discard(msg.name)
        elif isinstance(msg, IpsetDelta):
            want = self._desired.get(msg.name)
            if want is None:
                log.error("Delta for unknown ipset %s ignored", msg.name)
                return
            removed = self._canonical(msg.removed, want.set_type)
            added = self._canonical(msg.added, want.set_type)
            want.members -= removed
            want.members |= added
            if msg.name not in self._full_check:
                touched = self._touched.setdefault(msg.name, set())
                touched |= removed
                touched |= added
        else:
            self._desired.pop(msg.name, None)
            self._full_check.discard(msg.name)
            self._touched.pop(msg.name, None)
            self._removed.add(msg.name)

    def allow_cleanup(self) -> None:
        self._cleanup_allowed = True
        self._cleanup_pending = True

    def invalidate(self) -> None:
        self._kernel_known = False
        self._full_check |= self._desired.keys()
        self._touched.clear()
        if self._cleanup_allowed:
            self._cleanup_pending = True

    @property
    def dirty(self) -> bool:
        return bool(self._full_check or self._touched or self._removed or self._cleanup_pending)

    @property
    def updates_pending(self) -> bool:
        return bool(self._full_check or self._touched)

    @property
    def deletions_pending(self) -> bool:
        return bool(self._removed or self._cleanup_pending)

    @property
    def desired_names(self) -> frozenset[str]:
        return frozenset(self._desired)

    def _is_ours(self, name: str) -> bool:
        return name.startswith(self._own_prefix) and len(name) <= MAX_NAME_LEN

    def _canonical(self, members: Iterable[str], set_type: str) -> set[str]:
        out: set[str] = set()
        for m in members:
            c = canonical_members(m, set_type, self.ip_version)
            if not c:
                log.warning("Dropping member %r: not valid in an IPv%d %s set", m,
                            self.ip_version, set_type)
            out.update(c)
        return out

    def temp_name(self, name: str) -> str:
        digest = hashlib.sha1(name.encode()).hexdigest()
        return (self._temp_prefix + digest)[:MAX_NAME_LEN]

    # ---- kernel read-back ---------------------------------------------------------------

    def _read_kernel(self) -> str:
        """Reload our model of the kernel's sets; returns an error text or ""."""
        res = self._runner.run(["ipset", "save"], timeout=_RESTORE_TIMEOUT)
        self._stats.ipset_calls += 1
        if res.returncode != 0:
            self._stats.ipset_errors += 1
            return f"ipset save failed ({res.returncode}): {res.stderr.strip()}"
        kernel = parse_ipset_save(res.stdout, self._is_ours, self.ip_version)
        self._set_kernel(kernel)
        self._kernel_known = True
        # Every set we want must now be compared against what is really there.
        self._full_check |= self._desired.keys()
        self._touched.clear()
        return ""

    def _set_kernel(self, kernel: dict[str, _Kernel]) -> None:
        self._stats.ipsets_total += len(kernel) - len(self._kernel)
        self._kernel = kernel

    def _kernel_put(self, name: str, ks: _Kernel | None) -> None:
        before = len(self._kernel)
        if ks is None:
            self._kernel.pop(name, None)
        else:
            self._kernel[name] = ks
        self._stats.ipsets_total += len(self._kernel) - before

    # ---- planning -----------------------------------------------------------------------

    def _create_line(self, name: str, set_type: str) -> str:
        return f"create {name} {set_type} family {self._family} maxelem {self._max_size}"

    def _plan_update(self, name: str) -> _Plan | str:
        """The restore lines that bring ``name`` to its desired state, or an error text."""
        want = self._desired[name]
        if len(want.members) > self._max_size:
            return (f"ipset {name}: {len(want.members)} members exceed maxelem "
                    f"{self._max_size}; kernel contents left unchanged")
        have = self._kernel.get(name)
        result = _Kernel(want.set_type, self._family, self._max_size, set(want.members))
        if have is None:
            return _Plan(name, [self._create_line(name, want.set_type)]
                         + [f"add {name} {m}" for m in want.members], result)
        if have.set_type != want.set_type or have.family != self._family:
            # The kernel cannot swap sets of different types: recreate in place (refused by
            # the kernel, and so reported, while a rule still references the set).
            return _Plan(name, [f"destroy {name}", self._create_line(name, want.set_type)]
                         + [f"add {name} {m}" for m in want.members], result)
        if name in self._full_check:
            missing = want.members - have.members
            extra = have.members - want.members
        else:
            touched = self._touched.get(name, set())
            missing = {m for m in touched if m in want.members and m not in have.members}
            extra = {m for m in touched if m not in want.members and m in have.members}
        diff = len(missing) + len(extra)
        if (have.maxelem != self._max_size
                or (diff and name not in self._programmed)
                or (diff > _REWRITE_MIN_DIFF and diff * 2 > len(want.members))):
            return self._plan_rewrite(name, want, result)
        # Dels first so that a set at its limit has room for the adds.
        return _Plan(name, [f"del {name} {m}" for m in extra]
                     + [f"add {name} {m}" for m in missing], result)

    def _plan_rewrite(self, name: str, want: _Desired, result: _Kernel) -> _Plan:
        temp = self.temp_name(name)
        lines = [f"destroy {temp}"] if temp in self._kernel else []
        # flush: with -exist, a stale temp we did not know about would keep its members.
        lines += [self._create_line(temp, want.set_type), f"flush {temp}"]
        lines += [f"add {temp} {m}" for m in want.members]
        lines += [f"swap {temp} {name}", f"destroy {temp}"]
        return _Plan(name, lines, result, drop_temp=temp)

    def _commit(self, plan: _Plan) -> None:
        if plan.drop_temp is not None:
            self._kernel_put(plan.drop_temp, None)
        self._kernel_put(plan.name, plan.result)
        if plan.result is None:
            self._programmed.discard(plan.name)
        else:
            self._programmed.add(plan.name)

    def _restore(self, lines: Sequence[str]) -> str:
        res = self._runner.run(["ipset", "restore", "-exist"], input="\n".join(lines) + "\n",
                               timeout=_RESTORE_TIMEOUT)
        self._stats.ipset_calls += 1
        self._stats.ipset_lines_executed += len(lines)
        if res.returncode != 0:
            self._stats.ipset_errors += 1
            return f"ipset restore failed ({res.returncode}): {res.stderr.strip()}"
        return ""

    def _run_plans(self, plans: list[_Plan], replan: _Replanner) -> IpsetApplyResult:
        """One restore for all plans; if it fails, re-read the kernel (a failed restore has
        applied the lines before the bad one) and retry set by set to isolate the bad ones."""
        lines = [line for p in plans for line in p.lines]
        if not lines:
            for p in plans:
                self._commit(p)
            return IpsetApplyResult(True, 0, frozenset())
        err = self._restore(lines)
        if not err:
            for p in plans:
                self._commit(p)
            return IpsetApplyResult(True, len(lines), frozenset())
        log.warning("Batched %s; retrying set by set", err)
        read_err = self._read_kernel()
        if read_err:
            self._kernel_known = False
            return IpsetApplyResult(False, 0, frozenset(p.name for p in plans),
                                    f"{err}; {read_err}")
        failed: set[str] = set()
        errors: list[str] = []
        written = 0
        for p in plans:
            fresh = replan(p.name)
            if fresh is None:
                continue
            if isinstance(fresh, str):
                failed.add(p.name)
                errors.append(fresh)
                continue
            if not fresh.lines:
                self._commit(fresh)
                continue
            one_err = self._restore(fresh.lines)
            if one_err:
                failed.add(p.name)
                errors.append(f"ipset {p.name}: {one_err}")
                self._kernel_known = False  # partly applied: re-read before the next try
            else:
                written += len(fresh.lines)
                self._commit(fresh)
        if failed:
            log.error("ipset programming failed: %s", "; ".join(errors))
        return IpsetApplyResult(not failed, written, frozenset(failed), "; ".join(errors))

    # ---- apply --------------------------------------------------------------------------

    def apply_updates(self) -> IpsetApplyResult:
        if not self._kernel_known:
            err = self._read_kernel()
            if err:
                pending = frozenset(self._full_check | self._touched.keys())
                return IpsetApplyResult(False, 0, pending, err)
        names = sorted(self._full_check | self._touched.keys())
        plans: list[_Plan] = []
        failed: set[str] = set()
        errors: list[str] = []
        for name in names:
            plan = self._plan_update(name)
            if isinstance(plan, str):
                failed.add(name)
                errors.append(plan)
            else:
                plans.append(plan)
        if errors:
            log.error("ipset programming refused: %s", "; ".join(errors))

        def replan(name: str) -> _Plan | str | None:
            return self._plan_update(name) if name in self._desired else None

        res = self._run_plans(plans, replan)
        for name in names:
            if name not in failed and name not in res.failed_sets:
                self._full_check.discard(name)
                self._touched.pop(name, None)
        failed |= res.failed_sets
        all_errors = "; ".join(e for e in [*errors, res.error] if e)
        return IpsetApplyResult(not failed, res.lines_written, frozenset(failed), all_errors)

    def apply_deletions(self) -> IpsetApplyResult:
        if not (self._removed or self._cleanup_pending):
            return IpsetApplyResult(True, 0, frozenset())
        if not self._kernel_known:
            err = self._read_kernel()
            if err:
                return IpsetApplyResult(False, 0, frozenset(self._removed), err)
        doomed = {n for n in self._removed if n in self._kernel}
        if self._cleanup_allowed:
            doomed |= {n for n in self._kernel if n not in self._desired}
        self._removed &= doomed

        def replan(name: str) -> _Plan | None:
            if name in self._kernel and name not in self._desired:
                return _Plan(name, [f"destroy {name}"], None)
            return None

        res = self._run_plans([_Plan(n, [f"destroy {n}"], None) for n in sorted(doomed)],
                              replan)
        self._removed &= res.failed_sets
        if self._cleanup_pending and not res.failed_sets:
            self._cleanup_pending = False
        return res

