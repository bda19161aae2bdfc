"""Cluster and node configuration: ``cluster.toml`` and the node options.

One file describes a cluster (written by ``replikv up``, read by ``replikv
node|status|failover``)::

    [cluster]
    mode = "leader-follower"
    secret = "..."            # cluster secret, checked at the peer handshake
    initial_leader = "n1"

    [options]                 # every node option, shared by all nodes
    fsync = "everysec"
    ack = "async"
    ...

    [nodes.n1]
    host = "127.0.0.1"
    port = 7001               # RESP clients
    peer_port = 17001         # peer (cluster bus) traffic, port + 10000 by default
    tls_port = 7101           # RESP clients over TLS (absent: no TLS listener)
    metrics_port = 9121       # Prometheus GET /metrics (absent: none)
    data_dir = "/abs/path/n1"

Bad configuration raises ``ConfigError`` with a message a person can act on.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replikv.core.sharding import SLOT_COUNT as SLOTS

FSYNC_POLICIES = ("always", "everysec", "no")
LOG_FORMATS = ("text", "json")
# the read levels of the modes with a leader (raft, single offer them all)
LEADER_READ_LEVELS = ("linearizable", "lease", "bounded", "session", "prefix", "eventual")
# every read level any mode offers: the leader modes' and the leaderless mode's replica counts
READ_LEVELS = LEADER_READ_LEVELS + ("serial", "all", "quorum", "one")
MAX_BULK_LEN_DEFAULT = 512 * 1024 * 1024  # as Redis proto-max-bulk-len
# what a peer frame may hold beyond one bulk (max_frame_bytes); REPLIKV_PEER_FRAME_SLACK_BYTES
# overrides it, for tests (a frame limit a few values pass)
PEER_FRAME_SLACK_BYTES = int(os.environ.get("REPLIKV_PEER_FRAME_SLACK_BYTES", 64 * 1024 * 1024))
PEER_PORT_OFFSET = 10000  # as Redis Cluster's bus port
TLS_AUTH_CLIENTS = ("yes", "no", "optional")
TOPOLOGIES = ("mesh", "star", "ring")  # multi-leader mode (core/multileader)
CONFLICT_POLICIES = ("lww", "siblings")  # multi-leader (and leaderless) string conflicts
TXN_MODES = ("record", "classic")  # sharded raft: cross-group MULTI/EXEC (core/txn)
_KIND_NAMES = {str: "a string", int: "an integer", bool: "true or false"}
MAX_PEER_DELAY_MS = 10_000  # injected latency per link, one way (peer_delay_ms, peer_jitter_ms, peer_delays)
DEFAULT_MODE = "leader-follower"  # of a cluster.toml that names none (modes/ registers it first)


class ConfigError(ValueError):
    """A configuration the node cannot run with; the message says why."""


@dataclass(frozen=True, slots=True)
class AckLevel:
    """Write ack level for leader-follower mode.

    ``kind`` is ``async`` (ack after the leader's own log write),
    ``semi-sync`` (after ``replicas`` followers have it durable) or ``sync``
    (after every follower has it durable).
    """

    kind: str
    replicas: int = 0

    @staticmethod
    def parse(text: str) -> "AckLevel":
        parts = text.replace("=", " ").split()
        if not parts:
            raise ConfigError("empty ack level; use async, semi-sync <k> or sync")
        kind = parts[0].lower()
        if kind == "async" and len(parts) == 1:
            return AckLevel("async")
        if kind == "sync" and len(parts) == 1:
            return AckLevel("sync")
        if kind in ("semi-sync", "semisync", "semi_sync"):
            if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) < 1:
                raise ConfigError(f"semi-sync needs a replica count >= 1, e.g. 'semi-sync 1' (got {text!r})")
            return AckLevel("semi-sync", int(parts[1]))
        raise ConfigError(f"unknown ack level {text!r}; use async, semi-sync <k> or sync")

    def __str__(self) -> str:
        return f"semi-sync {self.replicas}" if self.kind == "semi-sync" else self.kind


@dataclass(slots=True)
class NodeOptions:
    """Options every node of a cluster shares (``[options]`` in cluster.toml)."""

    fsync: str = "everysec"
    ack: str = "async"
    ack_timeout_ms: int = 5000
    requirepass: str | None = None
    redirect: bool = False
    read_default: str = "eventual"  # default read level on followers
    session_timeout_ms: int = 1000  # how long a session / bounded read may wait
    max_bulk_len: int = MAX_BULK_LEN_DEFAULT
    max_args: int = 1024 * 1024
    snapshot_bytes: int = 64 * 1024 * 1024  # WAL size that triggers a snapshot
    # leader-follower: log entries a snapshot already covers, kept (memory and WAL) for followers that
    # lag behind it, so they catch up from the log instead of a full resync (Redis's repl-backlog-size);
    # raft: how far past snapshot_bytes the WAL grows while compaction waits for a follower catching up
    repl_backlog_bytes: int = 256 * 1024 * 1024
    # leader-follower and raft: writers are held back while a follower that makes progress lacks
    # more than this many bytes of the stream (0: never); one that made none for repl_lag_stall_ms
    # does not hold them (core/shipping/node.py rule 10, RaftNode.lagging_follower)
    repl_max_lag_bytes: int = 128 * 1024 * 1024
    # leader-follower and raft: writers are held back while the log the leader keeps in memory (backlog
    # and entries after the snapshot) exceeds this (0: never); above snapshot_bytes + repl_backlog_bytes,
    # which compaction itself keeps (core/shipping/node.py rule 11, RaftNode.log_over)
    max_log_bytes: int = 512 * 1024 * 1024
    repl_lag_stall_ms: int = 5000
    # WAL segment size, as etcd's 64 MB: each roll to a new segment costs four fsyncs on the event loop
    # (storage/wal.py _roll_segment), at 16 MiB about one a second under 64 KiB writes (issue 15)
    segment_bytes: int = 64 * 1024 * 1024
    heartbeat_ms: int = 100
    log_level: str = "info"
    log_format: str = "text"  # or "json": one JSON object per line, for log collectors
    # raft mode: one tick of the Raft core every tick_ms; the election timeout
    # is randomized in [T, 2T) with T = election_timeout_ms (Raft §5.2)
    tick_ms: int = 10
    election_timeout_ms: int = 1000  # as etcd; a loaded 2-core box stalls loops for 100+ ms
    # TLS, with Redis's names: the node's certificate and key, the CA that signs
    # clients' and peers' certificates, whether clients must show one
    # (yes / no / optional), and whether peers talk over mutual TLS
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_cert_file: str | None = None
    tls_auth_clients: str = "yes"
    tls_replication: bool = False
    aclfile: str | None = None  # users (runtime/acl.py), Redis's aclfile format; ACL SAVE writes it
    # client limits, Redis's names and meanings (runtime/resp_server.py)
    maxclients: int = 10000
    timeout: int = 0  # close a client idle this many seconds (0: never)
    client_query_buffer_limit: int = 1024 * 1024 * 1024  # bytes of one client's unparsed input
    client_output_buffer_limit: int = 256 * 1024 * 1024  # bytes of one client's unread replies
    # multi-leader mode: which nodes exchange operations directly (the rest is relayed), and how
    # concurrent writes of one string resolve (docs/multi-leader.md)
    topology: str = "mesh"  # mesh | star | ring
    hub: str = ""  # star: the node every other one talks to ("": the first node)
    conflicts: str = "lww"  # lww | siblings
    # writes (mutations) of each origin kept for a peer that lags; beyond: state transfer. 500,000
    # small writes hold ~130 MB (leader-follower keeps a 256 MiB backlog); under -P 16 load on 2 cores
    # a peer lags by 100,000 writes (1-2 s of them): 100,000 made state transfers (BENCHMARKS.md, session 21)
    oplog_retain_ops: int = 500_000
    # leaderless mode (docs/leaderless.md): replicas per key on the ring, the levels a connection
    # starts with, a stand-in's hint counting toward W, and how long a tombstone is kept
    replicas: int = 3
    read_consistency: str = "quorum"  # one | quorum | all | <n>
    write_consistency: str = "quorum"
    sloppy_quorum: bool = False
    vnodes: int = 64
    tombstone_grace_s: int = 864_000  # as Cassandra's gc_grace_seconds (10 days)
    read_repair_pct: int = 10  # % of reads that ask every replica (Cassandra's read_repair_chance)
    anti_entropy_ms: int = 10_000  # one Merkle comparison of one replica group this often (0: never)
    # raft mode: hash-slot sharding over this many Raft groups, each on `replicas` of the nodes
    # (runtime/sharded_raft.py); 0: one group holds every key (the unsharded raft mode)
    shards: int = 0
    # sharded raft: how MULTI/EXEC across groups commits (docs/design.md, "Transactions across
    # groups"): "record" (the decision in a transaction record in one group's log; anyone finishes
    # a transaction whose coordinator died) or "classic" (textbook 2PC, the coordinator's memory)
    txn: str = "record"
    txn_timeout_ms: int = 1000  # a transaction not decided by then may be aborted by anyone
    # injected latency between nodes (runtime/tcp_transport.py), to put nodes "in different
    # regions" on one machine: every frame to a peer leaves delay ± jitter ms (uniform) after it
    # was sent, in order (a jitter above the delay is cut at 0: never before it was sent);
    # peer_delays overrides the delay per link: "n1-n2=80,n1-n3=120"
    peer_delay_ms: int = 0
    peer_jitter_ms: int = 0
    peer_delays: str = ""

    @property
    def max_frame_bytes(self) -> int:
        """The largest peer frame (runtime/tcp_transport.py closes a link on a larger one; a
        sender cuts its frames to fit it, issue 9): one client bulk and room for the rest of a
        message."""
        return self.max_bulk_len + PEER_FRAME_SLACK_BYTES

    @property
    def max_command_bytes(self) -> int:
        """The largest command (or MULTI block, or a leader-follower script's effects) a node
        takes, by ``core/resp.command_bytes``. What a node replicates of one command or block (a
        raft entry, a leader-follower stream record, a multi-leader op, a leaderless write, a
        forward) is one message, and must fit one peer frame (``max_frame_bytes``) with room for
        what the message adds; a larger one closed the link at every resend (issue 9). Half the
        slack is that room."""
        return self.max_bulk_len + PEER_FRAME_SLACK_BYTES // 2

    def link_delays(self, node_id: str) -> dict[str, int]:
        """The per-link delay overrides of ``node_id``'s links: peer id -> ms."""
        out: dict[str, int] = {}
        for (a, b), ms in parse_peer_delays(self.peer_delays).items():
            if a == node_id:
                out[b] = ms
            elif b == node_id:
                out[a] = ms
        return out

    def validate(self) -> None:
        for f in dataclasses.fields(self):  # the type each option's default has (found by tests/fuzz)
            value, default = getattr(self, f.name), f.default
            kind = str if default is None else type(default)
            if not (value is None and default is None) and (
                    not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
                raise ConfigError(f"{f.name} must be {_KIND_NAMES.get(kind, kind.__name__)} (got {value!r})")
        if self.fsync not in FSYNC_POLICIES:
            raise ConfigError(f"fsync must be one of {', '.join(FSYNC_POLICIES)} (got {self.fsync!r})")
        AckLevel.parse(self.ack)
        for name in ("ack_timeout_ms", "session_timeout_ms", "max_bulk_len", "max_args",
                     "snapshot_bytes", "segment_bytes", "heartbeat_ms", "tick_ms", "election_timeout_ms",
                     "maxclients", "client_query_buffer_limit", "client_output_buffer_limit",
                     "oplog_retain_ops", "replicas", "vnodes", "tombstone_grace_s", "repl_lag_stall_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer (got {value!r})")
        if self.repl_backlog_bytes < 0:
            raise ConfigError(f"repl_backlog_bytes must be 0 (no backlog) or a number of bytes "
                              f"(got {self.repl_backlog_bytes!r})")
        if self.repl_max_lag_bytes < 0:
            raise ConfigError(f"repl_max_lag_bytes must be 0 (no back-pressure) or a number of bytes "
                              f"(got {self.repl_max_lag_bytes!r})")
        if self.max_log_bytes < 0 or 0 < self.max_log_bytes <= self.snapshot_bytes + self.repl_backlog_bytes:
            raise ConfigError(f"max_log_bytes must be 0 (no bound) or more than snapshot_bytes + "
                              f"repl_backlog_bytes ({self.snapshot_bytes + self.repl_backlog_bytes}), the log "
                              f"compaction itself keeps (got {self.max_log_bytes!r})")
        if self.read_default not in ("eventual", "prefix", "session"):
            raise ConfigError(f"read_default must be eventual, prefix or session (got {self.read_default!r})")
        if not isinstance(self.timeout, int) or self.timeout < 0:
            raise ConfigError(f"timeout must be 0 (never) or a number of seconds (got {self.timeout!r})")
        if self.tls_auth_clients not in TLS_AUTH_CLIENTS:
            raise ConfigError(f"tls_auth_clients must be one of {', '.join(TLS_AUTH_CLIENTS)} "
                              f"(got {self.tls_auth_clients!r})")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)} (got {self.log_format!r})")
        if self.topology not in TOPOLOGIES:
            raise ConfigError(f"topology must be one of {', '.join(TOPOLOGIES)} (got {self.topology!r})")
        if self.conflicts not in CONFLICT_POLICIES:
            raise ConfigError(f"conflicts must be one of {', '.join(CONFLICT_POLICIES)} (got {self.conflicts!r})")
        for name in ("read_consistency", "write_consistency"):
            value = getattr(self, name)
            if value not in ("one", "quorum", "all", "serial") and not (value.isdigit() and 0 < int(value) < 1000):
                raise ConfigError(f"{name} must be one, quorum, all, serial or a number of replicas "
                                  f"(got {value!r})")
        if self.anti_entropy_ms < 0:
            raise ConfigError(f"anti_entropy_ms must be 0 (never) or a number of ms (got {self.anti_entropy_ms!r})")
        if not isinstance(self.read_repair_pct, int) or not 0 <= self.read_repair_pct <= 100:
            raise ConfigError(f"read_repair_pct must be between 0 and 100 (got {self.read_repair_pct!r})")
        for name in ("peer_delay_ms", "peer_jitter_ms"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_PEER_DELAY_MS:
                raise ConfigError(f"{name} must be between 0 and {MAX_PEER_DELAY_MS} ms (got {value!r})")
        parse_peer_delays(self.peer_delays)
        if not 0 <= self.shards <= SLOTS:
            raise ConfigError(f"shards must be 0 (unsharded) or a number of groups up to {SLOTS} "
                              f"(got {self.shards!r})")
        if self.txn not in TXN_MODES:
            raise ConfigError(f"txn must be one of {', '.join(TXN_MODES)} (got {self.txn!r})")
        if self.txn_timeout_ms <= 0:
            raise ConfigError(f"txn_timeout_ms must be a positive integer (got {self.txn_timeout_ms!r})")
        if self.election_timeout_ms < 2 * self.tick_ms:
            raise ConfigError(f"election_timeout_ms ({self.election_timeout_ms}) must be at least two ticks "
                              f"(tick_ms {self.tick_ms})")


def parse_peer_delays(text: str) -> dict[tuple[str, str], int]:
    """``"n1-n2=80, n1-n3=120"`` -> {("n1", "n2"): 80, ("n1", "n3"): 120} (one-way ms, both directions).

    The two ids are separated by ``-``, or by a space when an id itself
    contains a ``-`` (``"node-1 node-2=80"``). Items are separated by commas."""
    out: dict[tuple[str, str], int] = {}
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        link, eq, ms = item.partition("=")
        link = link.strip()
        parts = link.split() if " " in link else link.split("-")
        ms = ms.strip()
        if not eq or len(parts) != 2 or not all(parts) or not ms.isdigit():
            raise ConfigError(f"peer_delays: {item!r} is not a link and its delay, e.g. 'n1-n2=80' "
                              f"(node ids with a '-' are separated by a space: 'node-1 node-2=80')")
        a, b = parts
        if a == b:
            raise ConfigError(f"peer_delays: {item!r} links a node to itself")
        if int(ms) > MAX_PEER_DELAY_MS:
            raise ConfigError(f"peer_delays: {item!r}: at most {MAX_PEER_DELAY_MS} ms")
        out[(a, b) if a < b else (b, a)] = int(ms)
    return out


@dataclass(frozen=True, slots=True)
class NodeAddress:
    id: str
    host: str
    port: int
    peer_port: int
    data_dir: str
    tls_port: int = 0  # 0: no TLS listener for clients
    metrics_port: int = 0  # 0: no Prometheus /metrics listener (runtime/metrics.py)


@dataclass(slots=True)
class ClusterConfig:
    mode: str
    secret: str
    initial_leader: str
    nodes: dict[str, NodeAddress]
    options: NodeOptions = field(default_factory=NodeOptions)
    # raft: the voters of the first configuration (empty: every node); nodes
    # added later with ``replikv cluster add`` are not in it and join as learners
    bootstrap: list[str] = field(default_factory=list)
    source: str = field(default="", compare=False)  # the file this was loaded from

    def validate(self) -> None:
        from replikv import modes  # the registry imports this module: import it when used

        try:
            spec = modes.get(self.mode)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if not self.nodes:
            raise ConfigError("a cluster needs at least one node")
        if len(self.nodes) < spec.min_nodes or (spec.max_nodes is not None and len(self.nodes) > spec.max_nodes):
            most = f" and at most {spec.max_nodes}" if spec.max_nodes is not None else ""
            raise ConfigError(f"{self.mode} mode needs at least {spec.min_nodes}{most} node(s) "
                              f"(this cluster has {len(self.nodes)})")
        for name in self.bootstrap:
            if name not in self.nodes:
                raise ConfigError(f"bootstrap node {name!r} is not one of the nodes")
        if self.initial_leader not in self.nodes:
            raise ConfigError(f"initial_leader {self.initial_leader!r} is not one of the nodes")
        seen: set[tuple[str, int]] = set()
        tls = self.options.tls_replication or any(n.tls_port for n in self.nodes.values())
        opts = self.options
        if tls and not (opts.tls_cert_file and opts.tls_key_file):
            raise ConfigError("TLS (a tls_port or tls_replication) needs tls_cert_file and tls_key_file")
        if tls and not opts.tls_ca_cert_file and (opts.tls_replication or opts.tls_auth_clients != "no"):
            raise ConfigError("tls_ca_cert_file is needed to check peers' (tls_replication) or clients' "
                              "(tls_auth_clients yes/optional) certificates")
        if opts.shards and self.mode != "raft":
            raise ConfigError(f"shards is offered in raft mode (hash slots over Raft groups), not in {self.mode} mode")
        for a, b in parse_peer_delays(self.options.peer_delays):
            for name in (a, b):
                if name not in self.nodes:
                    raise ConfigError(f"peer_delays names node {name!r}, which is not one of the nodes "
                                      f"({', '.join(self.nodes)})")
        for node in self.nodes.values():
            for port in (node.port, node.peer_port, *(p for p in (node.tls_port, node.metrics_port) if p)):
                if not 0 < port < 65536:
                    raise ConfigError(f"node {node.id}: port {port} out of range")
                if (node.host, port) in seen:
                    raise ConfigError(f"node {node.id}: address {node.host}:{port} used twice")
                seen.add((node.host, port))
        self.options.validate()

    def node(self, node_id: str) -> NodeAddress:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise ConfigError(f"no node {node_id!r} in this cluster (have {', '.join(self.nodes)})") from None

    # -- TOML ------------------------------------------------------------
    @staticmethod
    def load(path: str | Path) -> "ClusterConfig":
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        except UnicodeDecodeError as e:  # found by tests/fuzz (config)
            raise ConfigError(f"{path}: not valid TOML: not UTF-8 at byte {e.start}") from None
        except RecursionError:  # found by tests/fuzz (config): tomllib recurses per nesting level
            raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
        try:
            cluster = _table(doc["cluster"], "cluster")
            known = {f.name for f in dataclasses.fields(NodeOptions)}
            raw_options: dict[str, Any] = _table(doc.get("options", {}), "options")
            unknown = set(raw_options) - known
            if unknown:
                raise ConfigError(f"{path}: unknown option(s) {', '.join(sorted(unknown))}")
            options = NodeOptions(**raw_options)
            nodes = {
                node_id: NodeAddress(
                    id=node_id,
                    host=str(spec.get("host", "127.0.0.1")),
                    port=int(spec["port"]),
                    peer_port=int(spec.get("peer_port", int(spec["port"]) + PEER_PORT_OFFSET)),
                    data_dir=str(spec["data_dir"]),
                    tls_port=int(spec.get("tls_port", 0)),
                    metrics_port=int(spec.get("metrics_port", 0)),
                )
                for node_id, spec in _node_tables(doc["nodes"]).items()
            }
            config = ClusterConfig(
                mode=str(cluster.get("mode", DEFAULT_MODE)),
                secret=str(cluster["secret"]),
                initial_leader=str(cluster.get("initial_leader", next(iter(nodes), ""))),
                nodes=nodes,
                options=options,
                bootstrap=[str(n) for n in cluster.get("bootstrap", [])],
                source=str(path),
            )
        except KeyError as e:
            raise ConfigError(f"{path}: missing required key {e}") from None
        except (TypeError, ValueError, OverflowError) as e:  # OverflowError: port = inf
            raise ConfigError(f"{path}: {e}") from None
        config.validate()
        return config

    def dump(self) -> str:
        lines = ["[cluster]", f"mode = {_toml(self.mode)}", f"secret = {_toml(self.secret)}",
                 f"initial_leader = {_toml(self.initial_leader)}"]
        if self.bootstrap:
            lines.append("bootstrap = [" + ", ".join(_toml(n) for n in self.bootstrap) + "]")
        lines += ["", "[options]"]
        for f in dataclasses.fields(NodeOptions):
            value = getattr(self.options, f.name)
            if value is not None:
                lines.append(f"{f.name} = {_toml(value)}")
        for node in self.nodes.values():
            lines += ["", f"[nodes.{_toml_key(node.id)}]", f"host = {_toml(node.host)}", f"port = {node.port}",
                      f"peer_port = {node.peer_port}", f"data_dir = {_toml(node.data_dir)}"]
            if node.tls_port:
                lines.append(f"tls_port = {node.tls_port}")
            if node.metrics_port:
                lines.append(f"metrics_port = {node.metrics_port}")
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> None:
        """Write atomically, owner-only from creation: the file holds the cluster secret."""
        from replikv.storage.files import atomic_write_file

        atomic_write_file(path, self.dump().encode())


def _table(value: Any, name: str) -> dict[str, Any]:
    """``value`` if it is a TOML table, else a ConfigError naming it."""
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table, not {value!r:.40}")
    return value


def _node_tables(value: Any) -> dict[str, dict[str, Any]]:
    nodes = _table(value, "nodes")
    return {node_id: _table(spec, f"nodes.{node_id}") for node_id, spec in nodes.items()}


def _toml_key(key: str) -> str:
    """A TOML key: bare when it may be (letters, digits, ``-``, ``_``), else quoted."""
    return key if _BARE_KEY.fullmatch(key) else _toml(key)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + "".join(_TOML_ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ch < " " or ch == "\x7f" else ch)
                         for ch in str(value)) + '"'


# TOML basic strings: backslash, quote and control characters must be escaped
_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
                 "\r": "\\r"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost' (protected mode, as Redis)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
