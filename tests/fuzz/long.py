"""``make fuzz``: every target for FUZZ_SECONDS (default 600) each, one after the
other, from the seed corpus and the regressions, in a scratch copy. Prints the
inputs each target executed and the total; a crash leaves its input in
``tests/fuzz/crashes/`` (turn it into a regression: fix, then move it to
``tests/fuzz/regressions/<target>/`` and add a unit test) and the exit code is 1.

    python tests/fuzz/long.py [seconds] [target ...]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harnesses import TARGETS  # noqa: E402


def main() -> int:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    targets = sys.argv[2:] or sorted(TARGETS)
    crashes = HERE / "crashes"
    total, failed = 0, []
    for target in targets:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "corpus"
            shutil.copytree(HERE / "corpus" / target, corpus)
            for crash in (HERE / "regressions" / target).glob("*") if (HERE / "regressions" / target).is_dir() else []:
                shutil.copy(crash, corpus / crash.name)
            crashes.mkdir(exist_ok=True)
            done = subprocess.run([sys.executable, str(HERE / "run.py"), target, f"-max_total_time={seconds}",
                                   f"-artifact_prefix={crashes}/{target}-", "-print_final_stats=1", str(corpus)],
                                  capture_output=True, text=True)
        runs = re.findall(r"stat::number_of_executed_units:\s+(\d+)", done.stderr)
        count = int(runs[-1]) if runs else 0
        total += count
        status = "ok" if done.returncode == 0 else "CRASH"
        if done.returncode != 0:
            failed.append(target)
        print(f"{target:10} {count:>12,} inputs in {seconds} s  {status}", flush=True)
    print(f"{'total':10} {total:>12,} inputs; crashes: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
