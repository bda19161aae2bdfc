"""Convergence: after heal and quiescence every replica holds the same state."""

from __future__ import annotations

from collections import defaultdict

from replikv.check.result import Anomaly, CheckResult

__all__ = ["check_convergence"]


def check_convergence(digests: dict[str, str | None]) -> CheckResult:
    """Proves every replica holds the same state after heal and quiescence (``REPLIKV
    DIGEST`` equal on every node), or names the ones that differ; a node that did
    not answer makes the result ``unknown``. O(nodes): one dictionary of digests."""
    res = CheckResult("convergence", "pass", "")
    down = [n for n, d in digests.items() if d is None]
    groups: dict[str, list[str]] = defaultdict(list)
    for n, d in digests.items():
        if d is not None:
            groups[d].append(n)
    if len(groups) > 1:
        parts = "; ".join(f"{', '.join(ns)}: {d[:12]}" for d, ns in groups.items())
        res.add(Anomaly("divergence", "", f"replicas differ after heal: {parts}"))
        res.status, res.summary = "fail", f"{len(groups)} different states: {parts}"
    elif down:
        res.status, res.summary = "unknown", f"no digest from {', '.join(down)}"
    else:
        res.summary = f"all {len(digests)} replicas equal"
    return res
