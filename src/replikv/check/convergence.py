"""Convergence: after heal and quiescence every replica holds the same state."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from replikv.check.result import Anomaly, CheckResult

__all__ = ["Parts", "check_convergence"]

# What a node answers to ``REPLIKV DIGESTS``: (label, the nodes that must hold the part (empty:
# every node), its digest in hex).
Parts = Sequence[tuple[str, tuple[str, ...], str]]


def check_convergence(digests: Mapping[str, Parts | str | None]) -> CheckResult:
    """Proves every replica holds the same state after heal and quiescence, or names what
    differs; a node that did not answer (None) makes the result ``unknown`` unless something
    already differs. A node's answer is its parts (``Parts``; a plain digest string is the one
    part every node holds): each part must be held by exactly the nodes it names, with one
    digest. In a mode where every node holds everything that is ``REPLIKV DIGEST`` equal on
    every node; where nodes hold different shares (leaderless with fewer replicas than nodes,
    sharded raft) it is each share equal on its own nodes, and nowhere else. O(parts x nodes)."""
    res = CheckResult("convergence", "pass", "")
    down = sorted(n for n, d in digests.items() if d is None)
    answered = sorted(n for n, d in digests.items() if d is not None)
    held: dict[str, dict[str, tuple[tuple[str, ...], str]]] = defaultdict(dict)  # label -> node -> part
    for n in answered:
        d = digests[n]
        for label, holders, hexd in ([("all", (), d)] if isinstance(d, str) else d or ()):
            held[label][n] = (tuple(holders), hexd)
    problems: list[str] = []
    unsure = False
    for label in sorted(held):
        by_node = held[label]
        named = {holders for holders, _ in by_node.values()}
        if len(named) > 1:
            problems.append(f"{label}: the nodes disagree on who holds it ({' / '.join(map(','.join, named))})")
            continue
        (holders,) = named
        expected = set(holders) if holders else set(digests)
        values: dict[str, list[str]] = defaultdict(list)
        for n, (_, hexd) in by_node.items():
            values[hexd].append(n)
        if len(values) > 1:
            problems.append(f"{label}: " + "; ".join(f"{', '.join(sorted(ns))}: {d[:12]}" for d, ns in values.items()))
        lacking = sorted(n for n in expected - set(by_node) if n in answered)
        if lacking:
            problems.append(f"{label}: not held by {', '.join(lacking)}")
        strays = sorted(set(by_node) - expected)
        if strays:
            problems.append(f"{label}: held by {', '.join(strays)}, not among its nodes")
        unsure = unsure or any(n in down for n in expected)
    if problems:
        for p in problems:
            res.add(Anomaly("divergence", "", f"replicas differ after heal: {p}"))
        res.status, res.summary = "fail", f"{len(problems)} part(s) differ: " + "; ".join(problems[:3])
    elif down and (unsure or not held):
        res.status, res.summary = "unknown", f"no digest from {', '.join(down)}"
    else:
        res.summary = (f"all {len(digests)} replicas equal" if set(held) == {"all"} else
                       f"every part equal on its nodes ({len(held)} parts over {len(digests)} nodes)")
    return res
