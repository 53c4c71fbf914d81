"""A stateful fake of the ``ipset`` binary behind the CommandRunner seam.

It keeps sets the way the kernel does: canonical member spelling, maxelem ("Hash is full"),
type checks on swap, refusal to destroy a set a rule references, and a NON-atomic ``restore``
(lines before a failing one stay applied), so tests see the same partial failures as the real
tool.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Sequence

from felix.dataplane.runner import CommandResult

VERSION = "ipset v7.17"


@dataclass
class FakeSet:
    set_type: str
    family: str
    maxelem: int
    members: set[str] = field(default_factory=set)


class IpsetError(Exception):
    pass


class FakeIpset:
    def __init__(self) -> None:
        self.sets: dict[str, FakeSet] = {}
        self.references: dict[str, int] = {}  # set name -> iptables rules using it
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail_all = False  # every command fails (e.g. binary missing)
        self.poison: set[str] = set()  # any restore line naming one of these sets fails

    # ---- helpers for tests --------------------------------------------------------------

    def members(self, name: str) -> set[str]:
        return set(self.sets[name].members)

    def restores(self) -> list[str]:
        return [inp or "" for argv, inp in self.calls if argv[1:2] == ["restore"]]

    def clear_calls(self) -> None:
        self.calls.clear()

    # ---- CommandRunner ------------------------------------------------------------------

    def run(self, argv: Sequence[str], input: str | None = None,
            timeout: float | None = None) -> CommandResult:
        argv = list(argv)
        self.calls.append((argv, input))
        if self.fail_all:
            return CommandResult(2, "", f"{VERSION}: Kernel error received: Operation failed")
        if argv[0] != "ipset":
            return CommandResult(127, "", f"{argv[0]}: not found")
        args = argv[1:]
        exist = "-exist" in args or "-!" in args
        args = [a for a in args if a not in ("-exist", "-!")]
        if args == ["restore"]:
            return self._restore(input or "", exist)
        if args in (["save"], ["list", "-o", "save"]):
            return CommandResult(0, self._save(), "")
        if args == ["list", "-n"]:
            return CommandResult(0, "".join(f"{n}\n" for n in self.sets), "")
        try:
            self._line(args, exist)
        except IpsetError as e:
            return CommandResult(1, "", f"{VERSION}: {e}")
        return CommandResult(0, "", "")

    def _save(self) -> str:
        out: list[str] = []
        for name, s in self.sets.items():
            out.append(f"create {name} {s.set_type} family {s.family} hashsize 1024 "
                       f"maxelem {s.maxelem} bucketsize 12 initval 0x1234abcd")
            out.extend(f"add {name} {m}" for m in sorted(s.members))
        return "".join(line + "\n" for line in out)

    def _restore(self, text: str, exist: bool) -> CommandResult:
        for n, line in enumerate(text.splitlines(), 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0] == "COMMIT":
                continue
            try:
                self._line(words, exist)
            except IpsetError as e:
                return CommandResult(1, "", f"{VERSION}: Error in line {n}: {e}")
        return CommandResult(0, "", "")

    def _get(self, name: str) -> FakeSet:
        s = self.sets.get(name)
        if s is None:
            raise IpsetError("The set with the given name does not exist")
        return s

    def _line(self, words: list[str], exist: bool) -> None:
        cmd, *rest = words
        if any(r in self.poison for r in rest[:2]):
            raise IpsetError("Kernel error received: poisoned set (test switch)")
        if cmd in ("create", "-N", "n"):
            self._create(rest, exist)
        elif cmd in ("add", "-A", "a"):
            s = self._get(rest[0])
            m = self._member(s, rest[1])
            if m in s.members:
                if not exist:
                    raise IpsetError("Element cannot be added to the set: it's already added")
                return
            if len(s.members) >= s.maxelem:
                raise IpsetError("Hash is full, cannot add more elements")
            s.members.add(m)
        elif cmd in ("del", "-D", "d"):
            s = self._get(rest[0])
            m = self._member(s, rest[1])
            if m not in s.members:
                if not exist:
                    raise IpsetError("Element cannot be deleted from the set: it's not added")
                return
            s.members.discard(m)
        elif cmd in ("swap", "-W", "w"):
            a, b = self._get(rest[0]), self._get(rest[1])
            if a.set_type != b.set_type or a.family != b.family:
                raise IpsetError("The sets cannot be swapped: their type does not match")
            # References stay with the names (iptables holds the set index, not contents).
            self.sets[rest[0]], self.sets[rest[1]] = b, a
        elif cmd in ("destroy", "-X", "x"):
            self._get(rest[0])
            if self.references.get(rest[0], 0):
                raise IpsetError("Set cannot be destroyed: it is in use by a kernel component")
            del self.sets[rest[0]]
        elif cmd in ("flush", "-F", "f"):
            self._get(rest[0]).members.clear()
        else:
            raise IpsetError(f"Unknown command {cmd}")

    def _create(self, rest: list[str], exist: bool) -> None:
        name, set_type, *opts = rest
        if len(name) > 31:
            raise IpsetError("Syntax error: setname is longer than 31 characters")
        if set_type not in ("hash:ip", "hash:net"):
            raise IpsetError(f"Syntax error: unsupported type {set_type}")
        o = dict(zip(opts[::2], opts[1::2]))
        new = FakeSet(set_type, o.get("family", "inet"), int(o.get("maxelem", "65536")))
        old = self.sets.get(name)
        if old is not None:
            same = (old.set_type, old.family, old.maxelem) == (new.set_type, new.family,
                                                               new.maxelem)
            if not (exist and same):
                raise IpsetError("Set cannot be created: set with the same name already exists")
            return
        self.sets[name] = new

    def _member(self, s: FakeSet, text: str) -> str:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise IpsetError(f"Syntax error: cannot parse {text}: resolving to IP failed")
        if (net.version == 4) != (s.family == "inet"):
            raise IpsetError(f"Syntax error: {text} is not an address of the set's family")
        if net.prefixlen == net.max_prefixlen:
            return str(net.network_address)
        if s.set_type == "hash:ip":
            raise IpsetError("Syntax error: ranges are not supported by this fake")
        if net.prefixlen == 0:
            raise IpsetError("The value of the CIDR parameter of the IP address is invalid")
        return str(net)
