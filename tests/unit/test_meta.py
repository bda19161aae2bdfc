"""MetaStore: round trip, atomic replacement, corruption detected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from replikv.storage.errors import CorruptMetaError
from replikv.storage.meta import META_FILE, MetaStore


def test_missing_file_is_an_empty_dict(tmp_path: Path) -> None:
    assert MetaStore(tmp_path / "fresh").load() == {}


def test_round_trip_and_overwrite(tmp_path: Path) -> None:
    store = MetaStore(tmp_path / "node")
    state = {"epoch": 7, "role": "follower", "leader": "n2", "voted_for": None, "peers": ["a"]}
    store.save(state)
    assert MetaStore(tmp_path / "node").load() == state
    store.save({"epoch": 8})
    assert store.load() == {"epoch": 8}
    assert sorted(os.listdir(tmp_path / "node")) == [META_FILE]  # no tmp left behind


def test_unencodable_state_leaves_the_file_alone(tmp_path: Path) -> None:
    store = MetaStore(tmp_path)
    store.save({"epoch": 1})
    with pytest.raises(TypeError):
        store.save({"epoch": object()})
    with pytest.raises(TypeError):
        store.save({1: "x"})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        store.save({"epoch": float("nan")})
    assert store.load() == {"epoch": 1}


@pytest.mark.parametrize("pos", [0, 4, 8, 12, -1])
def test_corruption_is_detected(tmp_path: Path, pos: int) -> None:
    store = MetaStore(tmp_path)
    store.save({"epoch": 12, "voted_for": "n3"})
    raw = bytearray(store.path.read_bytes())
    raw[pos] ^= 0x02
    store.path.write_bytes(bytes(raw))
    with pytest.raises(CorruptMetaError):
        store.load()


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    store = MetaStore(tmp_path)
    store.save({"epoch": 12})
    raw = store.path.read_bytes()
    for cut in (0, 5, 12, len(raw) - 1):
        store.path.write_bytes(raw[:cut])
        with pytest.raises(CorruptMetaError):
            store.load()


def test_crash_before_rename_keeps_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MetaStore(tmp_path)
    store.save({"epoch": 1})

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save({"epoch": 2})
    monkeypatch.undo()
    assert MetaStore(tmp_path).load() == {"epoch": 1}
    store.save({"epoch": 3})  # the stale tmp file does not get in the way
    assert store.load() == {"epoch": 3}
