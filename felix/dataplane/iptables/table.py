"""One iptables table of one IP family: desired chains and hooks in, minimal restores out.

Setters only record. apply() reads the kernel back when it is not in sync, plans a minimal
change per dirty chain, and programs all of them in one `<restore> --noflush`. A restore that
fails on its content is bisected so that one bad chain does not hold back the rest.

Fail closed: a rule that would jump to a new chain the kernel rejected on its own, or to a chain
the owner blocked (set_blocked: e.g. every chain of an endpoint one of whose chains failed),
is written as a DROP instead; it is rewritten as the real jump once the target is programmed
(or unblocked). So a rejected endpoint chain neither holds back its referrers (the dispatch
chains every other endpoint needs) nor leaves a half-programmed endpoint open.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from felix.dataplane.iptables.backend import IptablesCommands
from felix.dataplane.iptables.delta import chain_lines, hook_lines
from felix.dataplane.iptables.hashing import CommentFormat, HashedRule, hash_rules
from felix.dataplane.iptables.plan import Change, dependency_order, restore_script, split_valid
from felix.dataplane.iptables.readback import KernelChain, ParseError, parse_save
from felix.dataplane.runner import CommandResult, CommandRunner
from felix.dataplane.stats import DataplaneStats

_log = logging.getLogger(__name__)

RESTORE_TRIES = 3
RETRY_BACKOFF = 0.05  # seconds, doubled per try; the dataplane loop retries later anyway
SAVE_TIMEOUT = 60.0
_LINE_ERROR_RE = re.compile(r"\bline:? \d+")
_CLOSED_ACTION = "-j DROP"


def _jump_re(target: str) -> re.Pattern[str]:
    return re.compile(r"(?:^|(?<=\s))-(?:j|g|-jump|-goto)\s+" + re.escape(target) + r"(?=\s|$)")


@dataclass(frozen=True)
class ApplyResult:
    ok: bool
    lines_written: int
    failed_chains: frozenset[str]  # chains that could not be programmed (will be retried)
    error: str = ""


class _ContentError(Exception):
    """The restore rejected its input (bisect it), as opposed to a lock/exec failure."""


class Table:
    def __init__(self, ip_version: int, table: str, runner: CommandRunner,
                 commands: IptablesCommands, stats: DataplaneStats, *,
                 lock_timeout: float = 10, chain_prefix: str = "cali",
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.ip_version = ip_version
        self.table = table
        self._runner = runner
        self._commands = commands
        self._stats = stats
        self._lock_timeout = lock_timeout
        self._prefix = chain_prefix
        self._clock = clock
        # Looked up per call so that gevent's monkey-patched sleep is used when present.
        self._sleep = sleep or (lambda seconds: time.sleep(seconds))
        self._comments = CommentFormat(chain_prefix)

        self._chains: dict[str, tuple[HashedRule, ...]] = {}
        self._hooks: dict[str, tuple[HashedRule, ...]] = {}
        self._ever_set: set[str] = set()  # chains and hooked kernel chains set by this run
        self._kernel: dict[str, KernelChain] = {}
        self._in_sync = False
        self._dirty: set[str] = set()
        self._cleanup_allowed = False
        self._cleanup_pending = False
        self._counted = (0, 0)  # our share of stats.iptables_chains / iptables_rules
        self._written = 0  # lines written by the current apply
        self._foreign_refs: set[str] = set()
        self._blocked: frozenset[str] = frozenset()  # owner: never enter these chains
        self._unprogrammable: set[str] = set()  # rejected by the kernel on their own
        self._planned: dict[str, tuple[HashedRule, ...]] = {}  # what each change writes
        self._rewrite: set[str] = set()  # referrers of chains that just closed or reopened

    # ---- setters: record only -------------------------------------------------------------

    def set_chain(self, name: str, rules: Sequence[str]) -> None:
        if not name.startswith(self._prefix):
            raise ValueError(f"chain {name!r} lacks our prefix {self._prefix!r}")
        hashed = hash_rules(name, rules)
        self._ever_set.add(name)
        if self._chains.get(name) != hashed:
            self._chains[name] = hashed
            self._dirty.add(name)

    def remove_chain(self, name: str) -> None:
        self._unprogrammable.discard(name)
        if self._chains.pop(name, None) is not None or self._cleanup_allowed:
            self._dirty.add(name)

    def set_hook(self, kernel_chain: str, rules: Sequence[str]) -> None:
        if kernel_chain.startswith(self._prefix):
            raise ValueError(f"hooks go into kernel chains, not {kernel_chain!r}")
        hashed = hash_rules(kernel_chain, rules)
        self._ever_set.add(kernel_chain)
        if self._hooks.get(kernel_chain, ()) != hashed:
            self._hooks[kernel_chain] = hashed
            self._dirty.add(kernel_chain)

    def set_blocked(self, names: frozenset[str]) -> None:
        """Chains that must not be entered even when programmed (jumps to them become DROP)."""
        names = frozenset(names)
        if names != self._blocked:
            changed = names ^ self._blocked
            self._blocked = names
            self._dirty_referrers(changed)

    @property
    def closed_chains(self) -> frozenset[str]:
        return self._blocked | frozenset(self._unprogrammable)

    def _dirty_referrers(self, targets: set[str] | frozenset[str]) -> None:
        for table in (self._chains, self._hooks):
            for name, rules in table.items():
                if any(r.target in targets for r in rules):
                    self._dirty.add(name)
                    self._rewrite.add(name)

    def _effective(self, name: str, rules: tuple[HashedRule, ...]) -> tuple[HashedRule, ...]:
        """`rules` with every jump to a closed chain replaced by a DROP."""
        closed = self._blocked | self._unprogrammable
        if not closed or not any(r.target in closed for r in rules):
            return rules
        texts = [_jump_re(r.target).sub(_CLOSED_ACTION, r.text)  # type: ignore[arg-type]
                 if r.target in closed else r.text for r in rules]
        return hash_rules(name, texts)

    def allow_cleanup(self) -> None:
        if not self._cleanup_allowed:
            self._cleanup_allowed = True
            self._cleanup_pending = True

    def invalidate(self) -> None:
        self._in_sync = False

    @property
    def dirty(self) -> bool:
        return bool(self._dirty) or not self._in_sync or self._cleanup_pending

    # ---- apply ----------------------------------------------------------------------------

    def apply(self) -> ApplyResult:
        start = self._clock()
        self._written = 0
        read_now = False
        if not self._in_sync:
            error = self._read_back()
            if error:
                return ApplyResult(False, 0, frozenset(self._dirty), error)
            read_now = True
        error = ""
        try:
            try:
                self._program(self._plan(self._candidates(read_now)), bisect=read_now)
            except _ContentError as e:
                # Our model of the kernel may be stale (someone deleted a chain under us):
                # re-read once, then bisect whatever still fails.
                _log.warning("%s: restore failed (%s); re-reading the kernel", self._name, e)
                error = self._read_back()
                if error:
                    return ApplyResult(False, self._written, frozenset(self._dirty), error)
                self._program(self._plan(self._candidates(True)), bisect=True)
            # Referrers of a chain that closed (or reopened) during this apply: once more,
            # so they go ahead with a DROP (or the real jump) now rather than next time.
            for _ in range(2):
                if not self._rewrite & self._dirty:
                    break
                self._rewrite = set()
                again = self._dirty - self._unprogrammable  # (and what waited on them)
                self._program(self._plan(again), bisect=True)
        except _FatalError as e:
            error = str(e)
        failed = frozenset(self._dirty)  # whatever was planned and not recorded
        if failed and not error:
            error = f"chains could not be programmed: {sorted(failed)}"
        if error:
            self._stats.last_error = error
            _log.error("%s: %s", self._name, error)
        self._update_counts()
        _log.debug("%s: apply wrote %d lines in %.3fs", self._name, self._written,
                   self._clock() - start)
        return ApplyResult(not error, self._written, failed, error)

    @property
    def _name(self) -> str:
        return f"{self._commands.name}/v{self.ip_version}/{self.table}"

    def _deletable(self, name: str) -> bool:
        return self._cleanup_allowed or name in self._ever_set

    def _candidates(self, full: bool) -> set[str]:
        names = set(self._dirty)
        if full or self._cleanup_pending:
            self._cleanup_pending = False
            names |= set(self._chains) | set(self._hooks)
            for name, kc in self._kernel.items():
                if name.startswith(self._prefix) or any(h is not None for h in kc.hashes):
                    names.add(name)
        return names

    def _plan(self, names: set[str]) -> list[Change]:
        # A chain some foreign rule jumps to is not ours to delete (nor could we).
        self._foreign_refs = {t for name, kc in self._kernel.items()
                              if not name.startswith(self._prefix)
                              for h, t in zip(kc.hashes, kc.targets)
                              if h is None and t is not None and t.startswith(self._prefix)}
        changes = []
        for name in sorted(names):
            change = self._plan_one(name)
            if change is None:
                self._dirty.discard(name)
            else:
                self._dirty.add(name)  # stays dirty until a restore records it
                changes.append(change)
        return dependency_order(changes, self._kernel, self._prefix)

    def _plan_one(self, name: str) -> Change | None:
        kc = self._kernel.get(name)
        if name.startswith(self._prefix):
            desired = self._chains.get(name)
            if desired is not None:
                desired = self._planned[name] = self._effective(name, desired)
                lines = chain_lines(name, None if kc is None else kc.hashes, desired,
                                    self._comments)
                if kc is not None and not lines:
                    return None
                return Change(name, "write", tuple(lines), new=kc is None,
                              refs_after=self._refs(desired))
            if kc is not None and self._deletable(name):
                if name in self._foreign_refs:
                    _log.warning("%s: not deleting %s: a foreign rule jumps to it",
                                 self._name, name)
                    return None
                return Change(name, "delete", ())
            return None
        if name not in self._hooks and not self._deletable(name):
            return None
        hooks = self._planned[name] = self._effective(name, self._hooks.get(name, ()))
        lines = hook_lines(name, None if kc is None else kc.hashes, hooks, self._comments)
        if not lines:
            return None
        foreign = set() if kc is None else {
            t for h, t in zip(kc.hashes, kc.targets)
            if h is None and t is not None and t.startswith(self._prefix)}
        return Change(name, "write", tuple(lines), refs_after=frozenset(
            foreign | self._refs(hooks)))

    def _refs(self, rules: Sequence[HashedRule]) -> frozenset[str]:
        return frozenset(r.target for r in rules
                         if r.target is not None and r.target.startswith(self._prefix))

    def _program(self, changes: list[Change], *, bisect: bool) -> None:
        """Programs what it can of `changes`; what it cannot stays dirty. Raises
        _ContentError on a rejected restore when not bisecting."""
        accepted, _held = split_valid(changes, self._kernel, self._prefix)
        if not accepted:
            return
        body = restore_script(self.table, accepted, self._kernel)
        if body:
            try:
                self._restore(body)
            except _ContentError:
                if not bisect:
                    raise
                if len(accepted) == 1:
                    bad = accepted[0]
                    _log.error("%s: chain %s cannot be programmed", self._name, bad.name)
                    # Only a new chain: an existing one keeps its previous version, which its
                    # referrers may go on using until the update succeeds.
                    if (bad.kind == "write" and bad.new and bad.name.startswith(self._prefix)
                            and bad.name not in self._unprogrammable):
                        # Fail closed, and let its referrers go ahead without it.
                        self._unprogrammable.add(bad.name)
                        self._dirty_referrers({bad.name})
                    return
                mid = len(accepted) // 2
                self._program(accepted[:mid], bisect=True)
                self._program(accepted[mid:], bisect=True)
                return
        self._written += len(body)
        for c in accepted:
            self._record(c)

    def _record(self, c: Change) -> None:
        """Updates the kernel model after a successful restore, without re-reading."""
        self._dirty.discard(c.name)
        if c.kind == "delete":
            self._kernel.pop(c.name, None)
        elif c.name.startswith(self._prefix):
            rules = self._planned.pop(c.name)
            if c.name in self._unprogrammable:
                self._unprogrammable.discard(c.name)
                self._dirty_referrers({c.name})
            self._kernel[c.name] = KernelChain([r.hash for r in rules],
                                               [r.target for r in rules])
        else:
            old = self._kernel.get(c.name, KernelChain())
            hooks = self._planned.pop(c.name)
            kept = [(h, t) for h, t in zip(old.hashes, old.targets) if h is None]
            self._kernel[c.name] = KernelChain([r.hash for r in hooks] + [h for h, _ in kept],
                                               [r.target for r in hooks] + [t for _, t in kept])

    def _restore(self, body: list[str]) -> None:
        argv = [self._commands.restore, "--noflush"]
        if self._commands.supports_wait:
            argv += ["--wait", f"{self._lock_timeout:g}"]
        script = "\n".join([f"*{self.table}", *body, "COMMIT", ""])
        result: CommandResult | None = None
        for attempt in range(RESTORE_TRIES):
            if attempt:
                self._sleep(RETRY_BACKOFF * 2 ** (attempt - 1))
            result = self._runner.run(argv, input=script, timeout=self._lock_timeout + 60)
            self._stats.iptables_restore_calls += 1
            if result.returncode == 0:
                self._stats.iptables_lines_executed += len(body)
                return
            self._stats.iptables_restore_errors += 1
            stderr = result.stderr.strip()
            if _LINE_ERROR_RE.search(stderr):
                raise _ContentError(f"{argv[0]} rc={result.returncode}: {stderr}")
            if result.returncode != 4:
                raise _FatalError(f"fatal: {argv[0]} rc={result.returncode}: {stderr}")
            _log.warning("%s: restore hit a lock/resource problem (try %d): %s",
                         self._name, attempt + 1, stderr)
        assert result is not None
        raise _FatalError(f"fatal: {argv[0]} still failing after {RESTORE_TRIES} tries "
                          f"rc={result.returncode}: {result.stderr.strip()}")

    def _read_back(self) -> str:
        argv = [self._commands.save, "-t", self.table]
        result = self._runner.run(argv, timeout=SAVE_TIMEOUT)
        self._stats.iptables_save_calls += 1
        if result.returncode != 0:
            self._stats.iptables_save_errors += 1
            error = f"{argv[0]} rc={result.returncode}: {result.stderr.strip()}"
            self._stats.last_error = error
            return error
        try:
            self._kernel = parse_save(result.stdout, self.table, self._comments)
        except ParseError as e:
            self._stats.iptables_save_errors += 1
            self._stats.last_error = str(e)
            return str(e)
        self._in_sync = True
        return ""

    def _update_counts(self) -> None:
        chains = rules = 0
        for name, kc in self._kernel.items():
            if name.startswith(self._prefix):
                chains += 1
                rules += len(kc.hashes)
            else:
                rules += sum(1 for h in kc.hashes if h is not None)
        old_chains, old_rules = self._counted
        self._stats.iptables_chains += chains - old_chains
        self._stats.iptables_rules += rules - old_rules
        self._counted = (chains, rules)


class _FatalError(Exception):
    """The restore could not run at all (missing binary, lock never free, timeout)."""
