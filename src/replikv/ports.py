"""Free ports for the processes replikv starts on one machine (``replikv check``'s nodes, and the
test suite's clusters), picked so that two starters do not race for one port.

A port found with ``bind(0)`` is in the kernel's ephemeral range and stays free only until
something else wants one: between that check and the node's own bind, any outgoing connection on
the machine may be given it as its local port, and any other ``bind(0)`` may be handed it too (a
second pytest-xdist worker, a dashboard on port 0). A node then fails to start, or, worse, a client
meant for it reaches whatever took the port. So ports are picked below the ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``), where the kernel never hands out ports on its own:

- Invariant: a picker offers ports only from its range ``[lo, hi)``, walking it one way from a
  random start, so within a process a port is not offered twice until the walk wraps (by then the
  process that had it is long gone), and two processes rarely walk the same ports at once.
- Each candidate is still bound once on the caller's host to check that nothing holds it (a
  listener, or a socket in TIME_WAIT: no ``SO_REUSEADDR`` on the check).
- ``REPLIKV_PORT_RANGE=lo-hi`` narrows the range for this process and its children: the test suite
  gives each xdist worker its own slice, so workers never offer each other's ports.
- Ports at an offset (a node's default peer port, ``port + PEER_PORT_OFFSET``) are checked at
  ``port + offset``, a band (``[20000, 30000)`` by default) that nothing picks from directly.

On a machine whose ephemeral range starts below 30000 (``sysctl net.ipv4.ip_local_port_range``)
the bands overlap it: ports are still checked bindable, but may race as ``bind(0)``'s do.
"""

from __future__ import annotations

import os
import random
import socket
import threading

DEFAULT_RANGE = (10000, 20000)  # + PEER_PORT_OFFSET (10000) stays below the usual ephemeral 32768
RANGE_ENV = "REPLIKV_PORT_RANGE"


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ports it picks itself (``bind(0)``, outgoing connections)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = f.read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` on ``host`` can be bound now (nothing listens there, none in TIME_WAIT)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class PortPicker:
    """Hands out ports from ``[lo, hi)``; see the module docstring for the rules."""

    def __init__(self, lo: int, hi: int, start: int | None = None) -> None:
        if not 0 < lo < hi <= 65536:
            raise ValueError(f"bad port range {lo}-{hi}")
        self.lo, self.hi = lo, hi
        self._next = lo + (random.randrange(hi - lo) if start is None else (start - lo) % (hi - lo))
        self._lock = threading.Lock()

    def _candidates(self, count: int) -> list[int]:
        """The next ``count`` ports of the walk (wrapping at ``hi``), moving the walk past them."""
        out = []
        for _ in range(count):
            out.append(self._next)
            self._next = self._next + 1 if self._next + 1 < self.hi else self.lo
        return out

    def take(self, count: int = 1, host: str = "127.0.0.1", offset: int = 0,
             contiguous: bool = False) -> list[int]:
        """``count`` distinct ports, each bindable on ``host`` (and so is each ``port + offset``
        when ``offset`` is given); consecutive ones when ``contiguous``. Raises ``RuntimeError``
        after one whole walk of the range without finding them."""
        with self._lock:
            taken: list[int] = []
            for _ in range(self.hi - self.lo):
                if contiguous:
                    if self._next + count > self.hi:
                        self._next = self.lo
                    block = self._candidates(count)
                    if all(self._usable(p, host, offset) for p in block):
                        return block
                    continue
                (port,) = self._candidates(1)
                if self._usable(port, host, offset):
                    taken.append(port)
                    if len(taken) == count:
                        return taken
            raise RuntimeError(f"no {count} free port(s) in {self.lo}-{self.hi} on {host}")

    @staticmethod
    def _usable(port: int, host: str, offset: int) -> bool:
        return bindable(port, host) and (not offset or (port + offset < 65536 and bindable(port + offset, host)))


_picker: PortPicker | None = None
_picker_lock = threading.Lock()


def picker() -> PortPicker:
    """This process's picker: ``REPLIKV_PORT_RANGE`` if set, else ``DEFAULT_RANGE``."""
    global _picker
    with _picker_lock:
        if _picker is None:
            lo, hi = DEFAULT_RANGE
            if spec := os.environ.get(RANGE_ENV):
                try:
                    lo_s, hi_s = spec.split("-")
                    lo, hi = int(lo_s), int(hi_s)
                except ValueError:
                    raise ValueError(f"{RANGE_ENV}={spec!r}: expected LO-HI, e.g. 10000-15000") from None
            _picker = PortPicker(lo, hi)
        return _picker


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports on ``host``."""
    return picker().take(count, host)


def free_port(host: str = "127.0.0.1") -> int:
    return picker().take(1, host)[0]


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive free ports (``replikv up --port P`` uses P..P+count-1)."""
    return picker().take(count, host, contiguous=True)[0]


def free_port_with_offset(offset: int, host: str = "127.0.0.1") -> int:
    """A free port P whose ``P + offset`` is free too (a node's default peer port)."""
    return picker().take(1, host, offset=offset)[0]
