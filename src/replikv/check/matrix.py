"""`replikv check --matrix`: every mode x setting x nemesis that exists, and docs/consistency.md.

Modes and their settings come from the mode registry (modes/); a mode this build does not implement
is listed as skipped with the reason, and joins the
matrix by itself once it lands. Each cell is one run (set workload for
loss, set-rm for removes by the observed-remove rule, register workload for
the read guarantees, list-append for MULTI/EXEC transactions) with one
nemesis; the
page records what each setting claims and what the checker saw. Exit code:
the worst of the runs (1 if any required claim was refuted, else 2 if any
was undecided, else 0).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from replikv.check.harness import mode_available
from replikv.check.nemesis import NEMESES, nemesis_available
from replikv import modes
from replikv.check.runner import RunResult, claims_for, run_check

MATRIX_WORKLOADS = ("set", "set-rm", "register", "list-append", "queue")


def _cell(r: RunResult) -> str:
    parts = []
    for res in r.results:
        if res.name == "convergence":
            continue
        parts.append(f"{res.name}: {res.summary}")
    return f"**{r.verdict}** — " + "; ".join(parts)


def kept_rows(docs: Path, only: str, workload: str | None = None) -> tuple[list[str], list[str]]:
    """The observation rows and skip notes of every mode but ``only`` in an existing document
    (with ``workload``: ``only``'s rows of the other workloads too)."""
    if not docs.exists():
        return [], []
    rows, skipped = [], []
    section = ""
    for line in docs.read_text().splitlines():
        if line.startswith("## "):
            section = line
        elif section == "## What the checker saw" and line.startswith("| ") and not line.startswith("| mode "):
            cells = [c.strip() for c in line.split("|")]
            if cells[1] != only or (workload is not None and len(cells) > 4 and cells[4] != workload):
                rows.append(line)
        elif section == "## Not run" and line.startswith("- `") and not line.startswith(f"- `{only}`"):
            skipped.append(line)
    return rows, skipped


def row_order(row: str) -> tuple[int, ...]:
    """Where an observation row goes: the order a full matrix runs in (mode, setting, nemesis,
    workload, as the registry lists them); a row naming something unknown goes last."""
    cells = [c.strip() for c in row.split("|")]
    if len(cells) < 5:
        return (1 << 30,)
    specs = modes.specs()
    names = [spec.name for spec in specs]
    if cells[1] not in names:
        return (len(names),)
    spec = specs[names.index(cells[1])]
    workloads = spec.workloads or MATRIX_WORKLOADS

    def at(seq: tuple[str, ...], item: str) -> int:
        return seq.index(item) if item in seq else len(seq)

    return (names.index(cells[1]), at(spec.settings, cells[2]), at(NEMESES, cells[3]), at(workloads, cells[4]))


def run_matrix(*, time_s: float, clients: int, seed: int | None, store: Path, docs: Path,
               console: Console, only: str | None = None, workload: str | None = None) -> int:
    """Every mode x setting x nemesis x workload (``only``: that mode's rows, the others' kept from
    ``docs`` as they were; with ``workload`` too, only that mode's rows of that workload), and the
    document, its rows in the order a full run makes them."""
    seed = 1 if seed is None else seed
    rows, skipped = kept_rows(docs, only, workload) if only else ([], [])
    worst = 0
    for spec in modes.specs():
        if only and spec.name != only:
            continue
        mode, settings = spec.name, spec.settings
        ok, why = mode_available(mode)
        if not ok:
            skipped.append(f"- `{mode}`: {why}")
            continue
        for setting in settings:
            for nemesis in NEMESES:
                ok, why = nemesis_available(nemesis, mode)
                if not ok:
                    skipped.append(f"- `{mode}` / `{nemesis}`: {why}")
                    continue
                for wl in spec.workloads or MATRIX_WORKLOADS:
                    if only and workload is not None and wl != workload:
                        continue
                    console.print(f"[bold]{mode} {setting} {nemesis} {wl}[/] ...")
                    r = run_check(mode=mode, workload=wl, nemeses=[nemesis], time_s=time_s,
                                  clients=clients, seed=seed, setting=setting, store=store)
                    worst = max(worst, {0: 0, 2: 1, 1: 2}[r.exit_code])
                    rows.append(f"| {mode} | {setting} | {nemesis} | {wl} | {_cell(r)} | "
                                f"`{r.directory.name}` |")
                    console.print(f"  {r.verdict}: {_cell(r)}")
    rows.sort(key=row_order)  # stable: rows of one cell keep their order
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(render_doc(rows, skipped, time_s, clients, seed))
    console.print(f"wrote {docs}")
    return {0: 0, 1: 2, 2: 1}[worst]


def claims_section() -> list[str]:
    out = ["| mode | setting | workload | checker | required | claim |", "|---|---|---|---|---|---|"]
    for spec in modes.specs():
        for setting in spec.settings:
            for workload in spec.workloads or MATRIX_WORKLOADS:
                for c in claims_for(spec.name, setting, workload):
                    out.append(f"| {spec.name} | {setting} | {workload} | {c.checker} | "
                               f"{'yes' if c.required else 'no (measured)'} | {c.text} |")
    return out


def render_doc(rows: list[str], skipped: list[str], time_s: float, clients: int, seed: int) -> str:
    lines = [
        "# The guarantee matrix",
        "",
        "Written by `replikv check --matrix` "
        f"({time.strftime('%Y-%m-%d')}, {time_s:g} s per run, {clients} clients, seed {seed}). "
        "Each run starts a fresh 3-node cluster of real processes, drives it under one nemesis, heals, "
        "waits for quiescence and checks the history (see `src/replikv/check/`). A *required* claim the "
        "checker refutes is a bug to fix, not a row to reword; a claim marked *measured* is an "
        "allowed anomaly the setting does not exclude, and the count shows what it costs.",
        "",
        "## What each setting claims",
        "",
        *claims_section(),
        "",
        "Read levels used by the clients: leader-follower `session` (a client sees its own writes on any "
        "node); raft `linearizable`; multi-leader `session` (worker w talks to node w mod n, so clients "
        "write on every node, and its session claims are judged on each client's own node); leaderless: the "
        "setting is the level of every read and write (`serial`: every register operation, CAS included, "
        "is a Paxos round). Register `cas` "
        "is issued only where the cluster has a `CAS` command (multi-leader refuses it). "
        "Set-rm adds unique elements, removes some of a client's own after their add was acknowledged on "
        "the same connection (a remove that observed the add) and others' concurrently, and re-adds a few: "
        "an acknowledged add no remove could have followed must be in the final set, an element whose every "
        "add such an observing remove followed must not, and nothing nobody added may be "
        "(`src/replikv/check/setrm.py`). "
        "List-append runs MULTI/EXEC transactions of appends and reads over a few keys and looks for "
        "the dependency cycles serializability forbids (G0, G1, G2: `src/replikv/check/elle.py`).",
        "",
        "## What the checker saw",
        "",
        "| mode | setting | nemesis | workload | verdict and observations | run |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "## Not run",
        "",
        *(skipped or ["- nothing"]),
        "",
    ]
    return "\n".join(lines)
