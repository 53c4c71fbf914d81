"""A stateful fake of the iptables-{legacy,nft}-{restore,save} binaries behind CommandRunner.

It keeps tables per (backend, IP version), parses `restore` input like the real tool (tables,
`:chain` declarations, -A/-I/-R/-D/-F/-X/-N with index semantics, COMMIT), rejects what the
real one rejects (unknown chain, jump to a missing chain, index out of range, deleting a
referenced/non-empty/builtin chain, loops) with the whole transaction discarded, and prints
`save` output in save format. Failure switches simulate a held lock, bad chains, failing saves
and missing binaries.
"""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass, field
from typing import Sequence

from felix.dataplane.iptables.backend import commands_for
from felix.dataplane.iptables.table import Table
from felix.dataplane.runner import CommandResult
from felix.dataplane.stats import DataplaneStats

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
TARGET_EXTENSIONS = frozenset({
    "ACCEPT", "DROP", "RETURN", "REJECT", "LOG", "MARK", "CONNMARK", "MASQUERADE", "SNAT",
    "DNAT", "REDIRECT", "NOTRACK", "CT", "TCPMSS", "NFLOG"})
LOCK_MESSAGE = ("Another app is currently holding the xtables lock. "
                "Stopped waiting after 10s.")
_BINARY_RE = re.compile(r"^(ip6?)tables-(legacy|nft)-(restore|save)$")


class RestoreError(Exception):
    def __init__(self, lineno: int, message: str) -> None:
        super().__init__(f"line {lineno} failed: {message}")
        self.lineno = lineno


@dataclass
class FakeTable:
    name: str
    chains: dict[str, list[str]] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def fresh(cls, name: str) -> FakeTable:
        builtins = BUILTIN_CHAINS[name]
        return cls(name, {c: [] for c in builtins}, {c: "ACCEPT" for c in builtins})

    def copy(self) -> FakeTable:
        return FakeTable(self.name, {c: list(r) for c, r in self.chains.items()},
                         dict(self.policies))

    def is_builtin(self, chain: str) -> bool:
        return chain in BUILTIN_CHAINS[self.name]

    def referrers(self, chain: str) -> list[str]:
        return [name for name, rules in self.chains.items()
                if any(_target(r) == chain for r in rules)]


def normalise(spec: str) -> str:
    """What the real save prints back: whitespace collapsed, `-m tcp` implied by ports."""
    tokens = shlex.split(spec)
    for proto in ("tcp", "udp"):
        if (("--dport" in tokens or "--sport" in tokens) and f"-m {proto}" not in
                " ".join(tokens)):
            for i in range(len(tokens) - 1):
                if tokens[i] == "-p" and tokens[i + 1] == proto:
                    tokens[i + 2:i + 2] = ["-m", proto]
                    break
    return " ".join(shlex.quote(t) if " " in t else
                    (f'"{t}"' if t.startswith(("cali:", "test:")) else t) for t in tokens)


@functools.lru_cache(maxsize=None)
def _target(spec: str) -> str | None:
    tokens = shlex.split(spec)
    found = None
    for i, tok in enumerate(tokens[:-1]):
        if tok in ("-j", "-g", "--jump", "--goto"):
            found = tokens[i + 1]
    return found


@dataclass
class RestoreCall:
    argv: tuple[str, ...]
    input: str
    returncode: int


class FakeIptables:
    """CommandRunner fake. Inspect `tables`, flip the switches, read the counters."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, int], dict[str, FakeTable]] = {}
        # Failure switches.
        self.fail_chains: set[str] = set()  # any restore touching one of these fails
        self.lock_held_calls = 0  # the next N restores exit 4 (lock not acquired)
        self.fail_saves = 0  # the next N saves exit 1
        self.garbled_saves = 0  # the next N saves print a line no real save prints
        self.missing: set[str] = set()  # binaries that "are not installed" (exit 127)
        # Counters.
        self.restore_calls: list[RestoreCall] = []
        self.save_calls = 0
        self.lines_applied = 0

    # ---- test helpers ---------------------------------------------------------------------

    def table(self, backend: str = "legacy", ip_version: int = 4,
              table: str = "filter") -> FakeTable:
        return self.tables.setdefault((backend, ip_version), {}).setdefault(
            table, FakeTable.fresh(table))

    def external(self, line: str, backend: str = "legacy", ip_version: int = 4,
                 table: str = "filter") -> None:
        """Someone else's single command, e.g. `-F cali-x` or `-D INPUT 1`."""
        self.table(backend, ip_version, table)
        self._restore(backend, ip_version, f"*{table}\n{line}\nCOMMIT\n", noflush=True)

    def rules(self, chain: str, backend: str = "legacy", ip_version: int = 4,
              table: str = "filter") -> list[str]:
        return list(self.table(backend, ip_version, table).chains[chain])

    @property
    def restore_count(self) -> int:
        return len(self.restore_calls)

    # ---- CommandRunner --------------------------------------------------------------------

    def run(self, argv: Sequence[str], input: str | None = None,
            timeout: float | None = None) -> CommandResult:
        m = _BINARY_RE.match(argv[0])
        if not m or argv[0] in self.missing:
            return CommandResult(127, "", f"{argv[0]}: not found")
        ip_version = 6 if m.group(1) == "ip6" else 4
        backend, verb = m.group(2), m.group(3)
        if verb == "save":
            return self._save_cmd(backend, ip_version, list(argv[1:]))
        return self._restore_cmd(backend, ip_version, list(argv), input or "")

    def _save_cmd(self, backend: str, ip_version: int, args: list[str]) -> CommandResult:
        self.save_calls += 1
        if self.fail_saves:
            self.fail_saves -= 1
            return CommandResult(1, "", "iptables-save: simulated failure")
        garble = ["-Z INPUT what is this"] if self.garbled_saves else []
        self.garbled_saves = max(0, self.garbled_saves - 1)
        only = None
        if args[:1] in (["-t"], ["--table"]) and len(args) == 2:
            only = args[1]
        elif args:
            return CommandResult(2, "", f"unknown arguments {args}")
        out = []
        for name, t in self.tables.get((backend, ip_version), {}).items():
            if only is not None and name != only:
                continue
            out.append(f"# Generated by fake {backend}-save")
            out.append(f"*{name}")
            users = [c for c in t.chains if not t.is_builtin(c)]
            if backend == "legacy":
                users.sort()
            order = [c for c in t.chains if t.is_builtin(c)] + users
            out += [f":{c} {t.policies.get(c, '-')} [0:0]" for c in order]
            out += [f"-A {c} {r}" for c in order for r in t.chains[c]]
            out += garble
            out.append("COMMIT")
            out.append("# Completed")
        return CommandResult(0, "\n".join(out) + ("\n" if out else ""), "")

    def _restore_cmd(self, backend: str, ip_version: int, argv: list[str],
                     text: str) -> CommandResult:
        args = argv[1:]
        noflush = False
        i = 0
        while i < len(args):
            a = args[i]
            if a in ("--noflush", "-n"):
                noflush = True
            elif a in ("--wait", "-w"):
                i += 1
            elif a.startswith("--wait="):
                pass
            else:
                return self._finish(argv, text, 2, f"unknown option {a}")
            i += 1
        if self.lock_held_calls:
            self.lock_held_calls -= 1
            return self._finish(argv, text, 4, LOCK_MESSAGE)
        try:
            applied = self._restore(backend, ip_version, text, noflush)
        except RestoreError as e:
            return self._finish(argv, text, 1, f"{argv[0]}: {e}")
        self.lines_applied += applied
        return self._finish(argv, text, 0, "")

    def _finish(self, argv: list[str], text: str, rc: int, stderr: str) -> CommandResult:
        self.restore_calls.append(RestoreCall(tuple(argv), text, rc))
        return CommandResult(rc, "", stderr)

    # ---- the restore language -------------------------------------------------------------

    def _restore(self, backend: str, ip_version: int, text: str, noflush: bool) -> int:
        tables = self.tables.setdefault((backend, ip_version), {})
        work: FakeTable | None = None
        applied = 0
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                name = line[1:]
                if name not in BUILTIN_CHAINS:
                    raise RestoreError(lineno, f"unknown table {name}")
                base = tables.get(name) if noflush else None
                work = base.copy() if base is not None else FakeTable.fresh(name)
                continue
            if work is None:
                raise RestoreError(lineno, "no table")
            if line == "COMMIT":
                self._check_loops(work, lineno)
                tables[work.name] = work
                work = None
                continue
            self._line(work, line, lineno)
            applied += 1
        if work is not None:
            raise RestoreError(len(text.splitlines()), "missing COMMIT")
        return applied

    def _line(self, t: FakeTable, line: str, lineno: int) -> None:
        if line.startswith(":"):
            parts = line[1:].split()
            name, policy = parts[0], parts[1] if len(parts) > 1 else "-"
            if name in self.fail_chains:
                raise RestoreError(lineno, f"simulated failure on {name}")
            if policy == "-":
                if t.is_builtin(name):
                    raise RestoreError(lineno, f"builtin chain {name} needs a policy")
                t.chains[name] = []  # declaring an existing chain flushes it (--noflush too)
            else:
                if not t.is_builtin(name):
                    raise RestoreError(lineno, f"policy on user chain {name}")
                t.policies[name] = policy
            return
        op, _, rest = line.partition(" ")
        chain, _, spec = rest.strip().partition(" ")
        spec = spec.strip()
        if chain in self.fail_chains:
            raise RestoreError(lineno, f"simulated failure on {chain}")
        if op == "-N":
            if chain in t.chains:
                raise RestoreError(lineno, "Chain already exists")
            t.chains[chain] = []
            return
        if op == "-F" and not chain:
            for c in t.chains:
                t.chains[c] = []
            return
        if chain not in t.chains:
            raise RestoreError(lineno, f"chain {chain!r} does not exist")
        rules = t.chains[chain]
        if op == "-F":
            rules.clear()
        elif op == "-X":
            if t.is_builtin(chain):
                raise RestoreError(lineno, "cannot delete builtin chain")
            if rules:
                raise RestoreError(lineno, "Directory not empty")
            if t.referrers(chain):
                raise RestoreError(lineno, "Device or resource busy")
            del t.chains[chain]
        elif op == "-A":
            rules.append(self._spec(t, spec, lineno))
        elif op in ("-I", "-R", "-D"):
            first, _, after = spec.partition(" ")
            if first.isdigit():
                index, spec = int(first), after.strip()
            elif op == "-I":
                index = 1
            elif op == "-D":
                wanted = self._spec(t, spec, lineno)
                if wanted not in rules:
                    raise RestoreError(lineno, "Bad rule (does a matching rule exist?)")
                rules.remove(wanted)
                return
            else:
                raise RestoreError(lineno, "-R needs an index")
            limit = len(rules) + 1 if op == "-I" else len(rules)
            if not 1 <= index <= limit:
                raise RestoreError(lineno, f"Index of {op} too big")
            if op == "-I":
                rules.insert(index - 1, self._spec(t, spec, lineno))
            elif op == "-R":
                rules[index - 1] = self._spec(t, spec, lineno)
            else:
                if spec:
                    raise RestoreError(lineno, "-D takes an index or a rule")
                del rules[index - 1]
        else:
            raise RestoreError(lineno, f"unknown command {op}")

    def _spec(self, t: FakeTable, spec: str, lineno: int) -> str:
        try:
            norm = normalise(spec)
        except ValueError as e:
            raise RestoreError(lineno, f"bad quoting: {e}") from None
        target = _target(norm)
        if target is not None and target not in TARGET_EXTENSIONS:
            if target not in t.chains:
                raise RestoreError(lineno, f"Chain '{target}' does not exist")
            if t.is_builtin(target):
                raise RestoreError(lineno, f"cannot jump to builtin chain {target}")
        return norm

    @staticmethod
    def _check_loops(t: FakeTable, lineno: int) -> None:
        edges: dict[str, set[str]] = {
            c: {x for x in map(_target, rules) if x is not None and x in t.chains}
            for c, rules in t.chains.items()}
        state: dict[str, int] = {}

        def visit(c: str) -> None:
            state[c] = 1
            for n in edges[c]:
                if state.get(n) == 1:
                    raise RestoreError(lineno, "Too many levels of symbolic links")
                if n not in state:
                    visit(n)
            state[c] = 2

        for c in t.chains:
            if c not in state:
                visit(c)


# ---- helpers for tests: a Table over the fake, and views of the fake's state -----------

COMMENT_RE = re.compile(r'-m comment --comment "?cali:[A-Za-z0-9_-]{16}"? ?')


def make_table(fake: FakeIptables | None = None, *, backend: str = "legacy",
               ip_version: int = 4, table: str = "filter",
               stats: DataplaneStats | None = None) -> tuple[FakeIptables, Table, DataplaneStats]:
    fake = fake or FakeIptables()
    stats = stats or DataplaneStats()
    t = Table(ip_version, table, fake, commands_for(backend, ip_version), stats,
              sleep=lambda _s: None)
    return fake, t, stats


def plain(fake: FakeIptables, chain: str, backend: str = "legacy", ip_version: int = 4,
          table: str = "filter") -> list[str]:
    """Rules of a chain as the kernel holds them, minus our hash comment."""
    return [COMMENT_RE.sub("", r).strip() for r in fake.rules(chain, backend, ip_version, table)]


def ours(fake: FakeIptables, chain: str, backend: str = "legacy") -> list[bool]:
    return [bool(COMMENT_RE.search(r)) for r in fake.rules(chain, backend)]


def norm(rules: Sequence[str]) -> list[str]:
    return [normalise(r) for r in rules]


def user_chains(fake: FakeIptables, backend: str = "legacy", ip_version: int = 4,
                table: str = "filter") -> set[str]:
    t = fake.table(backend, ip_version, table)
    return {c for c in t.chains if not t.is_builtin(c)}
