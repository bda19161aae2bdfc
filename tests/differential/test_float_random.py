"""INCRBYFLOAT on random decimal and hexadecimal numbers against redis-server 7.0:
parsing (strtold), long double rounding and printing (%.17Lf) agree digit for digit."""

from __future__ import annotations

import random

import pytest

from tests.differential.oracle import Differential

ROUNDS = 150


def _number(rng: random.Random) -> str:
    sign = rng.choice(["", "-", "+"])
    kind = rng.randrange(5)
    if kind == 0:
        return sign + str(rng.randrange(10 ** rng.randrange(1, 25)))
    if kind == 1:
        whole = str(rng.randrange(10 ** rng.randrange(0, 6))) if rng.random() < 0.8 else ""
        frac = str(rng.randrange(10 ** rng.randrange(1, 22))).zfill(rng.randrange(1, 22))
        return f"{sign}{whole}.{frac}"
    if kind == 2:
        mant = f"{rng.randrange(1, 10)}.{rng.randrange(10**6)}"
        return f"{sign}{mant}e{rng.randrange(-30, 30)}"
    if kind == 3:
        return f"{sign}0x{rng.randrange(1, 1 << 70):x}p{rng.randrange(-80, 10)}"
    return sign + rng.choice(["0.1", "0.2", "0.3", "1.1", "2.675", "1e-17", "5e-18", "0.5e-17"])


@pytest.mark.parametrize("seed", range(4))
def test_random_increments(diff: Differential, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(ROUNDS):
        if rng.random() < 0.3:
            diff.run("SET", "f", _number(rng))
        diff.run("INCRBYFLOAT", "f", _number(rng))
