"""INFO as Redis 7.0 writes it, and the counters behind its stats sections.

``render(sections, wanted)`` follows Redis: no argument or ``default``
gives the default sections, ``all`` every section but the module ones,
``everything`` all of them; several names may be given (``INFO server
clients``) and the sections come out in Redis's fixed order whatever the
order asked; an unknown name adds nothing. ``commandstats`` and
``errorstats`` are not default sections, as in Redis.

``CommandStats`` counts, per command, calls, the time spent running them
on this node (the dispatch up to the reply or the hand-off to the log; a
write's replication wait is not in it, as Redis's ``usec`` does not count
its WAIT), rejected calls (refused before running: arity, ACL, unknown
subcommand) and failed calls (an error reply), and errors by their code
(``errorstat_WRONGTYPE``). CONFIG RESETSTAT clears them.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable

from replikv.core.replies import OK, RespError

__all__ = ["CommandStats", "SlowLog", "cpu_section", "human_bytes", "render", "rss_bytes", "shown"]

# Redis 7.0's order of sections, and which of them INFO shows by default
ORDER = ("server", "clients", "memory", "persistence", "stats", "replication", "cpu",
         "commandstats", "errorstats", "cluster", "keyspace")
DEFAULT = frozenset(ORDER) - {"commandstats"}
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _asked(wanted: Iterable[str]) -> set[str]:
    names = {w.lower() for w in wanted}
    if not names or "default" in names:
        names |= DEFAULT
    return names


def shown(wanted: Iterable[str], name: str) -> bool:
    """Whether INFO asked for ``wanted`` shows section ``name`` (a mode skips building a costly
    section nobody asked for: sharded raft's line per hosted group)."""
    names = _asked(wanted)
    return name in names or "all" in names or "everything" in names


def render(sections: dict[str, list[str]], wanted: Iterable[str]) -> str:
    """Redis's INFO text: ``# Name`` headers, ``key:value`` lines, CRLF."""
    names = _asked(wanted)
    if "all" in names or "everything" in names:
        names |= set(sections)
    out = []
    for name in (*ORDER, *(s for s in sections if s not in ORDER)):
        if name in names and name in sections:
            out.append("# " + ("CPU" if name == "cpu" else name.capitalize()))
            out += [line for line in sections[name] if line]
            out.append("")
    return "\r\n".join(out)


class CommandStats:
    """Per command ``[calls, usec, rejected, failed]``; errors by code."""

    __slots__ = ("commands", "errors")

    def __init__(self) -> None:
        self.commands: dict[str, list[int]] = {}
        self.errors: dict[str, int] = {}

    def row(self, name: str) -> list[int]:
        """The command's ``[calls, ns, rejected, failed]``, kept for good (the
        dispatcher caches it beside the command: reset zeroes it in place)."""
        row = self.commands.get(name)
        if row is None:
            row = self.commands[name] = [0, 0, 0, 0]
        return row

    def rejected(self, name: str, error: str) -> None:
        row = self.commands.setdefault(name, [0, 0, 0, 0])
        row[2] += 1
        self.error(error)

    def failed(self, name: str, error: str) -> None:
        self.commands.setdefault(name, [0, 0, 0, 0])[3] += 1
        self.error(error)

    def error_reply(self, data: bytes) -> None:
        """Count an encoded error reply (``-CODE message\r\n``) by its code."""
        end = data.find(b" ")
        if end < 0:
            end = data.find(b"\r")
        self.error(data[1:end].decode(errors="replace"))

    def error(self, message: str) -> None:
        code = message.split(" ", 1)[0] or "ERR"
        self.errors[code] = self.errors.get(code, 0) + 1

    def reset(self) -> None:
        for row in self.commands.values():
            row[:] = [0, 0, 0, 0]
        self.errors.clear()

    def commandstats(self) -> list[str]:
        lines = []
        for name, (calls, ns, rejected, failed) in self.commands.items():
            if not (calls or rejected):
                continue
            usec = ns // 1000
            per_call = usec / calls if calls else 0.0
            lines.append(f"cmdstat_{name}:calls={calls},usec={usec},usec_per_call={per_call:.2f},"
                         f"rejected_calls={rejected},failed_calls={failed}")
        return lines

    def errorstats(self) -> list[str]:
        return [f"errorstat_{code}:count={count}" for code, count in self.errors.items()]

    def totals(self) -> list[str]:
        return [f"total_error_replies:{sum(self.errors.values())}",
                "unexpected_error_replies:0"]


def rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc/self/statm``)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def human_bytes(n: int) -> str:
    """Redis's ``bytesToHuman``: ``1.50M``, ``512B``."""
    for unit, size in (("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n}B"


def cpu_section() -> list[str]:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return [f"used_cpu_sys:{me.ru_stime:.6f}", f"used_cpu_user:{me.ru_utime:.6f}",
            f"used_cpu_sys_children:{children.ru_stime:.6f}",
            f"used_cpu_user_children:{children.ru_utime:.6f}"]


class SlowLog:
    """SLOWLOG: the commands that ran longer than ``slowlog-log-slower-than``
    microseconds on this node (negative: none; 0: all), newest first, at
    most ``slowlog-max-len``; arguments clipped as Redis clips them (32
    arguments, 128 bytes each)."""

    def __init__(self, slower_than_us: int = 10_000, max_len: int = 128) -> None:
        self.entries: list[list[object]] = []
        self.next_id = 0
        self.slower_than_us = self.max_len = self.threshold_ns = 0
        self.configure(slower_than_us, max_len)

    def configure(self, slower_than_us: int, max_len: int) -> None:
        self.slower_than_us, self.max_len = slower_than_us, max_len
        self.threshold_ns = 1 << 62 if slower_than_us < 0 else slower_than_us * 1000
        del self.entries[max(max_len, 0):]

    def maybe_add(self, ns: int, argv: list[bytes], addr: str, name: bytes | None) -> None:
        us = ns // 1000
        if self.slower_than_us < 0 or us < self.slower_than_us:
            return
        args = [a if len(a) <= 128 else a[:128] + b"... (%d more bytes)" % (len(a) - 128) for a in argv[:32]]
        if len(argv) > 32:
            args[-1] = b"... (%d more arguments)" % (len(argv) - 31)
        self.entries.insert(0, [self.next_id, int(time.time()), us, args, addr.encode(), name or b""])
        self.next_id += 1
        del self.entries[max(self.max_len, 0):]

    def command(self, argv: list[bytes]) -> object:
        """SLOWLOG GET [count] | LEN | RESET | HELP."""
        sub = argv[1].upper()
        if sub == b"GET" and len(argv) <= 3:
            count = 10
            if len(argv) == 3:
                try:
                    count = int(argv[2])
                except ValueError:
                    count = -2
                if count < -1:
                    return RespError("ERR count should be greater than or equal to -1")
                if count == -1:
                    count = len(self.entries)
            return self.entries[:count]
        if sub == b"LEN" and len(argv) == 2:
            return len(self.entries)
        if sub == b"RESET" and len(argv) == 2:
            self.entries.clear()
            return OK
        if sub == b"HELP" and len(argv) == 2:
            return ["SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "GET [<count>]", "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                    "    Entries are made of:", "    id, timestamp, time in microseconds, arguments array, "
                    "client IP and port,", "    client name", "LEN", "    Return the length of the slowlog.",
                    "RESET", "    Reset the slowlog.", "HELP", "    Prints this help."]
        if sub in (b"GET", b"LEN", b"RESET", b"HELP"):
            return RespError(f"ERR wrong number of arguments for 'slowlog|{sub.decode().lower()}' command")
        return RespError(f"ERR unknown subcommand '{argv[1].decode(errors='replace')}'. Try SLOWLOG HELP.")
