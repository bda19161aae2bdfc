"""Register linearizability checker: hand-made histories, the shared histories
with known verdicts, and agreement with a brute-force checker on random ones."""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

import pytest

from replikv.check.history import Op, load_history
from replikv.check.linearizability import check_register_history

HISTORIES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "histories"


def w(p: int, value: str, call: int, ret: int | None, ok: bool | None = True, key: str = "k") -> Op:
    return Op(p, "write", key, value, None, ok, call, ret)


def r(
    p: int, value: str | None, call: int, ret: int | None, ok: bool | None = True, key: str = "k"
) -> Op:
    return Op(p, "read", key, value, None, ok, call, ret)


def cas(
    p: int,
    expected: str | None,
    value: str,
    call: int,
    ret: int | None,
    ok: bool | None = True,
    key: str = "k",
) -> Op:
    return Op(p, "cas", key, value, expected, ok, call, ret)


def verdict(ops: list[Op]) -> bool | None:
    return check_register_history(ops).linearizable


# --- hand-made histories ---


def test_empty_history_is_linearizable() -> None:
    v = check_register_history([])
    assert v.linearizable is True and v.per_key == {}


def test_sequential_history() -> None:
    ops = [
        r(0, None, 0, 1),
        w(0, "a", 2, 3),
        r(1, "a", 4, 5),
        cas(1, "a", "b", 6, 7),
        r(0, "b", 8, 9),
    ]
    assert verdict(ops) is True


@pytest.mark.parametrize("seen", ["a", "b"])
def test_concurrent_writes_with_read_after_either_order(seen: str) -> None:
    ops = [w(0, "a", 0, 10), w(1, "b", 2, 12), r(2, seen, 20, 21)]
    assert verdict(ops) is True


@pytest.mark.parametrize("seen", [None, "a"])
def test_read_overlapping_a_write_sees_before_or_after(seen: str | None) -> None:
    ops = [w(0, "a", 5, 10), r(1, seen, 0, 15)]
    assert verdict(ops) is True


def test_touching_intervals_count_as_concurrent() -> None:
    # the write returns at the instant the read is called: they may be ordered either way
    assert verdict([w(0, "a", 0, 10), r(1, None, 10, 12)]) is True


def test_stale_read_is_not_linearizable() -> None:
    ops = [w(0, "a", 0, 1), w(0, "b", 2, 3), r(1, "a", 4, 5)]
    v = check_register_history(ops)
    assert v.linearizable is False
    assert v.bad_key == "k"
    assert "read of 'k' returned 'a'" in v.explanation
    assert "'b'" in v.explanation  # what the register held instead
    assert 2 in v.ops_involved


def test_lost_write_is_not_linearizable() -> None:
    # an acknowledged write is never seen: a later read returns the older value
    ops = [w(0, "a", 0, 1), r(1, "a", 2, 3), w(2, "b", 4, 5), r(1, "a", 6, 7), r(0, "a", 8, 9)]
    v = check_register_history(ops)
    assert v.linearizable is False
    assert "op #3" in v.explanation


def test_read_of_never_written_value_is_not_linearizable() -> None:
    assert verdict([w(0, "a", 0, 1), r(1, "zzz", 0, 5)]) is False


def test_non_linearizable_cas() -> None:
    # the register holds "b", yet a cas expecting "a" claims success
    ops = [w(0, "a", 0, 1), w(0, "b", 2, 3), cas(1, "a", "c", 4, 5)]
    assert verdict(ops) is False
    # and a cas that succeeded must be visible
    ops = [w(0, "a", 0, 1), cas(1, "a", "c", 2, 3), r(2, "a", 4, 5)]
    assert verdict(ops) is False


def test_failed_cas_is_ignored() -> None:
    # ok=false: the cas did not apply even though its precondition held
    ops = [w(0, "a", 0, 1), cas(1, "a", "c", 2, 3, ok=False), r(2, "a", 4, 5)]
    assert verdict(ops) is True
    # ...so its value cannot explain a read
    ops = [w(0, "a", 0, 1), cas(1, "a", "c", 2, 3, ok=False), r(2, "c", 4, 5)]
    assert verdict(ops) is False


def test_failed_read_and_write_are_ignored() -> None:
    ops = [w(0, "a", 0, 1), w(1, "b", 2, 3, ok=False), r(2, "zzz", 4, 5, ok=False), r(2, "a", 6, 7)]
    assert verdict(ops) is True


def test_unknown_write_assumed_applied_to_explain_later_read() -> None:
    ops = [w(0, "a", 0, None, ok=None), r(1, None, 5, 6), r(1, "a", 100, 101)]
    assert verdict(ops) is True


def test_unknown_write_may_take_effect_long_after_its_call() -> None:
    ops = [w(0, "a", 0, None, ok=None), w(1, "b", 10, 11), r(2, "b", 12, 13), r(2, "a", 20, 21)]
    assert verdict(ops) is True


def test_unknown_write_with_a_return_time_may_still_land_later() -> None:
    ops = [w(0, "a", 0, 3, ok=None), r(1, None, 5, 6), r(1, "a", 100, 101)]
    assert verdict(ops) is True


def test_unknown_write_assumed_not_applied() -> None:
    ops = [w(0, "a", 0, 1), w(1, "b", 2, None, ok=None), r(2, "a", 10, 11), r(2, "a", 20, 21)]
    assert verdict(ops) is True


def test_unknown_write_cannot_take_effect_before_its_call() -> None:
    ops = [r(1, "a", 0, 1), w(0, "a", 5, None, ok=None)]
    assert verdict(ops) is False


def test_unknown_cas_may_apply_or_not() -> None:
    base = [w(0, "a", 0, 1), cas(1, "a", "b", 2, None, ok=None)]
    assert verdict(base + [r(2, "b", 10, 11)]) is True
    assert verdict(base + [r(2, "a", 10, 11)]) is True
    assert verdict(base + [r(2, "b", 10, 11), r(2, "a", 12, 13)]) is False


def test_unknown_write_of_a_value_also_written_elsewhere_stays_optional() -> None:
    # 'a' is observed, but the completed write explains it: the unknown one may never land
    ops = [
        w(0, "a", 0, 1),
        r(1, "a", 2, 3),
        w(0, "b", 4, 5),
        w(2, "a", 6, None, ok=None),
        r(1, "b", 10, 11),
    ]
    assert verdict(ops) is True
    assert brute_force(ops) is True


def test_completed_op_without_return_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="no return time"):
        check_register_history([w(0, "a", 0, None, ok=True)])


def test_unknown_read_is_dropped() -> None:
    assert verdict([w(0, "a", 0, 1), r(1, "zzz", 2, None, ok=None)]) is True


def test_keys_are_independent_and_bad_key_is_reported() -> None:
    ops = [
        w(0, "a", 0, 1, key="x"),
        w(0, "b", 0, 1, key="y"),
        r(1, "a", 2, 3, key="x"),
        r(1, "a", 2, 3, key="y"),
    ]
    v = check_register_history(ops)
    assert v.linearizable is False
    assert v.bad_key == "y"
    assert v.per_key == {"x": True, "y": False}
    assert "'y'" in v.explanation


def test_unknown_op_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="incr"):
        check_register_history([Op(0, "incr", "k", None, None, True, 0, 1)])


def test_timeout_returns_undecided() -> None:
    # 20 concurrent writes and a read of a value nobody wrote: the search has to
    # try every subset of the writes before it can say no.
    ops = [w(i, f"v{i}", 0, 100) for i in range(20)] + [r(99, "nope", 0, 100)]
    start = time.monotonic()
    v = check_register_history(ops, timeout_s=0.1)
    assert v.linearizable is None
    assert v.per_key == {"k": None}
    assert time.monotonic() - start < 10


# --- the shared histories with known verdicts (tests/../../shared/testdata) ---

KNOWN = {
    "small.ok.jsonl": True,
    "small.stale.jsonl": False,
    "small.lost.jsonl": False,
    "small.bad.jsonl": False,
    "medium.ok.jsonl": True,
    "medium.stale.jsonl": False,
    "medium.lost.jsonl": False,
    "medium.bad.jsonl": False,
    "large.ok.jsonl.gz": True,
    "large.bad.jsonl.gz": False,
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_shared_history_verdicts(name: str) -> None:
    path = HISTORIES / name
    if not path.exists():
        pytest.skip(f"shared test data not found: {path} (expected beside the repo)")
    v = check_register_history(load_history(path), timeout_s=60)
    assert v.linearizable is KNOWN[name], v.explanation
    if not KNOWN[name]:
        assert v.bad_key is not None and v.per_key[v.bad_key] is False
        assert v.ops_involved


# --- agreement with a brute-force checker on random small histories ---


def brute_force(ops: list[Op]) -> bool:
    """Try every subset of the unknown-outcome writes/cas and every order."""
    known = [op for op in ops if op.ok is True]
    maybe = [op for op in ops if op.ok is None and op.op != "read"]
    inf = float("inf")

    def ret(op: Op) -> float:
        return op.ret if op.ok is True and op.ret is not None else inf

    for n_maybe in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, n_maybe):
            for order in itertools.permutations(known + list(chosen)):
                # real time: nothing may come after an op that returned before it was called
                if any(ret(b) < a.call for i, a in enumerate(order) for b in order[i + 1 :]):
                    continue
                state: str | None = None
                for op in order:
                    if op.op == "write":
                        state = op.value
                    elif op.op == "read":
                        if op.value != state:
                            break
                    elif op.expected != state:
                        break
                    else:
                        state = op.value
                else:
                    return True
    return False


def random_history(rng: random.Random, n_ops: int) -> list[Op]:
    values: list[str | None] = [None]
    ops: list[Op] = []
    clock = {p: 0 for p in range(3)}
    for i in range(n_ops):
        p = rng.randrange(3)
        call = clock[p] + rng.randrange(4)
        ret = call + rng.randrange(1, 6)
        clock[p] = ret + 1
        ok = rng.choices([True, False, None], weights=[6, 1, 1])[0]
        kind = rng.choice(["read", "read", "write", "cas"])
        if kind == "read":
            ops.append(r(p, rng.choice(values), call, ret, ok=ok))
        elif kind == "write":
            values.append(f"v{i}")
            ops.append(w(p, f"v{i}", call, None if ok is None else ret, ok=ok))
        else:
            values.append(f"v{i}")
            ops.append(
                cas(p, rng.choice(values[:-1]), f"v{i}", call, None if ok is None else ret, ok=ok)
            )
    return ops


def test_agrees_with_brute_force_on_random_histories() -> None:
    rng = random.Random(20240501)
    outcomes = {True: 0, False: 0}
    for _ in range(1500):
        ops = random_history(rng, rng.randrange(1, 7))
        expected = brute_force(ops)
        assert verdict(ops) is expected, ops
        outcomes[expected] += 1
    # the generator must exercise both verdicts to mean anything
    assert outcomes[True] > 40 and outcomes[False] > 40, outcomes


def linearizable_history(rng: random.Random, n_ops: int, n_procs: int = 4) -> list[Op]:
    """Simulate an atomic register: each op takes effect at a random instant
    inside its interval (unknown-outcome ones maybe never), so the result is
    linearizable by construction."""
    ops_spec = []
    clock = [0] * n_procs
    for i in range(n_ops):
        p = rng.randrange(n_procs)
        call = clock[p] + rng.randrange(5)
        ret = call + rng.randrange(1, 20)
        clock[p] = ret + 1
        point = rng.uniform(call, ret)
        ok = rng.choices([True, False, None], weights=[10, 1, 1])[0]
        if ok is None and rng.random() < 0.5:
            point = float("inf")  # never took effect
        ops_spec.append((point, i, p, rng.choice(["read", "write", "cas"]), call, ret, ok))
    state: str | None = None
    ops = []
    for point, i, p, kind, call, ret, ok in sorted(ops_spec):
        applies = ok is not False and point != float("inf")
        if kind == "read":
            ops.append(r(p, state if ok is True else "junk", call, ret, ok=ok))
        elif kind == "write":
            if applies:
                state = f"v{i}"
            ops.append(w(p, f"v{i}", call, None if ok is None else ret, ok=ok))
        else:
            expected = state if rng.random() < 0.8 else "other"
            if expected != state and ok is True:
                ok = False  # the store answered "precondition failed"
            elif applies and expected == state:
                state = f"v{i}"
            ops.append(cas(p, expected, f"v{i}", call, None if ok is None else ret, ok=ok))
    ops.sort(key=lambda op: op.call)
    return ops


def test_simulated_atomic_register_histories_are_linearizable() -> None:
    rng = random.Random(7)
    for _ in range(50):
        ops = linearizable_history(rng, 300)
        assert verdict(ops) is True
