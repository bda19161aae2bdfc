"""replikv.ports: ports for started processes come from below the ephemeral range, each checked
bindable, never offered twice before the walk wraps, per-worker slices by REPLIKV_PORT_RANGE."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from replikv import ports


def listener(port: int) -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_this_process_picks_below_the_ephemeral_range_within_its_slice() -> None:
    lo, hi = ports.picker().lo, ports.picker().hi
    assert ports.DEFAULT_RANGE[0] <= lo < hi <= ports.DEFAULT_RANGE[1]
    picked = ports.free_ports(20)
    assert len(set(picked)) == 20
    assert all(lo <= p < hi for p in picked)


@pytest.mark.skipif(ports.ephemeral_range()[0] < ports.DEFAULT_RANGE[1] + 10000,
                    reason=f"this machine's ephemeral ports start at {ports.ephemeral_range()[0]}, "
                    "inside the picker's range (and its peer-port band): it can only check bindability")
def test_the_ports_and_their_peer_ports_are_below_the_ephemeral_range() -> None:
    port = ports.free_port_with_offset(10000)
    assert port + 10000 < ports.ephemeral_range()[0]
    assert max(ports.free_ports(10)) < ports.ephemeral_range()[0]


def test_a_walk_offers_every_port_of_its_range_once_before_repeating() -> None:
    base = ports.free_port_block(8)
    picker = ports.PortPicker(base, base + 8, start=base + 5)
    first = picker.take(8)
    assert sorted(first) == list(range(base, base + 8))
    assert first[:3] == [base + 5, base + 6, base + 7]  # from the start, wrapping at hi
    assert picker.take(1) == [base + 5]


def test_a_port_something_listens_on_is_skipped() -> None:
    base = ports.free_port_block(4)
    with listener(base + 1):
        picker = ports.PortPicker(base, base + 4, start=base + 1)
        assert picker.take(2) == [base + 2, base + 3]
        block = ports.PortPicker(base, base + 4, start=base).take(2, contiguous=True)
        assert block == [base + 2, base + 3]  # [base, base+1] holds the busy port
        with pytest.raises(RuntimeError, match="no 4 free port"):
            ports.PortPicker(base, base + 4).take(4)


def test_a_port_whose_offset_port_is_busy_is_skipped() -> None:
    base = ports.free_port_block(2)
    offset = ports.free_port() - base
    with listener(base + offset):
        assert ports.PortPicker(base, base + 2, start=base).take(1, offset=offset) == [base + 1]


def test_the_range_comes_from_the_environment_and_a_bad_one_is_refused() -> None:
    code = "from replikv import ports; p = ports.picker(); print(p.lo, p.hi, ports.free_port())"
    env = {**os.environ, ports.RANGE_ENV: "12000-12010"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lo, hi, port = map(int, out.stdout.split())
    assert (lo, hi) == (12000, 12010) and 12000 <= port < 12010
    bad = subprocess.run([sys.executable, "-c", code], env={**os.environ, ports.RANGE_ENV: "12000"},
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "expected LO-HI" in bad.stderr
