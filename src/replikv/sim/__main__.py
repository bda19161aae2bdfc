"""Replay or explore simulator seeds.

`python -m replikv.sim --mode raft --seed N [--nodes 5] [--long]` replays one
seed (a failure prints exactly this command); `--seeds 100000` runs that many
consecutive seeds from --seed; `--fresh` draws the first seed at random (a
nightly run explores seeds no one ran before) and prints it.

`python -m replikv.sim --shards 3000 --nodes 30` runs the sharded raft
cluster (sim/multiraft_cluster.py) instead and prints its scale report:
frames and Raft messages per second per node with every group idle, and the
time to re-elect the groups of a failed node (`--no-quiesce` for comparison).

`python -m replikv.sim --moves --seed N [--seeds 1000] [--nodes 5 --shards 4]` runs the
sharded cluster with slot moves (sim/slot_moves.py): clients, a mover, crashes and
partitions, and its checks (no acknowledged write lost, no stale read, every move finished
after heal, one owner per slot); a failure prints exactly this command.

`python -m replikv.sim --rebalance --seed N [--seeds 1000] [--nodes 5 --shards 6]` runs the
sharded cluster rebalancing its groups after a node joins (even seeds) or before node 1
leaves (odd seeds), under writes, crashes and partitions (sim/rebalance_sim.py); a failure
prints exactly this command.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from replikv import modes
from replikv.sim.engine import SafetyViolation, run
from replikv.sim.multiraft_cluster import scale_report
from replikv.sim.rebalance_sim import run_rebalance
from replikv.sim.slot_moves import run_moves


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replikv.sim", description=__doc__)
    simulated = [spec.name for spec in modes.specs() if spec.sim is not None]
    ap.add_argument("--mode", choices=simulated, default=simulated[0],
                    help="a mode whose ModeSpec names a simulator driver")
    ap.add_argument("--seed", type=int, default=0, help="first seed to run")
    ap.add_argument("--count", "--seeds", dest="count", type=int, default=1,
                    help="number of consecutive seeds")
    ap.add_argument("--fresh", action="store_true", help="start at a random seed (printed)")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--long", action="store_true",
                    help="several fault and heal rounds over ~20 s of virtual time")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the nemesis log")
    ap.add_argument("--shards", type=int, default=0,
                    help="run a sharded raft cluster of this many groups and print its scale report")
    ap.add_argument("--moves", action="store_true",
                    help="sharded raft with slot moves under faults (--shards groups, default 4; --nodes)")
    ap.add_argument("--rebalance", action="store_true",
                    help="sharded raft rebalancing after a node joins or before one leaves, under faults "
                         "(--shards groups, default 6; --nodes, default 5)")
    ap.add_argument("--replicas", type=int, default=3, help="with --shards: replicas per group")
    ap.add_argument("--no-quiesce", action="store_true", help="with --shards: idle groups keep ticking")
    ap.add_argument("--paxos", action="store_true",
                    help="leaderless: every read, write and CAS a Paxos round (register clients)")
    ap.add_argument("--membership", action="store_true",
                    help="leaderless: the last node is a spare that joins mid-run, and a member may leave after")
    args = ap.parse_args(argv)
    if args.moves:
        return _moves(args)
    if args.rebalance:
        return _rebalance(args)
    if args.shards:
        report = scale_report(nodes=args.nodes, groups=args.shards, replicas=args.replicas, seed=args.seed,
                              quiesce=not args.no_quiesce)
        print("\n".join(report.lines()))
        return 0
    first = random.SystemRandom().randrange(10**6, 2**40) if args.fresh else args.seed
    if args.fresh:
        print(f"fresh seeds from {first}")
    failed = 0
    for seed in range(first, first + args.count):
        t0 = time.perf_counter()
        try:
            r = run(args.mode, seed, args.nodes, args.long, **({"paxos": True} if args.paxos else {}),
                    **({"membership": True} if args.membership else {}))
        except SafetyViolation as e:
            failed += 1
            print(f"FAIL {e}", file=sys.stderr)
            continue
        dt = time.perf_counter() - t0
        stats = " ".join(f"{k}={v}" for k, v in r.stats.items())
        print(f"{args.mode} seed {seed} nodes {args.nodes}: ok, {len(r.ops)} ops, {stats}, {r.messages} messages,"
              f" converged at {r.converged_at_us / 1e6:.2f}s virtual, {dt * 1000:.0f} ms")
        if args.verbose:
            for line in r.nemesis:
                print("  nemesis:", line)
    if args.count > 1:
        print(f"{args.count - failed}/{args.count} seeds passed")
    return 1 if failed else 0


def _moves(args: argparse.Namespace) -> int:
    nodes = args.nodes if args.nodes != 3 else 5  # --nodes defaults to 3 for the unsharded modes
    groups = args.shards or 4
    return _sharded_seeds(args, lambda seed: run_moves(seed, nodes, groups), lambda seed, r: (
        f"moves seed {seed} nodes {nodes} groups {groups}: ok, {r.acked} writes acknowledged, "
        f"{r.reads} reads, {r.failed} failed, {r.unknown} unknown, {r.moves_done}/{r.moves_started} "
        f"moves finished, settled {r.settle_ticks} ticks after heal"))


def _rebalance(args: argparse.Namespace) -> int:
    nodes = args.nodes if args.nodes != 3 else 5
    groups = args.shards or 6
    return _sharded_seeds(args, lambda seed: run_rebalance(seed, nodes, groups), lambda seed, r: (
        f"rebalance seed {seed} nodes {nodes} groups {groups}: ok, a node {'joined' if r.kind == 'join' else 'left'}, "
        f"{r.steps} membership steps, {r.acked} writes acknowledged, settled {r.settled_in} ticks after heal"))


def _sharded_seeds(args: argparse.Namespace, run_one: Callable[[int], Any], describe: Callable[[int, Any], str]) -> int:
    """Seeds of a sharded-cluster run (--moves, --rebalance): each failure printed (it names its
    replay command), one line per seed when replaying one or with --verbose."""
    first = random.SystemRandom().randrange(10**6, 2**40) if args.fresh else args.seed
    if args.fresh:
        print(f"fresh seeds from {first}")
    failed = 0
    for seed in range(first, first + args.count):
        try:
            r = run_one(seed)
        except SafetyViolation as e:
            failed += 1
            print(f"FAIL {e}", file=sys.stderr)
            continue
        if args.count == 1 or args.verbose:
            print(describe(seed, r))
            for line in r.nemesis if args.verbose else ():
                print("  nemesis:", line)
    if args.count > 1:
        print(f"{args.count - failed}/{args.count} seeds passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
