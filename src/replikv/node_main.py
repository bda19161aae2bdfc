"""``python -m replikv node``: run one node without the command line's imports.

A node's restart is timed against Redis loading its RDB (issue 15, target 4):
the full command line (``replikv/cli.py``) imports redis-py, typer (and
pydantic through it) and rich, ~0.15 s of a restart that a node never uses.
``replikv/__main__.py`` hands ``node`` here; the typer command ``replikv node``
(the console script) runs the same :func:`run`. Same options, same exit codes
(2: a usage or configuration error, 1: the node failed or refused to start).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from replikv.config import ClusterConfig, ConfigError
from replikv.parent_death import die_with_parent

__all__ = ["main", "run"]

USAGE_ERROR = 2


def run(config_path: Path, node_id: str, peer_delay_ms: int | None = None,
        peer_jitter_ms: int | None = None) -> int:
    """Load ``config_path``, apply the per-node overrides, run node ``node_id`` until
    SIGTERM/SIGINT; its exit code. ConfigError for a bad configuration."""
    config = ClusterConfig.load(config_path)
    config.node(node_id)
    if peer_delay_ms is not None:
        config.options.peer_delay_ms = peer_delay_ms
    if peer_jitter_ms is not None:
        config.options.peer_jitter_ms = peer_jitter_ms
    if peer_delay_ms is not None or peer_jitter_ms is not None:
        config.options.validate()
    die_with_parent()  # started by `replikv up` / `replikv check`: exit with it
    from replikv.runtime.base import run_node
    return run_node(config, node_id) or 0


def main(argv: list[str]) -> int:
    """``python -m replikv node --config FILE --id ID [--peer-delay-ms N] [--peer-jitter-ms N]``."""
    parser = argparse.ArgumentParser(prog="replikv node",
                                     description="Run one node of a cluster in the foreground (until SIGTERM / Ctrl-C).")
    parser.add_argument("--config", "-c", type=Path, required=True, help="The cluster's cluster.toml.")
    parser.add_argument("--id", required=True, dest="node_id", help="Which node of the cluster to run, e.g. n2.")
    parser.add_argument("--peer-delay-ms", type=int, help="Override cluster.toml's peer_delay_ms for this node.")
    parser.add_argument("--peer-jitter-ms", type=int, help="Override cluster.toml's peer_jitter_ms for this node.")
    args = parser.parse_args(argv)  # exits with 2 on a usage error
    try:
        return run(args.config, args.node_id, args.peer_delay_ms, args.peer_jitter_ms)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR
