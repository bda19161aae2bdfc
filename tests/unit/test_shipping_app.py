"""The leader-follower app snapshot read without copying its dump (runtime/shipping_app.py)."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from replikv.kv.context import ApplyContext
from replikv.kv.state_machine import StateMachine
from replikv.runtime.shipping_app import app_snapshot, restore_app, restore_app_steps, unpack_app
from replikv.storage import snapshot as snapshot_module
from replikv.storage.snapshot import map_snapshot_file, releasing_pages, write_snapshot


def machine(values: int, size: int) -> StateMachine:
    sm = StateMachine()
    for i in range(values):
        sm.apply([[b"SET", b"k%d" % i, bytes([i % 251]) * size]], ApplyContext(1, "", 1))
    return sm


# an epoch history longer than one feed of unpack_app (4 KiB), and bin 8 / 16 / 32 dumps
@pytest.mark.parametrize("epochs", [1, 3, 2000])
@pytest.mark.parametrize("values,size", [(0, 0), (3, 10), (2, 70_000)])
def test_unpack_app_gives_the_epoch_history_and_the_dump_as_a_view(epochs: int, values: int, size: int) -> None:
    sm = machine(values, size)
    epoch_starts = [[e, 1000 * e] for e in range(1, epochs + 1)]
    data = app_snapshot(epoch_starts, sm)
    got_starts, dump = unpack_app(data)
    assert got_starts == epoch_starts == msgpack.unpackb(data)[0]
    assert bytes(dump) == sm.snapshot() and dump.obj is data  # the dump is not copied
    restored, starts = restore_app(data)
    assert restored.data == sm.data and starts == epoch_starts


def test_the_app_restored_in_steps_is_the_app_restored_whole() -> None:
    sm = machine(300, 50_000)  # 15 MB: several load steps of 4 MiB
    data = app_snapshot([[1, 1], [2, 90]], sm)
    steps = restore_app_steps(data)
    yielded = 0
    while True:
        try:
            next(steps)
            yielded += 1
        except StopIteration as done:
            restored, starts = done.value
            break
    assert yielded >= 3
    assert restored.data == sm.data == restore_app(data)[0].data and starts == [[1, 1], [2, 90]]


@pytest.mark.parametrize("bad", [
    b"",
    msgpack.packb({"a": 1}),  # not an array
    msgpack.packb([[[1, 1]]]),  # one field
    msgpack.packb([[[1, 1]], "text"]),  # dump not bytes
    msgpack.packb([[[1, 1]], b"abc"])[:-2],  # dump cut short
    msgpack.packb([[[1, 1]] * 100, b"abc"])[:50],  # epoch history cut short
])
def test_unpack_app_refuses_other_shapes(bad: bytes) -> None:
    with pytest.raises(ValueError):
        unpack_app(bad)


def test_a_mapped_full_resync_file_decoded_in_steps_with_its_pages_released_between_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a follower installs one (storage/snapshot.py ``releasing_pages`` over
    ``restore_app_steps``): the pages a step read are released before the next step reads on,
    and once more at the end, and the result is whole."""
    sm = machine(200, 50_000)  # 10 MB: three load steps
    path = write_snapshot(tmp_path, 7, 1, app_snapshot([[1, 1]], sm))
    snap = map_snapshot_file(path)
    assert isinstance(snap.data, memoryview)
    released: list[object] = []
    real = snapshot_module.release_pages
    monkeypatch.setattr(snapshot_module, "release_pages", lambda view: (released.append(view.obj), real(view)))
    steps = releasing_pages(restore_app_steps(snap.data), snap.data)
    yielded = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            restored, starts = done.value
            break
        yielded += 1
        assert len(released) == yielded  # this step's pages went before the next step
    assert yielded >= 3 and len(released) == yielded + 1
    assert all(obj is snap.data.obj for obj in released)
    assert restored.data == sm.data and starts == [[1, 1]]
