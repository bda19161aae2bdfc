"""Run one fuzz target under atheris: ``python tests/fuzz/run.py TARGET [libFuzzer flags] [corpus dir]``.

An exception the target may raise (``harnesses.TARGETS``) is an expected
refusal; any other exception is a crash (libFuzzer writes the input to
``crash-*`` and exits non-zero).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports():
    import harnesses  # noqa: E402  (instrumented: the replikv modules it imports are covered)


def main() -> None:
    name = sys.argv.pop(1)
    target, allowed = harnesses.TARGETS[name]

    def one(data: bytes) -> None:
        try:
            target(data)
        except allowed:
            pass

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
