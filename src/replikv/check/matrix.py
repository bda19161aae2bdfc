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
from replikv.check.runner import RunResult, claims_for, default_setting, run_check
from replikv.config import TXN_MODES

MATRIX_WORKLOADS = ("set", "set-rm", "register", "list-append", "queue")
# The transactions table (`replikv check --txn-matrix`): sharded clusters only, every transaction
# setting, these nemeses ("none": no fault) and workloads.
TXN_NEMESES = ("none", "kill", "partition", "pause", "reshard", "coordinator-kill")
TXN_MATRIX_WORKLOADS = ("bank", "list-append")
TXN_BEGIN, TXN_END = "<!-- transactions table: replikv check --txn-matrix -->", "<!-- end of the transactions table -->"
MAIN_ONLY = ("reshard", "coordinator-kill")  # in the transactions table only
# The locks table (`replikv check --lock-matrix`): every setting of a mode whose claims cover the lock
# workloads, fenced and unfenced, a client paused past its lease under each node fault.
LOCK_NEMESES = (("client-pause",), ("kill", "client-pause"), ("partition", "client-pause"),
                ("pause", "client-pause"))
LOCK_BEGIN, LOCK_END = "<!-- locks table: replikv check --lock-matrix -->", "<!-- end of the locks table -->"
SECTIONS = ((TXN_BEGIN, TXN_END), (LOCK_BEGIN, LOCK_END))  # kept by --matrix, in this order


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
                if nemesis in MAIN_ONLY or nemesis == "client-pause":  # lock workloads only
                    continue
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
    docs.write_text(render_doc(rows, skipped, time_s, clients, seed,
                           [kept_section(docs, m) for m in SECTIONS]))
    console.print(f"wrote {docs}")
    return {0: 0, 1: 2, 2: 1}[worst]


def kept_section(docs: Path, markers: tuple[str, str]) -> str:
    """The section of an existing document between ``markers`` (begin, end), or ""."""
    if not docs.exists():
        return ""
    text = docs.read_text()
    begin, end = markers
    start, stop = text.find(begin), text.find(end)
    return text[start:stop + len(end)] if 0 <= start < stop else ""


def with_section(text: str, markers: tuple[str, str], section: str) -> str:
    """``text`` with its section between ``markers`` replaced by ``section`` (added before
    "## Not run", or at the end, when it has none)."""
    begin, end = markers
    start, stop = text.find(begin), text.find(end)
    if 0 <= start < stop:
        return text[:start] + section + text[stop + len(end):]
    at = text.find("\n## Not run")
    if at < 0:
        return text.rstrip("\n") + "\n\n" + section + "\n"
    return text[:at + 1] + section + "\n\n" + text[at + 1:]


def write_section(docs: Path, markers: tuple[str, str], section: str) -> None:
    text = docs.read_text() if docs.exists() else "# The guarantee matrix\n"
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(with_section(text, markers, section))


def run_txn_matrix(*, time_s: float, clients: int, seed: int | None, store: Path, docs: Path,
                   console: Console) -> int:
    """The transactions table: for every mode with cross-group transactions (a sharded setting and
    REPLIKV FAILPOINT), each ``--txn`` setting x `TXN_NEMESES` x `TXN_MATRIX_WORKLOADS`, one run
    each; writes its section of ``docs`` (the rest of the document is kept). Exit code as
    `run_matrix`."""
    seed = 1 if seed is None else seed
    rows: list[str] = []
    notes: list[str] = []
    worst = 0
    for spec in modes.specs():
        ok, _ = mode_available(spec.name)
        setting = default_setting(spec.name, "bank", (), None)
        if not ok or "FAILPOINT" not in spec.admin or not spec.check_options(setting, set()).get("shards"):
            continue
        for txn in TXN_MODES:
            for nemesis in TXN_NEMESES:
                faults = [] if nemesis == "none" else [nemesis]
                if faults:
                    ok, why = nemesis_available(nemesis, spec.name, setting)
                    if not ok:
                        notes.append(f"- `{spec.name}` / `{nemesis}`: {why}")
                        continue
                for wl in TXN_MATRIX_WORKLOADS:
                    console.print(f"[bold]{spec.name} {setting} txn {txn} {nemesis} {wl}[/] ...")
                    r = run_check(mode=spec.name, workload=wl, nemeses=faults, time_s=time_s, clients=clients,
                                  seed=seed, setting=setting, store=store, txn=txn)
                    worst = max(worst, {0: 0, 2: 1, 1: 2}[r.exit_code])
                    rows.append(f"| {spec.name} | {setting} | {txn} | {nemesis} | {wl} | {_cell(r)} | "
                                f"`{r.directory.name}` |")
                    console.print(f"  {r.verdict}: {_cell(r)}")
    write_section(docs, (TXN_BEGIN, TXN_END), render_txn_section(rows, sorted(set(notes)), time_s, clients, seed))
    console.print(f"wrote the transactions table in {docs}")
    return {0: 0, 1: 2, 2: 1}[worst]


def run_lock_matrix(*, time_s: float, clients: int, seed: int | None, store: Path, docs: Path,
                    console: Console) -> int:
    """The locks table: for every mode and setting whose claims cover the lock workloads, ``lock``
    (fenced) and ``lock-unfenced`` under each of `LOCK_NEMESES`, one run each; writes its section
    of ``docs`` (the rest of the document is kept). Exit code as `run_matrix`."""
    seed = 1 if seed is None else seed
    rows: list[str] = []
    notes: list[str] = []
    worst = 0
    for spec in modes.specs():
        ok, _ = mode_available(spec.name)
        if not ok:
            continue
        for setting in spec.settings:
            if not any(c.checker == "lock exclusion" for c in claims_for(spec.name, setting, "lock")):
                continue
            for faults in LOCK_NEMESES:
                absent = [(n, why) for n in faults for ok, why in [nemesis_available(n, spec.name, setting, "lock")]
                          if not ok]
                if absent:
                    notes.extend(f"- `{spec.name}` / `{n}`: {why}" for n, why in absent)
                    continue
                for wl in ("lock", "lock-unfenced"):
                    label = ",".join(faults)
                    console.print(f"[bold]{spec.name} {setting} {label} {wl}[/] ...")
                    r = run_check(mode=spec.name, workload=wl, nemeses=list(faults), time_s=time_s,
                                  clients=clients, seed=seed, setting=setting, store=store)
                    worst = max(worst, {0: 0, 2: 1, 1: 2}[r.exit_code])
                    rows.append(f"| {spec.name} | {setting} | {label} | {wl} | {_cell(r)} | `{r.directory.name}` |")
                    console.print(f"  {r.verdict}: {_cell(r)}")
    write_section(docs, (LOCK_BEGIN, LOCK_END),
                  render_lock_section(rows, sorted(set(notes)), time_s, clients, seed))
    console.print(f"wrote the locks table in {docs}")
    return {0: 0, 1: 2, 2: 1}[worst]


def render_lock_section(rows: list[str], skipped: list[str], time_s: float, clients: int, seed: int) -> str:
    lines = [
        LOCK_BEGIN,
        "## Locks: leases and fencing tokens",
        "",
        "Written by `replikv check --lock-matrix` "
        f"({time.strftime('%Y-%m-%d')}, {time_s:g} s per run, {clients} clients, seed {seed}). Each client is "
        "an OS process (`src/replikv/check/lock_client.py`) that takes a lock with `LOCK name 600 WAIT ...`, "
        "works 50-250 ms holding it, appends `token:id` to the lock's log list and releases it: with "
        "`FENCED name token RPUSH ...` in `lock`, with a plain `RPUSH` in `lock-unfenced`. The "
        "`client-pause` nemesis SIGSTOPs a client that holds a lock and has not yet written, for 1.5 s "
        "(past its 600 ms lease), then SIGCONTs it: Kleppmann's paused client. Node faults run "
        "alongside. Checkers (`src/replikv/check/locks.py`): `lock exclusion` (every grant was "
        "acknowledged no earlier than the previous holder's UNLOCK was sent or a full ttl after its "
        "LOCK was sent: at most one holder at a time by the service's view) and `stale writes` (a log "
        "entry after a higher token's, or sent after a higher token was granted): required with "
        "fencing, measured without it (the overlap a lease alone allows).",
        "",
        "| mode | setting | nemesis | workload | verdict and observations | run |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    if skipped:
        lines += ["", "Not run:", "", *skipped]
    lines.append(LOCK_END)
    return "\n".join(lines)


def render_txn_section(rows: list[str], skipped: list[str], time_s: float, clients: int, seed: int) -> str:
    lines = [
        TXN_BEGIN,
        "## Transactions across groups",
        "",
        "Written by `replikv check --txn-matrix` "
        f"({time.strftime('%Y-%m-%d')}, {time_s:g} s per run, {clients} clients, seed {seed}). Sharded raft "
        "(3 Raft groups on 3 nodes): MULTI/EXEC over keys of several groups is one two-phase-commit "
        "transaction. `--txn record` (the default) keeps the decision in a transaction record in one "
        "group's Raft log, so any participant finishes a transaction whose coordinator died; `--txn "
        "classic` is textbook 2PC, the coordinator's state in its memory only.",
        "",
        "Workloads: `bank` (8 accounts spread over every group; transfers `WATCH src; GET src; MULTI; "
        "DECRBY src; INCRBY dst; EXEC` and reads of every balance in one MULTI; `src/replikv/check/bank.py`: "
        "every read keeps the initial total with no negative balance, and the final balances are the "
        "initial ones plus every acknowledged transfer and a subset of the unknown ones) and `list-append` "
        "with each window's keys in every group (Elle's G0/G1/G2 cycles, `src/replikv/check/elle.py`). "
        "Nemeses: `kill`, `partition`, `pause` as in the table above; `reshard` moves the slots of keys "
        "in use to another group (`REPLIKV RESHARD`) during the run; `coordinator-kill` arms `REPLIKV "
        "FAILPOINT txn-exit-after-prepare` on a node, which exits after every participant of its next "
        "cross-group transaction voted yes, watches `REPLIKV TXN INTENTS` on every node, then restarts it "
        "(`blocked locks`, `src/replikv/check/txnblock.py`: required under `record`, measured under "
        "`classic`). Under `classic` the locked accounts cannot be read after the run, so `bank final` "
        "is undecided there: that is the blocking, not a lost transfer.",
        "",
        "| mode | setting | txn | nemesis | workload | verdict and observations | run |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    if skipped:
        lines += ["", "Not run:", "", *skipped]
    lines.append(TXN_END)
    return "\n".join(lines)


def claims_section() -> list[str]:
    out = ["| mode | setting | workload | checker | required | claim |", "|---|---|---|---|---|---|"]
    for spec in modes.specs():
        for setting in spec.settings:
            for workload in spec.workloads or MATRIX_WORKLOADS:
                for c in claims_for(spec.name, setting, workload):
                    out.append(f"| {spec.name} | {setting} | {workload} | {c.checker} | "
                               f"{'yes' if c.required else 'no (measured)'} | {c.text} |")
    return out


def render_doc(rows: list[str], skipped: list[str], time_s: float, clients: int, seed: int,
               kept: list[str] | None = None) -> str:
    """The document; ``kept``: the sections of the other tables to keep (`kept_section`), before
    "Not run"."""
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
        *[line for section in kept or [] if section for line in (section, "")],
        "## Not run",
        "",
        *(skipped or ["- nothing"]),
        "",
    ]
    return "\n".join(lines)
