"""The runtime contract: what the client connection and the command handlers
may ask of a node, whatever its replication mode.

``BaseRunner`` (runtime/base.py) implements the shared part (identity,
options, clients, dispatch, INFO skeleton, the disk guard, ACLs); each mode's
runner implements the rest. This Protocol is the one place that lists it:
``ClientConnection`` and every handler in ``runtime/commands.py`` are typed
against ``Mode``, never against a concrete runner, and nothing outside a
mode's own modules (its ``modes/<name>.py`` spec, its runner, its core)
compares the mode's name: per-mode differences are asked of ``spec``
(``modes/spec.py``) or of these methods.

Pipeline order (every command gets exactly one reply, in arrival order) is
the connection's rule (runtime/resp_server.py); a method that cannot answer
at once takes ``conn.slot()`` and resolves it later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from replikv.config import ClusterConfig, NodeOptions
    from replikv.kv.state_machine import StateMachine
    from replikv.modes.spec import ModeSpec
    from replikv.runtime.acl import AccessControl
    from replikv.runtime.pubsub import PubSub
    from replikv.runtime.resp_server import ClientConnection


class Mode(Protocol):
    # -- shared state (BaseRunner) -------------------------------------------------
    id: str
    config: "ClusterConfig"
    options: "NodeOptions"
    spec: "ModeSpec"
    acl: "AccessControl"
    sm: "StateMachine"  # the replicated state machine as this node has applied it
    clients: dict[int, "ClientConnection"]
    dirty_clients: set["ClientConnection"]
    peer_ids: list[str]
    default_ack: Any  # the cluster's default write level (spec.default_write)
    stats: dict[str, int]
    pubsub: "PubSub"  # Pub/Sub across the cluster (runtime/pubsub.py)

    @property
    def is_leader(self) -> bool:
        """Whether this node takes writes itself right now (a follower forwards them)."""

    def default_read_level(self) -> tuple[str, int]:
        """(level, bound ms) a new connection starts with (spec.default_read)."""

    def ack_replicas(self, level: Any) -> int:
        """How many other nodes a write at ``level`` waits for (0: none)."""

    def execute(self, conn: "ClientConnection", argv: list[bytes]) -> None:
        """Run one parsed command for ``conn`` (BaseRunner: ACL, MULTI, routing)."""

    def execute_batch(self, conn: "ClientConnection", commands: list[list[bytes]]) -> None:
        """Run the commands of one read for ``conn`` in order, as ``execute`` would each."""

    # -- what each mode provides ---------------------------------------------------
    def exec_transaction(self, conn: "ClientConnection", queued: list[list[bytes]]) -> None:
        """EXEC: a block with a write is ONE replicated entry; a read-only block is a read.
        Aborted (the null array) if a key in ``conn.watch`` changed after it was watched."""

    def cluster_command(self, conn: "ClientConnection", argv: list[bytes]) -> None:
        """CLUSTER <subcommand>: Redis Cluster's topology (a sharded cluster) or a refusal."""

    def watch_position(self, key: bytes | None = None) -> int:
        """WATCH: the log index of the state this node serves now (kv/watch.py)."""

    def wait_replicas(self, conn: "ClientConnection", numreplicas: int, timeout_ms: int) -> None:
        """WAIT: reply with how many replicas hold this connection's last write."""

    def session_token(self, conn: "ClientConnection") -> bytes:
        """SESSION: the token naming what this connection has seen (a log index, a version vector)."""

    def set_session(self, conn: "ClientConnection", token: bytes) -> None:
        """SESSION token: this connection's session reads wait for ``token`` (RespError if malformed)."""

    def vget(self, conn: "ClientConnection", argv: list[bytes]) -> None:
        """VGET key: the causal context and every sibling (modes that keep versions; others refuse)."""

    def vset(self, conn: "ClientConnection", argv: list[bytes]) -> None:
        """VSET key value CONTEXT ctx: supersede what ``ctx`` saw."""

    def failover(self, conn: "ClientConnection", target: str, force: bool) -> None:
        """FAILOVER TO target [FORCE], sent to the target itself."""

    def admin(self, conn: "ClientConnection", argv: list[bytes]) -> None:
        """REPLIKV <sub> ... for the subcommands in ``spec.admin``."""

    def role_reply(self) -> list[Any]:
        """REPLIKV ROLE: [role, term or epoch, leader, last index]."""

    def take_snapshot(self) -> int:
        """REPLIKV SNAPSHOT: snapshot now; the index it covers."""

    def info(self, wanted: list[str]) -> str:
        """INFO text (Redis's format): BaseRunner's sections plus the mode's."""

    async def start(self) -> None:
        """Listen for peers and clients and start the timers."""

    async def stop(self) -> None:
        """Stop serving; close storage (everything acknowledged stays durable)."""
