"""A short run of every fuzz target (atheris) in the suite: a few thousand
inputs each, from the committed seed corpus plus every input that ever
crashed a target (tests/fuzz/regressions/), in a scratch copy so the
committed corpus does not grow. Long runs: ``make fuzz``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
pytest.importorskip("atheris", reason="atheris (PyPI) is not installed: pip install -e '.[test]'")
sys.path.insert(0, str(HERE))
from harnesses import TARGETS  # noqa: E402


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_briefly(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(HERE / "corpus" / target, corpus)
    regressions = HERE / "regressions" / target
    if regressions.is_dir():
        for crash in regressions.iterdir():  # every input that once crashed must now pass
            shutil.copy(crash, corpus / crash.name)
    done = subprocess.run([sys.executable, str(HERE / "run.py"), target, "-atheris_runs=3000", "-seed=1",
                           f"-artifact_prefix={tmp_path}/", str(corpus)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 3000" in done.stderr
