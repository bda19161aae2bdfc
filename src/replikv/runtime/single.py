"""The single-node runner: a standalone store, what a developer wants on a laptop.

It is the leader-follower runner with no followers (the same WAL, group
commit, snapshots, expiry and disk guard) and the differences of having no
peers stated here: there is never anyone to fail over to, and WAIT has no
replica to wait for. Its ``ModeSpec`` (modes/single.py) is what makes it a
mode: every read is served by the one node that holds every write, so it
offers every read level, and its one write level is ``local``.
"""

from __future__ import annotations

from replikv.config import AckLevel, ClusterConfig
from replikv.core.replies import RespError
from replikv.runtime.leader_follower import LeaderFollowerRunner
from replikv.runtime.resp_server import ClientConnection


class SingleRunner(LeaderFollowerRunner):
    def __init__(self, config: ClusterConfig, node_id: str) -> None:
        super().__init__(config, node_id)  # config.validate() enforced one node (ModeSpec.max_nodes)

    def ack_replicas(self, level: AckLevel) -> int:
        return 0

    def wait_replicas(self, conn: ClientConnection, numreplicas: int, timeout_ms: int) -> None:
        conn.reply(0)  # no replica will ever hold anything: answer at once, as Redis without replicas

    def failover(self, conn: ClientConnection, target: str, force: bool) -> None:
        conn.reply(RespError("ERR single mode has one node: there is no other node to fail over to"))
