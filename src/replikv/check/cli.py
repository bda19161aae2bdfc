"""`replikv check`: the command, as a function the main CLI registers.

In ``replikv/cli.py``: ``app.command(name="check")(check_main)`` after
``from replikv.check.cli import check_main``. Also runnable alone:
``python -m replikv.check.cli --help``.

Exit codes: 0 every required claim held; 1 a claim was refuted; 2 the check
could not decide (or bad usage).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from replikv import modes
from replikv.config import TXN_MODES
from replikv.check.nemesis import LOCK_WORKLOADS, NEMESES
from replikv.check.runner import RunResult, run_check
from replikv.check.workloads import PIPELINED_WORKLOADS, WORKLOADS, pipeline_refusal

console = Console(highlight=False)


def verdict_table(result: RunResult) -> Table:
    p = result.params
    txn = f", txn {p['txn']}" if p.get("txn") else ""
    table = Table(title=f"{p.get('mode')} ({p.get('setting')}{txn}) / {p.get('workload')}: "
                        f"{result.verdict.upper()}")
    for col in ("checker", "claim", "outcome", "what the checker saw"):
        table.add_column(col)
    by_name = {r.name: r for r in result.results}
    for c in result.claims:
        r = by_name.get(c.checker)
        status = r.status if r else "unknown"
        if c.required:
            outcome = {"pass": "[green]held[/]", "fail": "[bold red]REFUTED[/]",
                       "unknown": "[yellow]undecided[/]"}[status]
        else:
            outcome = "[yellow]seen[/] (not claimed)" if status == "fail" else "not seen (not claimed)"
        table.add_row(escape(c.checker), escape(c.text), outcome, escape(r.summary if r else "not run"))
    return table


class _Countdown:
    """The phase a run is in and the time it should still take, refreshed once a
    second on the console's status line (runs last minutes)."""

    def __init__(self, status: Status) -> None:
        self.status, self.phase, self.end = status, "starting", None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="check-progress", daemon=True)
        self._thread.start()

    def __call__(self, phase: str, end: float | None) -> None:
        self.phase, self.end = phase, end
        self._show()

    def _show(self) -> None:
        left = f" (about {max(0.0, self.end - time.monotonic()):.0f} s left)" if self.end is not None else ""
        self.status.update(f"[bold]{escape(self.phase)}[/]{left}")

    def _refresh(self) -> None:
        while not self._stop.wait(1.0):
            self._show()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def check_main(
    mode_opt: Optional[str] = typer.Option(None, "--mode", help=f"Replication mode to test: "
                                           f"{', '.join(modes.names())} (default: {modes.names()[0]}); with "
                                           "--matrix, only that mode's rows are run again."),
    workload_opt: Optional[str] = typer.Option(None, "--workload", help=f"One of {', '.join(WORKLOADS)} "
                                               "(default: register); with --matrix --mode, only that mode's "
                                               "rows of that workload are run again."),
    nemesis_opt: Optional[str] = typer.Option(None, "--nemesis",
                                              help=f"Comma-separated faults: {', '.join(NEMESES)} (or 'none'); "
                                              "default partition,kill, and client-pause too for the lock "
                                              "workloads."),
    time_s: float = typer.Option(60.0, "--time", min=1.0, help="Seconds of workload under faults."),
    clients: int = typer.Option(10, "--clients", min=1, help="Concurrent clients."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the fault schedule and op mix."),
    setting: Optional[str] = typer.Option(None, "--setting",
                                          help="Mode setting, e.g. ack level 'async', 'semi-sync 1', 'sync'."),
    nodes: int = typer.Option(3, "--nodes", min=1, help="Cluster size."),
    pipeline: int = typer.Option(1, "--pipeline", min=1, max=1000,
                                 help=f"Ops each client sends at a time, in one pipeline (workloads "
                                 f"{', '.join(PIPELINED_WORKLOADS)})."),
    txn: Optional[str] = typer.Option(None, "--txn", help="Sharded raft: how MULTI/EXEC across groups commits: "
                                      "record (default: a transaction record, a dead coordinator blocks "
                                      "nothing) or classic (textbook 2PC)."),
    store: Path = typer.Option(Path("store"), "--store", help="Where run directories go."),
    matrix: bool = typer.Option(False, "--matrix", help="Run every mode x setting x nemesis that exists "
                                "and write docs/consistency.md."),
    docs: Path = typer.Option(Path("docs/consistency.md"), "--docs", help="Where --matrix writes its table."),
    txn_matrix: bool = typer.Option(False, "--txn-matrix", help="Run the transactions table (bank and "
                                    "list-append across groups, per nemesis, --txn record and classic) and "
                                    "write its section of docs/consistency.md."),
    lock_matrix: bool = typer.Option(False, "--lock-matrix", help="Run the locks table (lock and "
                                     "lock-unfenced, a client paused past its lease under each node fault) and "
                                     "write its section of docs/consistency.md."),
) -> None:
    """Jepsen-style check of a real cluster: drive it, inject faults, heal, check, report."""
    mode_given = mode_opt is not None
    mode = mode_opt or modes.names()[0]
    workload = workload_opt or "register"
    if workload not in WORKLOADS:
        console.print(f"[red]unknown workload {escape(workload)}[/]; choose {', '.join(WORKLOADS)}")
        raise typer.Exit(2)
    nemesis = nemesis_opt if nemesis_opt is not None else \
        "partition,kill,client-pause" if workload in LOCK_WORKLOADS else "partition,kill"
    faults = [n.strip() for n in nemesis.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in faults if n not in NEMESES]
    if unknown:
        console.print(f"[red]unknown nemesis {escape(', '.join(unknown))}[/]; choose {', '.join(NEMESES)}")
        raise typer.Exit(2)
    if refusal := pipeline_refusal(workload, pipeline):
        console.print(f"[red]{escape(refusal)}[/]")
        raise typer.Exit(2)
    if txn is not None and txn not in TXN_MODES:
        console.print(f"[red]unknown --txn {escape(txn)}[/]; choose {', '.join(TXN_MODES)}")
        raise typer.Exit(2)
    if txn_matrix:
        from replikv.check.matrix import run_txn_matrix

        raise typer.Exit(run_txn_matrix(time_s=time_s, clients=clients, seed=seed, store=store, docs=docs,
                                        console=console))
    if lock_matrix:
        from replikv.check.matrix import run_lock_matrix

        raise typer.Exit(run_lock_matrix(time_s=time_s, clients=clients, seed=seed, store=store, docs=docs,
                                         console=console))
    if matrix:
        from replikv.check.matrix import run_matrix

        only = mode if mode_given else None
        code = run_matrix(time_s=time_s, clients=clients, seed=seed, store=store, docs=docs, console=console,
                          only=only, workload=workload_opt if only else None)
        raise typer.Exit(code)
    with console.status("starting") as status:
        countdown = _Countdown(status)
        try:
            result = run_check(mode=mode, workload=workload, nemeses=faults, time_s=time_s, clients=clients,
                               seed=seed, setting=setting, store=store, nodes=nodes, progress=countdown,
                               txn=txn, pipeline=pipeline)
        finally:
            countdown.stop()
    console.print(verdict_table(result))
    for note in result.notes:
        console.print(f"  [dim]{escape(note)}[/]")
    console.print(f"history, node logs and report: {escape(str(result.directory))}/report.html")
    raise typer.Exit(result.exit_code)


def main() -> None:
    app = typer.Typer(add_completion=False)
    app.command()(check_main)
    app()


if __name__ == "__main__":
    main()
