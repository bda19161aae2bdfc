"""runtime/raft_runner.py ``catch_up_backlog``: the log a raft leader keeps past
``snapshot_bytes`` for a follower being caught up is bounded by the lag at which writers
are held (``repl_max_lag_bytes``), not only by ``repl_backlog_bytes``."""

from __future__ import annotations

import pytest

from replikv.config import NodeOptions
from replikv.runtime.raft_runner import catch_up_backlog

MB = 1 << 20


@pytest.mark.parametrize(("backlog", "max_lag", "kept"), [
    (256 * MB, 128 * MB, 128 * MB),  # the defaults: held at the lag bound, so no more is needed
    (64 * MB, 128 * MB, 64 * MB),  # a smaller backlog stays the bound
    (256 * MB, 0, 256 * MB),  # no back-pressure: followers may lag any amount, the backlog bounds it
    (0, 128 * MB, 0),  # no backlog at all
])
def test_the_backlog_is_bounded_by_the_lag_writers_are_held_at(backlog: int, max_lag: int, kept: int) -> None:
    opts = NodeOptions(repl_backlog_bytes=backlog, repl_max_lag_bytes=max_lag)
    assert catch_up_backlog(opts) == kept


def test_the_defaults_keep_no_more_than_the_lag_bound() -> None:
    opts = NodeOptions()
    assert catch_up_backlog(opts) == opts.repl_max_lag_bytes < opts.repl_backlog_bytes
