"""The ``replikv`` command line: up | node | status | failover | sim | version.

``up`` is a small process supervisor: it writes ``DIR/cluster.toml``, starts
one ``replikv node`` child per node (output to ``DIR/<id>/node.log``), waits
until every node answers PING, and stops them all on Ctrl-C / SIGTERM.
``status`` and ``failover`` talk to the nodes over RESP with redis-py, as any
client would; nothing here imports the runtime except ``node``.

Exit codes: 0 success, 1 a runtime failure (a node down, a refused failover),
2 a usage or configuration error (as click does for bad options).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import inspect
import json
import os
import secrets as secrets_mod
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Optional

import redis
import typer
from redis.backoff import NoBackoff
from redis.retry import Retry
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from replikv import __version__, modes
from replikv.check.cli import check_main
from replikv.config import (
    PEER_PORT_OFFSET,
    AckLevel,
    ClusterConfig,
    ConfigError,
    NodeAddress,
    NodeOptions,
    is_loopback,
)
from replikv.node_main import run as run_node_command
from replikv.parent_death import child_env
from replikv.storage.files import private_dir

USAGE_ERROR = 2
FAILURE = 1
CONFIG_FILE = "cluster.toml"
LOG_FILE = "node.log"
ACL_FILE = "users.acl"  # ACL SAVE writes the users here (beside cluster.toml)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
DEFAULT_NODES = 3
DEFAULT_PORT = 7001
DEFAULT_HOST = "127.0.0.1"
DEFAULT_DASHBOARD_PORT = 7900

app = typer.Typer(
    name="replikv",
    help="replikv: a replicated key-value store that speaks the Redis protocol.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # plain tracebacks; never print locals (secrets)
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Piped output (CI logs, tests) gets a width that fits the status table, not rich's 80.
_PIPE_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
console = Console(highlight=False, width=_PIPE_WIDTH)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def main() -> None:
    app(prog_name="replikv")


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


# ---------------------------------------------------------------------------
# Node options: one --flag per NodeOptions field, generated from the dataclass
# so a field added to config.py shows up in `replikv up --help` by itself.

NODE_OPTION_HELP: dict[str, str] = {
    "fsync": "WAL fsync policy: always (group commit: one fsync per batch, before the ack), "
    "everysec, or no.",
    "ack": "Write ack level: async, 'semi-sync K' (or semi-sync=K), or sync.",
    "ack_timeout_ms": "How long a write waits for its ack level before the client gets an "
    "error (the write may still be applied).",
    "requirepass": "Password clients must AUTH with (required with a non-loopback --host).",
    "redirect": "Answer writes sent to a follower with a redirect error naming the leader "
    "instead of forwarding them.",
    "read_default": "Default read level on followers: eventual, prefix or session.",
    "session_timeout_ms": "How long a session or bounded read on a follower may wait.",
    "max_bulk_len": "Largest bulk string a client may send, in bytes.",
    "max_args": "Most arguments one command may have.",
    "snapshot_bytes": "WAL size (bytes) that triggers a snapshot and compaction.",
    "repl_backlog_bytes": "leader-follower: bytes of log entries a snapshot already covers that the "
    "leader keeps (in memory and in the WAL) for followers lagging behind it, so they catch up from "
    "the log instead of a full resync (Redis's repl-backlog-size); raft: how far past --snapshot-bytes "
    "the WAL may grow while compaction waits for a follower being caught up.",
    "repl_max_lag_bytes": "leader-follower and raft: hold writers back (stop reading their connections) "
    "while a follower that is making progress lacks more than this many bytes of the replication stream "
    "(raft: of the log), so it never falls out of the backlog and a full resync (raft: a snapshot install) "
    "that starts completes; 0: never (Redis; plain Raft).",
    "max_log_bytes": "leader-follower and raft: hold writers back while the log the leader keeps in memory "
    "(the backlog and the entries after its snapshot) exceeds this, as while a slow snapshot is written; "
    "more than --snapshot-bytes + --repl-backlog-bytes; 0: never.",
    "repl_lag_stall_ms": "leader-follower and raft: a follower that made no progress for this long holds "
    "no writer back (it is left to resync later).",
    "segment_bytes": "WAL segment file size (bytes).",
    "heartbeat_ms": "Leader-to-follower heartbeat interval.",
    "log_level": "Node log level: " + ", ".join(LOG_LEVELS) + ".",
    "log_format": "Node log lines: text, or json (one JSON object per line: time, level, node, logger, "
    "message, exception) for log collectors.",
    "tls_cert_file": "The node's TLS certificate (PEM), for --tls-port and --tls-replication.",
    "tls_key_file": "The private key of --tls-cert-file (PEM).",
    "tls_ca_cert_file": "CA certificate (PEM) that clients' and peers' certificates must be signed by.",
    "tls_auth_clients": "Whether TLS clients must show a certificate: yes, no or optional.",
    "tls_replication": "Peers talk over mutual TLS (needs the certificate, key and CA).",
    "aclfile": "File of ACL users (Redis's format), read at start and by ACL LOAD, written by "
    "ACL SAVE. (up: DATA_DIR/users.acl)",
    "maxclients": "Most client connections at once; more are refused (Redis's maxclients).",
    "timeout": "Close a client idle this many seconds; 0 never (Redis's timeout).",
    "client_query_buffer_limit": "Most bytes of one client's input not yet parsed into commands.",
    "client_output_buffer_limit": "Most bytes of replies a client leaves unread before it is "
    "disconnected (reading from it pauses well before).",
    "topology": "multi-leader: which nodes exchange operations directly: mesh (every pair), star "
    "(every node with --hub) or ring (each node with its two neighbours); the rest is relayed.",
    "hub": "multi-leader --topology star: the hub node (default: the first node).",
    "conflicts": "multi-leader: concurrent writes of one string: lww (last writer wins by hybrid "
    "logical clock) or siblings (all kept: VGET shows them, VSET resolves them).",
    "oplog_retain_ops": "multi-leader: writes of each node kept in memory for a peer that lags or is "
    "down (counted as mutations; the newest operation is always kept); a peer further behind gets the "
    "whole data set (a state transfer).",
    "replicas": "leaderless: how many nodes hold each key (N), placed on a consistent-hash ring; raft "
    "with --shards: how many nodes hold each group.",
    "shards": "raft: spread the 16,384 hash slots over this many Raft groups (each on --replicas "
    "nodes, leaders spread over the nodes); cluster-aware clients (redis-py RedisCluster, "
    "redis-cli -c) route by slot. 0: one group holds every key.",
    "txn": "raft with --shards: how MULTI/EXEC over keys of several groups commits: record (two-phase "
    "commit whose decision is a transaction record in one group's Raft log, so a coordinator crash "
    "blocks nothing) or classic (textbook 2PC: the coordinator's memory; a crash between the phases "
    "leaves the keys locked).",
    "txn_timeout_ms": "raft with --shards: a cross-group transaction not decided by then may be aborted "
    "by any node that meets its locks.",
    "read_consistency": "leaderless: the read level a connection starts with: one, quorum, all or a "
    "number of replicas (CONSISTENCY READ changes it).",
    "write_consistency": "leaderless: the write level a connection starts with: one, quorum, all or a "
    "number of replicas (CONSISTENCY WRITE changes it).",
    "sloppy_quorum": "leaderless: a stand-in holding a hint for a down replica counts toward the write "
    "level (Dynamo's sloppy quorum; R + W > N then no longer guarantees overlap).",
    "vnodes": "leaderless: ring positions (virtual nodes) per node.",
    "tombstone_grace_s": "leaderless: how long a delete's tombstone is kept before it is collected "
    "(Cassandra's gc_grace_seconds); a replica down longer may bring deleted data back.",
    "read_repair_pct": "leaderless: the percentage of reads that ask every replica, so that replicas "
    "no client reads from are repaired too.",
    "anti_entropy_ms": "leaderless: how often a node compares one of its ranges with another replica "
    "(Merkle trees) and exchanges the keys that differ; 0 never.",
    "peer_delay_ms": "Injected latency: every frame to a peer leaves this many ms after it was sent "
    "(one way; frames keep their order), to put nodes 'in different regions' on one machine.",
    "peer_jitter_ms": "Injected jitter: each frame's delay varies uniformly by up to this many ms "
    "(never reordering a link).",
    "peer_delays": "Per-link delay overrides, one way in ms: 'n1-n2=80,n1-n3=120' (ids with a '-': "
    "'node-1 node-2=80').",
}
NODE_OPTIONS_PANEL = "Node options (shared by every node)"
_OPT_PREFIX = "opt_"


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


# Secrets may come from the environment (or a file, see ``up``) instead of the
# command line, where any local user can read them in ``ps``.
SECRET_ENV = {"requirepass": "REPLIKV_REQUIREPASS", "secret": "REPLIKV_SECRET"}


def read_secret_file(path: Path | None, flag: str) -> str | None:
    """The first line of a secret file (``--secret-file``), or None when not given."""
    if path is None:
        return None
    try:
        value = path.read_text().splitlines()[0].strip() if path.stat().st_size else ""
    except (OSError, UnicodeDecodeError, IndexError) as e:
        fail(f"{flag} {path}: cannot read it ({e})")
    if not value:
        fail(f"{flag} {path}: the file is empty")
    return value


def node_option_flags() -> dict[str, str]:
    """NodeOptions field name -> its command-line flag (``ack_timeout_ms`` -> ``--ack-timeout-ms``)."""
    return {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(NodeOptions)}


def with_node_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a typer command one option per NodeOptions field.

    Every generated option defaults to None (not given); the command receives
    the ones given as ``node_options={field name: value}``, so it can tell
    "not given" from "given the default" (which matters when an existing
    cluster.toml is reused).
    """
    base = inspect.signature(func, eval_str=True)
    params = [p for name, p in base.parameters.items() if name != "node_options"]
    annotations: dict[str, Any] = {p.name: p.annotation for p in params}
    flags = node_option_flags()
    for f in dataclasses.fields(NodeOptions):
        default = _field_default(f)
        flag = flags[f.name]
        kind: type
        if isinstance(default, bool):
            kind, decls = bool, [f"{flag}/--no-{flag[2:]}"]
            shown = "on" if default else "off"
        elif isinstance(default, int):
            kind, decls, shown = int, [flag], str(default)
        else:
            kind, decls, shown = str, [flag], "none" if default is None else str(default)
        help_text = f"{NODE_OPTION_HELP.get(f.name, f.name.replace('_', ' '))} (default: {shown})"
        name = _OPT_PREFIX + f.name
        option = typer.Option(None, *decls, help=help_text, show_default=False,
                              envvar=SECRET_ENV.get(f.name), rich_help_panel=NODE_OPTIONS_PANEL)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=Optional[kind]))
        annotations[name] = Optional[kind]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        given = {k[len(_OPT_PREFIX):]: v for k, v in kwargs.items()
                 if k.startswith(_OPT_PREFIX) and v is not None}
        rest = {k: v for k, v in kwargs.items() if not k.startswith(_OPT_PREFIX)}
        return func(**rest, node_options=given)

    wrapper.__signature__ = base.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = annotations
    return wrapper


# ---------------------------------------------------------------------------
# Building cluster.toml (pure: no processes, testable on its own)

def normalize_node_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """Check and canonicalize option values given on the command line."""
    known = {f.name for f in dataclasses.fields(NodeOptions)}
    unknown = set(given) - known
    if unknown:
        raise ConfigError(f"unknown node option(s): {', '.join(sorted(unknown))}")
    out = dict(given)
    if "ack" in out:
        out["ack"] = str(AckLevel.parse(str(out["ack"])))
    if "fsync" in out:
        out["fsync"] = str(out["fsync"]).lower()
    if "log_level" in out:
        level = str(out["log_level"]).lower()
        if level not in LOG_LEVELS:
            raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)} (got {level!r})")
        out["log_level"] = level
    if out.get("requirepass") == "":
        raise ConfigError("--requirepass must not be empty")
    return out


def check_cluster_rules(config: ClusterConfig) -> None:
    """Rules that need the whole cluster in view (beyond ClusterConfig.validate)."""
    config.validate()
    followers = len(config.nodes) - 1
    ack = AckLevel.parse(config.options.ack)
    if ack.kind == "semi-sync" and ack.replicas > followers:
        raise ConfigError(f"--ack 'semi-sync {ack.replicas}' needs at least {ack.replicas} "
                          f"followers; this cluster has {followers}")
    for node in config.nodes.values():
        if not is_loopback(node.host) and not (config.options.requirepass and config.secret):
            raise ConfigError(
                f"protected mode: node {node.id} would listen on {node.host}, which is not a "
                "loopback address; give --requirepass (and share the cluster secret) to accept "
                f"remote clients, or use --host {DEFAULT_HOST}")


def build_cluster_config(
    *,
    data_dir: Path,
    mode: str | None = None,
    nodes: int | None = None,
    port: int | None = None,
    peer_port: int | None = None,
    host: str | None = None,
    secret: str | None = None,
    node_options: Mapping[str, Any] | None = None,
    existing: ClusterConfig | None = None,
    tls_port: int | None = None,
    metrics_port: int | None = None,
) -> tuple[ClusterConfig, list[str]]:
    """The cluster ``replikv up`` should run, and notes to tell the user.

    Without ``existing``: nodes n1..nN on ports port..port+N-1 (peers on
    peer_port.., by default port+10000..), data in data_dir/nX, n1 the
    initial leader, a random secret unless one is given.
    With ``existing`` (a cluster.toml already in data_dir): its nodes and
    secret are kept, the options given are applied over its options, and a
    --nodes/--port/--peer-port/--host/--mode that disagrees with it is an
    error (restarting with other addresses would orphan the data on disk).
    """
    notes: list[str] = []
    given = normalize_node_options(node_options or {})
    if existing is None:
        name = mode or modes.names()[0]
        spec = modes.get(name) if name in modes.names() else None  # an unknown one is refused below
        if nodes is not None:
            count = nodes
        else:  # a mode with fewer nodes than the default (single) gets as many as it takes
            count = min(DEFAULT_NODES, spec.max_nodes) if spec and spec.max_nodes else DEFAULT_NODES
        if count < 1:
            raise ConfigError(f"--nodes must be at least 1 (got {count})")
        base = DEFAULT_PORT if port is None else port
        peer_base = base + PEER_PORT_OFFSET if peer_port is None else peer_port
        bind = host or DEFAULT_HOST
        for what, first_port in (("--port", base), ("peer port", peer_base)):
            if first_port + count - 1 > 65535:
                hint = "" if peer_port is not None else " (port + 10000; pick one with --peer-port)"
                raise ConfigError(f"{what} {first_port}{hint}: {count} nodes need ports up to "
                                  f"{first_port + count - 1}, beyond 65535")
        root = data_dir.resolve()
        addresses: dict[str, NodeAddress] = {}
        for i in range(count):
            node_id = f"n{i + 1}"
            addresses[node_id] = NodeAddress(id=node_id, host=bind, port=base + i,
                                             peer_port=peer_base + i, data_dir=str(root / node_id),
                                             tls_port=tls_port + i if tls_port else 0,
                                             metrics_port=metrics_port + i if metrics_port else 0)
        if secret is None:
            secret = secrets_mod.token_hex(16)
            notes.append("generated a random cluster secret (kept in cluster.toml)")
        given.setdefault("aclfile", str(data_dir.resolve() / ACL_FILE))
        try:
            options = NodeOptions(**given)
        except TypeError as e:
            raise ConfigError(str(e)) from None
        config = ClusterConfig(mode=mode or modes.names()[0], secret=secret, initial_leader="n1",
                               nodes=addresses, options=options)
    else:
        first = next(iter(existing.nodes.values()))
        conflicts: list[str] = []
        if mode is not None and mode != existing.mode:
            conflicts.append(f"--mode {mode} (it is {existing.mode})")
        if nodes is not None and nodes != len(existing.nodes):
            conflicts.append(f"--nodes {nodes} (it has {len(existing.nodes)})")
        if port is not None and port != first.port:
            conflicts.append(f"--port {port} (it starts at {first.port})")
        if peer_port is not None and peer_port != first.peer_port:
            conflicts.append(f"--peer-port {peer_port} (it starts at {first.peer_port})")
        if tls_port is not None and tls_port != first.tls_port:
            conflicts.append(f"--tls-port {tls_port} (it is {first.tls_port or 'not set'})")
        if metrics_port is not None and metrics_port != first.metrics_port:
            conflicts.append(f"--metrics-port {metrics_port} (it is {first.metrics_port or 'not set'})")
        if host is not None and any(n.host != host for n in existing.nodes.values()):
            conflicts.append(f"--host {host} (it uses {first.host})")
        if conflicts:
            raise ConfigError(
                f"{data_dir / CONFIG_FILE} already describes a cluster that disagrees with "
                f"{'; '.join(conflicts)}. Use another --data-dir, or delete that directory "
                "to start over.")
        options = dataclasses.replace(existing.options, **given)
        config = ClusterConfig(mode=existing.mode, secret=secret or existing.secret,
                               initial_leader=existing.initial_leader,
                               nodes=dict(existing.nodes), options=options)
        note = f"reusing {data_dir / CONFIG_FILE}: its {len(existing.nodes)} nodes and secret"
        if given:
            flags = node_option_flags()
            note += "; applying " + ", ".join(flags[name] for name in given)
        notes.append(note)
        if secret is not None and secret != existing.secret:
            notes.append("the cluster secret changes to the one given")
    check_cluster_rules(config)
    return config, notes


def load_config(path: Path) -> ClusterConfig:
    try:
        return ClusterConfig.load(path)
    except ConfigError as e:
        fail(str(e))


# ---------------------------------------------------------------------------
# Talking to nodes

def dial_host(host: str) -> str:
    """Where to connect to reach a node bound to ``host`` (a wildcard means here)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def node_client(config: ClusterConfig, node: NodeAddress, timeout_s: float) -> redis.Redis:
    return redis.Redis(
        host=dial_host(node.host), port=node.port, password=config.options.requirepass,
        socket_timeout=timeout_s, socket_connect_timeout=min(timeout_s, 1.0),
        decode_responses=True, retry=Retry(NoBackoff(), 0),
    )


def parse_info(text: str) -> dict[str, str]:
    """Redis INFO text -> {field: value} (section headers and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        out[key] = value
    return out


def parse_kv_list(text: str) -> dict[str, str]:
    """``ip=1.2.3.4,port=7002,state=online`` -> dict."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


@dataclass
class NodeStatus:
    id: str
    address: str
    state: str  # "up", "down" (unreachable) or "error" (answered with an error)
    role: str = ""  # "leader" | "follower" | as reported
    epoch: str = ""
    leader: str = ""
    offset: str = ""
    applied: str = ""
    lag_ops: str = ""
    lag_ms: str = ""
    link: str = ""
    error: str = ""
    followers: list[dict[str, str]] = field(default_factory=list)
    groups: dict[str, dict[str, str]] = field(default_factory=dict)  # sharded raft: group -> its row
    info: dict[str, str] = field(default_factory=dict)  # every INFO field asked for (the dashboard's)


ROLE_NAMES = {"master": "leader", "slave": "follower"}


def query_status(config: ClusterConfig, node: NodeAddress, timeout_s: float = 0.5,
                 sections: tuple[str, ...] = ("replication",)) -> NodeStatus:
    status = NodeStatus(id=node.id, address=f"{node.host}:{node.port}", state="up")
    client = node_client(config, node, timeout_s)
    client.set_response_callback("INFO", lambda response, **options: response)  # raw text
    try:
        raw = client.execute_command("INFO", *sections)
    except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
        # Refused or silent: down. Accepted and then dropped or stalled: the
        # process is there but not answering properly, which is worth telling apart.
        if port_in_use(node.host, node.port, timeout_s):
            status.state, status.role, status.error = "error", "error", str(e) or type(e).__name__
        else:
            status.state, status.role, status.error = "down", "down", str(e) or type(e).__name__
        return status
    except redis.RedisError as e:
        status.state, status.role, status.error = "error", "error", str(e)
        return status
    finally:
        client.close()
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    info = parse_info(text)
    status.info = info
    status.role = ROLE_NAMES.get(info.get("role", ""), info.get("role", "?"))
    status.epoch = info.get("replikv_epoch", "")
    status.leader = info.get("replikv_leader", "")
    status.offset = info.get("master_repl_offset", "")
    status.applied = info.get("replikv_applied_index", "")
    status.lag_ops = info.get("replikv_lag_ops", "")
    status.lag_ms = info.get("replikv_lag_ms", "")
    status.link = info.get("master_link_status", "")
    i = 0
    while f"slave{i}" in info:
        status.followers.append(parse_kv_list(info[f"slave{i}"]))
        i += 1
    for key, value in info.items():
        if key.startswith("group") and key[5:].isdigit():
            status.groups[key[5:]] = parse_kv_list(value)
    return status


def collect_status(config: ClusterConfig, timeout_s: float = 0.5,
                   sections: tuple[str, ...] = ("replication",)) -> list[NodeStatus]:
    """Ask every node at once (a down node costs one timeout, not one each)."""
    with ThreadPoolExecutor(max_workers=max(1, len(config.nodes))) as pool:
        return list(pool.map(lambda n: query_status(config, n, timeout_s, sections), config.nodes.values()))


def status_table(statuses: list[NodeStatus], title: str = "replikv cluster") -> Table:
    table = Table(title=title, title_justify="left",
                  caption="\n".join(f"{s.id}: {s.error}" for s in statuses if s.state == "error")
                  or None, caption_justify="left")
    for name, justify in (("node", "left"), ("address", "left"), ("role", "left"),
                          ("epoch", "right"), ("leader", "left"), ("log offset", "right"),
                          ("applied", "right"), ("lag ops/ms", "right"), ("link", "left")):
        table.add_column(name, justify=justify,  # type: ignore[arg-type]
                         no_wrap=name in ("node", "address", "role"))
    for s in statuses:
        if s.state != "up":
            table.add_row(s.id, s.address, Text(s.role, style="bold red"), "", "", "", "", "", "")
            continue
        role_style = {"leader": "bold green", "follower": "cyan"}.get(s.role, "yellow")
        lag = "-" if s.role == "leader" else f"{s.lag_ops or '?'}/{s.lag_ms or '?'}"
        table.add_row(s.id, s.address, Text(s.role, style=role_style), s.epoch, s.leader,
                      s.offset, s.applied, lag, s.link or ("-" if s.role == "leader" else ""))
    return table


def groups_table(statuses: list[NodeStatus]) -> Table:
    """Sharded raft: one row per group as its replicas report it (the leader's view first)."""
    table = Table(title="groups", title_justify="left")
    for name in ("group", "slots", "members", "leader", "term", "commit", "applied", "keys", "quiesced"):
        table.add_column(name, justify="right" if name in ("term", "commit", "applied", "keys") else "left")
    rows: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for s in statuses:
        for g, row in s.groups.items():
            rows.setdefault(g, []).append((s.id, row))
    for g in sorted(rows, key=int):
        views = sorted(rows[g], key=lambda v: (v[1].get("role") != "leader", v[0]))
        best = views[0][1]
        applied = sorted(int(r.get("applied", "0")) for _, r in views)
        quiet = sum(r.get("quiesced") == "1" for _, r in views)
        leader = best.get("leader", "") or "none"
        table.add_row(g, best.get("slots", "").replace("/", ","), best.get("members", "").replace("/", " "),
                      Text(leader, style="bold green" if best.get("role") == "leader" else "yellow"),
                      best.get("term", ""), best.get("commit", ""),
                      f"{applied[0]}..{applied[-1]}" if applied[0] != applied[-1] else str(applied[0]),
                      best.get("keys", ""), f"{quiet}/{len(views)}")
    return table


def leaders(statuses: list[NodeStatus]) -> list[str]:
    return [s.id for s in statuses if s.state == "up" and s.role == "leader"]


def ping(config: ClusterConfig, node: NodeAddress, timeout_s: float = 0.3) -> bool:
    client = node_client(config, node, timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError, AttributeError):  # AttributeError: the port answers, but not in
        return False  # RESP (redis-py's HELLO check fails on it): not our node, or not yet
    finally:
        client.close()


def port_in_use(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((dial_host(host), port), timeout=timeout_s):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# The supervisor behind `replikv up`

NODE_STYLES = ("green", "cyan", "magenta", "yellow", "blue", "bright_red", "bright_green")


@dataclass
class Child:
    node_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_start: int  # offset in node.log where this run's output begins
    reported: bool = False


class Supervisor:
    """Starts, watches and stops the node processes of one cluster."""

    def __init__(self, config: ClusterConfig, config_path: Path, echo: bool,
                 node_command: Callable[[NodeAddress], list[str]] | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.echo = echo
        self.node_command = node_command or self._replikv_node
        self.children: dict[str, Child] = {}
        self._threads: list[threading.Thread] = []
        self._tail_stop = threading.Event()

    def _replikv_node(self, node: NodeAddress) -> list[str]:
        return [sys.executable, "-m", "replikv", "node", "--config", str(self.config_path),
                "--id", node.id]

    def start(self) -> None:
        for node in self.config.nodes.values():
            self.start_node(node.id)

    def start_node(self, node_id: str) -> None:
        """Start one node (again: the dashboard's restart button); its output goes on in node.log."""
        # a node exits with us even if we are killed outright (parent_death.py)
        env = child_env(dict(os.environ, PYTHONUNBUFFERED="1"))
        i = list(self.config.nodes).index(node_id)
        node = self.config.nodes[node_id]
        node_dir = Path(node.data_dir)
        private_dir(node_dir)
        log_path = node_dir / LOG_FILE
        with open(log_path, "ab") as log:
            log_start = log.tell()
            log.write(f"---- replikv up: starting {node.id} at "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')} ----\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.node_command(node),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                # its own session: Ctrl-C reaches only us (we stop the nodes in order), and the
                # kernel's autogroup scheduler gives each node its own CPU share, as separate
                # services get, instead of one share for the whole cluster
                start_new_session=True,
            )
        child = Child(node.id, proc, log_path, log_start)
        self.children[node.id] = child
        if self.echo:
            t = threading.Thread(target=self._tail, args=(child, NODE_STYLES[i % len(NODE_STYLES)]),
                                 name=f"tail-{node.id}", daemon=True)
            t.start()
            self._threads.append(t)

    def _tail(self, child: Child, style: str) -> None:
        prefix = Text(f"{child.node_id} | ", style=style)
        with open(child.log_path, "rb") as f:
            f.seek(child.log_start)
            pending = b""
            while True:
                chunk = f.readline()
                if chunk:
                    pending += chunk
                    if pending.endswith(b"\n"):
                        line = pending.decode("utf-8", "replace").rstrip("\n")
                        pending = b""
                        console.print(prefix + Text(line), soft_wrap=True)
                    continue
                if self._tail_stop.is_set() or (child.proc.poll() is not None and not chunk):
                    if child.proc.poll() is not None:
                        rest = f.read()
                        for line in (pending + rest).decode("utf-8", "replace").splitlines():
                            console.print(prefix + Text(line), soft_wrap=True)
                    return
                self._tail_stop.wait(0.1)

    def log_tail(self, node_id: str, lines: int = 20) -> list[str]:
        child = self.children[node_id]
        try:
            with open(child.log_path, "rb") as f:
                f.seek(child.log_start)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    def newly_exited(self) -> list[tuple[str, int]]:
        out = []
        for child in self.children.values():
            code = child.proc.poll()
            if code is not None and not child.reported:
                child.reported = True
                out.append((child.node_id, code))
        return out

    def running(self) -> list[str]:
        return [c.node_id for c in self.children.values() if c.proc.poll() is None]

    def wait_ready(self, deadline: float, stop: threading.Event) -> tuple[bool, str]:
        """Wait until every node answers PING; (False, why) if one exits or time runs out."""
        pending = list(self.config.nodes.values())
        while pending:
            if stop.is_set():
                return False, "interrupted"
            for node in list(pending):
                code = self.children[node.id].proc.poll()
                if code is not None:
                    return False, f"{node.id} exited with code {code} while starting"
                if ping(self.config, node):
                    pending.remove(node)
            if not pending:
                break
            if time.monotonic() > deadline:
                return False, ("timed out waiting for " + ", ".join(n.id for n in pending)
                               + " to answer PING")
            stop.wait(0.1)
        return True, ""

    def wait_leader(self, deadline: float, stop: threading.Event) -> bool:
        """Raft: wait until a node reports itself leader (an election takes about
        one election timeout after start); False if time runs out first."""
        while not stop.is_set() and time.monotonic() < deadline:
            if leaders(collect_status(self.config)):
                return True
            stop.wait(0.1)
        return False

    def stop(self, timeout_s: float = 10.0, force: threading.Event | None = None) -> list[str]:
        """SIGTERM every node, wait up to timeout_s, then SIGKILL; returns the killed ones."""
        for child in self.children.values():
            if child.proc.poll() is None:
                try:
                    child.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout_s
        killed = []
        for child in self.children.values():
            while child.proc.poll() is None and time.monotonic() < deadline:
                if force is not None and force.is_set():
                    break
                try:
                    child.proc.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    pass
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()
                killed.append(child.node_id)
        self._tail_stop.set()
        for t in self._threads:
            t.join(timeout=2.0)
        return killed


def print_exit_report(sup: Supervisor, node_id: str, code: int) -> None:
    reason = f"code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
    err_console.print(f"[bold red]node {node_id} exited ({reason})[/]; "
                      f"last lines of {escape(str(sup.children[node_id].log_path))}:")
    for line in sup.log_tail(node_id):
        err_console.print(Text("  " + line, style="dim"))


def connect_hint(config: ClusterConfig, node: NodeAddress) -> str:
    parts = ["redis-cli"]
    if dial_host(node.host) != DEFAULT_HOST:
        parts += ["-h", dial_host(node.host)]
    if node.tls_port:
        opts = config.options
        parts += ["-p", str(node.tls_port), "--tls", "--cacert", str(opts.tls_ca_cert_file or "<ca.pem>")]
        if opts.tls_auth_clients == "yes":
            parts += ["--cert", "<client.pem>", "--key", "<client.key>"]
    else:
        parts += ["-p", str(node.port)]
    if config.options.requirepass:
        parts.append("--askpass")
    return " ".join(parts)


def print_cluster_ready(config: ClusterConfig, config_path: Path) -> None:
    statuses = {s.id: s for s in collect_status(config)}
    table = Table(title=f"replikv {config.mode} cluster is up", title_justify="left")
    for name in ("node", "address", "role", "data dir", "connect"):
        table.add_column(name)
    for node in config.nodes.values():
        s = statuses[node.id]
        role = s.role or "?"
        style = {"leader": "bold green", "follower": "cyan"}.get(role, "red")
        table.add_row(node.id, f"{node.host}:{node.port}", Text(role, style=style),
                      node.data_dir, connect_hint(config, node))
    console.print(table)
    leader = next((s.id for s in statuses.values() if s.role == "leader"),
                  None if modes.get(config.mode).elects_leader else config.initial_leader)
    up_note = modes.get(config.mode).up_note
    note = up_note(config.options) if up_note is not None else None
    if note is not None:
        console.print(note)
    elif leader is None:
        console.print("No leader elected yet: writes wait for the election "
                      f"(watch it with replikv status --config {escape(str(config_path))}).")
    elif config.options.redirect:
        console.print(f"Writes sent to a follower are answered with a redirect error naming "
                      f"the leader ({leader}); reads are served where they land.")
    else:
        console.print(f"Writes sent to a follower are forwarded to the leader ({leader}); "
                      "reads are served where they land.")
    scraped = [f"{n.host}:{n.metrics_port}" for n in config.nodes.values() if n.metrics_port]
    if scraped:
        console.print(f"Prometheus metrics: http://{scraped[0]}/metrics ... ({', '.join(scraped)}; "
                      "scrape config and Grafana board: README.md, deploy/grafana/)")
    console.print(f"Status: [bold]replikv status --config {escape(str(config_path))}[/]   "
                  f"Node logs: {escape(str(Path(next(iter(config.nodes.values())).data_dir).parent))}"
                  f"/<node>/{LOG_FILE}   Stop: Ctrl-C")


# ---------------------------------------------------------------------------
# Commands

@app.command()
@with_node_options
def up(
    mode: Optional[str] = typer.Option(
        None, "--mode", help=f"Replication mode: {', '.join(modes.names())}. (default: {modes.names()[0]})",
        show_default=False),
    nodes: Optional[int] = typer.Option(
        None, "--nodes", "-n", min=1, help=f"Number of nodes, n1..nN. (default: {DEFAULT_NODES})",
        show_default=False),
    port: Optional[int] = typer.Option(
        None, "--port", "-p", min=1, max=65535,
        help=f"Client (RESP) port of n1; nN gets port+N-1. (default: {DEFAULT_PORT})",
        show_default=False),
    peer_port: Optional[int] = typer.Option(
        None, "--peer-port", min=1, max=65535,
        help=f"Peer port of n1; nN gets peer-port+N-1. (default: port+{PEER_PORT_OFFSET})",
        show_default=False),
    metrics_port: Optional[int] = typer.Option(
        None, "--metrics-port", min=1, max=65535,
        help="Prometheus /metrics port of n1 (HTTP); nN gets metrics-port+N-1. (default: none)",
        show_default=False),
    tls_port: Optional[int] = typer.Option(
        None, "--tls-port", min=1, max=65535,
        help="TLS client port of n1; nN gets tls-port+N-1 (needs --tls-cert-file, --tls-key-file "
        "and, unless --tls-auth-clients no, --tls-ca-cert-file). (default: no TLS port)",
        show_default=False),
    host: Optional[str] = typer.Option(
        None, "--host", help=f"Address every node binds to. (default: {DEFAULT_HOST}; "
        "a non-loopback address needs --requirepass)", show_default=False),
    data_dir: Path = typer.Option(
        Path("./data"), "--data-dir", "-d", help="Cluster directory: cluster.toml and one "
        "data directory per node (reused if it already holds a cluster.toml)."),
    secret: Optional[str] = typer.Option(
        None, "--secret", envvar=SECRET_ENV["secret"],
        help="Cluster secret checked at the peer handshake; prefer the environment variable or "
        "--secret-file, which other users cannot see in ps. (default: a random one, or the one "
        "in an existing cluster.toml)", show_default=False),
    secret_file: Optional[Path] = typer.Option(
        None, "--secret-file", help="Read the cluster secret from the first line of this file."),
    requirepass_file: Optional[Path] = typer.Option(
        None, "--requirepass-file", help="Read --requirepass from the first line of this file."),
    start_timeout: float = typer.Option(
        30.0, "--start-timeout", min=0.1, help="Seconds to wait for every node to answer PING."),
    stop_timeout: float = typer.Option(
        10.0, "--stop-timeout", min=0.1,
        help="Seconds a node gets to exit after SIGTERM before it is killed."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Don't echo node logs to the terminal (they are always "
        f"in DATA_DIR/<node>/{LOG_FILE})."),
    dashboard: bool = typer.Option(
        False, "--dashboard", help="Also serve the live dashboard and playground on 127.0.0.1 "
        "(kill, pause, resume, restart buttons; see replikv dashboard)."),
    dashboard_port: int = typer.Option(
        DEFAULT_DASHBOARD_PORT, "--dashboard-port", min=0, max=65535, help="Port of --dashboard (0: any free one)."),
    node_options: Optional[dict[str, Any]] = None,
) -> None:
    """Start a local cluster (n1 leads), supervise it, and stop it on Ctrl-C / SIGTERM.

    Writes DATA_DIR/cluster.toml, starts each node as `python -m replikv node`
    with its output in DATA_DIR/<node>/node.log, waits until every node
    answers PING, prints how to connect, then reports any node that exits.
    """
    config_path = data_dir.resolve() / CONFIG_FILE
    secret = read_secret_file(secret_file, "--secret-file") or secret
    password = read_secret_file(requirepass_file, "--requirepass-file")
    if password is not None:
        node_options = {**(node_options or {}), "requirepass": password}
    existing = None
    if config_path.exists():
        existing = load_config(config_path)
    try:
        config, notes = build_cluster_config(
            data_dir=data_dir, mode=mode, nodes=nodes, port=port, peer_port=peer_port, host=host,
            secret=secret, node_options=node_options, existing=existing, tls_port=tls_port,
            metrics_port=metrics_port)
    except ConfigError as e:
        fail(str(e))
    busy = [f"{n.host}:{p}" for n in config.nodes.values()
            for p in (n.port, n.peer_port, n.tls_port, n.metrics_port) if p and port_in_use(n.host, p)]
    if busy:
        fail(f"address already in use: {', '.join(busy)} (is another cluster running? "
             "stop it, or pick other ports with --port / --peer-port)")
    private_dir(config_path.parent)
    config.save(config_path)  # 0600 from creation: it holds the cluster secret and requirepass
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"wrote {escape(str(config_path))}")

    stop = threading.Event()
    force = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            force.set()  # a second Ctrl-C: don't wait for the nodes
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    sup = Supervisor(config, config_path, echo=not quiet)
    exit_code = 0
    board: Any = None
    try:
        sup.start()
        ok, why = sup.wait_ready(time.monotonic() + start_timeout, stop)
        if not ok and not stop.is_set():
            err_console.print(f"[bold red]cluster did not start:[/] {escape(why)}")
            for node_id, code in sup.newly_exited():
                print_exit_report(sup, node_id, code)
            for node_id in sup.running():
                if not ping(config, config.nodes[node_id]):
                    err_console.print(f"last lines of {node_id}'s log:")
                    for line in sup.log_tail(node_id):
                        err_console.print(Text("  " + line, style="dim"))
            exit_code = FAILURE
            stop.set()
        if not stop.is_set() and modes.get(config.mode).elects_leader:
            sup.wait_leader(time.monotonic() + start_timeout, stop)
        if not stop.is_set():
            print_cluster_ready(config, config_path)
        if dashboard and not stop.is_set():
            board = start_up_dashboard(sup, dashboard_port)
        while not stop.is_set():
            stop.wait(0.25)
            if stop.is_set():
                break
            for node_id, code in sup.newly_exited():
                print_exit_report(sup, node_id, code)
                err_console.print(f"restart it alone with: replikv node --config "
                                  f"{escape(str(config_path))} --id {node_id}")
            if not sup.running() and board is None:  # with a dashboard, its restart button may bring them back
                err_console.print("[bold red]every node has exited; stopping[/]")
                exit_code = FAILURE
                break
    finally:
        if board is not None:
            board.stop()
        if sup.children:
            console.print("stopping nodes ...")
            killed = sup.stop(stop_timeout, force)
            if killed:
                err_console.print(f"[yellow]killed (did not exit within {stop_timeout:g}s):[/] "
                                  f"{', '.join(killed)}")
            console.print("all nodes stopped")
        for s, handler in previous.items():
            signal.signal(s, handler)
    raise typer.Exit(exit_code)


def start_up_dashboard(sup: Supervisor, port: int) -> Any:
    """`replikv up --dashboard`: the dashboard on its own thread, its buttons pulling sup's levers."""
    try:
        from replikv.dashboard.launch import serve_for_supervisor
    except ImportError as e:
        err_console.print(f"[bold red]no dashboard:[/] {escape(str(e))} (pip install aiohttp)")
        return None
    return serve_for_supervisor(sup, port)


@app.command()
def dashboard(
    config_path: Optional[Path] = typer.Option(
        None, "--config", "-c", help="cluster.toml of a running cluster to watch (signals from the "
        "buttons reach its nodes by the pid INFO reports; restart and link cuts need --playground)."),
    playground: bool = typer.Option(
        False, "--playground", help="Start a fresh cluster of its own (the `replikv check` harness) so "
        "every button works: kill, pause, resume, restart, and, as root, cut and heal links."),
    mode: Optional[str] = typer.Option(
        None, "--mode", help=f"--playground: replication mode ({', '.join(modes.names())}).", show_default=False),
    nodes: int = typer.Option(3, "--nodes", "-n", min=1, help="--playground: number of nodes."),
    shards: int = typer.Option(0, "--shards", min=0, help="--playground, raft: Raft groups (0: unsharded)."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", "-d", help="--playground: where the nodes keep their data (default: a "
        "temporary directory, removed at exit)."),
    port: int = typer.Option(DEFAULT_DASHBOARD_PORT, "--port", "-p", min=0, max=65535,
                             help="HTTP port on 127.0.0.1 (0: any free one)."),
) -> None:
    """Serve a live web page of a cluster and a playground that breaks it (on 127.0.0.1).

    Every node's role, term, leader, log positions, lag, ops/s and latency, pushed over a
    WebSocket; a timeline of elections, failovers and faults; buttons to kill, pause, resume and
    restart nodes and cut links; a panel that writes a key and reads it from every node at every
    read level of the mode. Ctrl-C stops it (and a --playground cluster).
    """
    if (config_path is None) == (not playground):
        fail("give either --config DIR/cluster.toml (watch a running cluster) or --playground "
             "(start one of its own)")
    try:
        from replikv.dashboard.launch import serve_command
    except ImportError as e:
        fail(f"the dashboard needs aiohttp ({e}); pip install aiohttp", FAILURE)
    serve_command(config_path=config_path, playground=playground, mode=mode, nodes=nodes, shards=shards,
                  data_dir=data_dir, port=port)


@app.command()
def node(
    config_path: Path = typer.Option(..., "--config", "-c", help="The cluster's cluster.toml."),
    node_id: str = typer.Option(..., "--id", help="Which node of the cluster to run, e.g. n2."),
    peer_delay_ms: Optional[int] = typer.Option(
        None, "--peer-delay-ms", show_default=False,
        help="Override cluster.toml's peer_delay_ms for this node's sends (injected latency, one way)."),
    peer_jitter_ms: Optional[int] = typer.Option(
        None, "--peer-jitter-ms", show_default=False,
        help="Override cluster.toml's peer_jitter_ms for this node's sends."),
) -> None:
    """Run one node of a cluster in the foreground (until SIGTERM / Ctrl-C).
    ``python -m replikv node`` runs the same without this module (replikv/node_main.py)."""
    try:
        code = run_node_command(config_path, node_id, peer_delay_ms, peer_jitter_ms)
    except ConfigError as e:
        fail(str(e))
    raise typer.Exit(code)


@app.command()
def repair(
    config_path: Path = typer.Option(..., "--config", "-c", help="The cluster's cluster.toml."),
    node_id: str = typer.Option(..., "--id", help="The node whose write-ahead log to repair (stopped)."),
    yes: bool = typer.Option(False, "--yes", help="Carry the repair out (without it: only say what it would do)."),
) -> None:
    """Truncate a damaged write-ahead log at its first damage, saying what that discards.

    A node refuses to start on a damaged log (a bad checksum in a complete
    record, an emptied or missing segment): it never drops data by itself.
    Run this on the stopped node; without --yes nothing is changed. The
    entries discarded may include acknowledged writes: in a replicated
    cluster, wiping the node's data directory and letting it resynchronise
    from the others is often the better repair.
    """
    from replikv.storage.errors import StorageError
    from replikv.storage.wal import WriteAheadLog, apply_repair, plan_repair

    config = load_config(config_path)
    try:
        address = config.node(node_id)
    except ConfigError as e:
        fail(str(e))
    wal_dir = Path(address.data_dir) / "wal"
    if not wal_dir.is_dir():
        fail(f"{wal_dir} does not exist: nothing to repair", FAILURE)
    try:
        WriteAheadLog(wal_dir)._redo_intent()  # finish an interrupted truncate or reset first
        plan = plan_repair(wal_dir)
    except StorageError as e:
        fail(f"cannot repair {wal_dir}: {e}", FAILURE)
    if plan is None:
        console.print(f"{wal_dir}: no damage found; nothing to repair")
        return
    for line in plan.describe():
        console.print(line)
    if not yes:
        console.print("nothing changed; run again with --yes to carry this out")
        raise typer.Exit(FAILURE)
    apply_repair(wal_dir, plan)
    console.print(f"repaired {wal_dir}; node {node_id} can be started")


@app.command()
def status(
    config_path: Path = typer.Option(..., "--config", "-c", help="The cluster's cluster.toml."),
    timeout: float = typer.Option(0.5, "--timeout", min=0.05,
                                  help="Seconds to wait for each node before calling it down."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show each node's role, epoch, log offset and lag ("down" if unreachable).

    Exits 0 when every node answered, 1 when any is down.
    """
    config = load_config(config_path)
    statuses = collect_status(config, timeout)
    if as_json:
        print(json.dumps([dataclasses.asdict(s) for s in statuses], indent=2))
    else:
        console.print(status_table(statuses))
        heads = leaders(statuses)
        if any(s.groups for s in statuses):  # sharded raft: a leader per group, shown per group
            console.print(groups_table(statuses))
        elif len(heads) > 1:
            err_console.print(f"[bold yellow]warning:[/] more than one node says it leads: "
                              f"{', '.join(heads)} (the one with the highest epoch wins)")
        elif not heads:
            err_console.print("[yellow]no reachable node says it is the leader[/]")
    raise typer.Exit(0 if all(s.state == "up" for s in statuses) else FAILURE)


@app.command()
def reshard(
    config_path: Path = typer.Option(..., "--config", "-c", help="The cluster's cluster.toml."),
    slots: str = typer.Option(..., "--slots", help="The hash slots to move, e.g. 0-1000 or 0-99,200."),
    to: int = typer.Option(..., "--to", help="The Raft group to move them to (see replikv status)."),
    timeout: float = typer.Option(120.0, "--timeout", min=1.0, help="Seconds to wait for the move."),
) -> None:
    """Move hash slots to another group of a sharded raft cluster (--shards), online.

    The source group freezes the slots (their writes answer TRYAGAIN for the moment), the
    target group takes their keys, the source drops them and the target serves them."""
    config = load_config(config_path)
    node = next(iter(config.nodes.values()))
    client = node_client(config, node, timeout)
    try:
        reply = client.execute_command("REPLIKV", "RESHARD", slots, str(to))
    except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
        fail(f"{node.id} at {node.host}:{node.port} did not answer ({e})", FAILURE)
    except redis.ResponseError as e:
        fail(f"reshard refused: {e}", FAILURE)
    finally:
        client.close()
    console.print(f"[bold green]slots {escape(slots)} moved to group {to}[/] ({escape(str(reply))})")
    console.print(groups_table(collect_status(config)))


@app.command()
def failover(
    config_path: Path = typer.Option(..., "--config", "-c", help="The cluster's cluster.toml."),
    to: str = typer.Option(..., "--to", help="The node to promote, e.g. n2."),
    force: bool = typer.Option(False, "--force", help="Promote even if the current leader is "
                               "unreachable (writes it had not shipped can be lost)."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1,
                                  help="Seconds to wait for the failover to finish."),
) -> None:
    """Promote a node to leader (sends FAILOVER TO <node> [FORCE] to that node)."""
    config = load_config(config_path)
    try:
        target = config.node(to)
    except ConfigError as e:
        fail(str(e))
    command = ["FAILOVER", "TO", to] + (["FORCE"] if force else [])
    client = node_client(config, target, timeout)
    try:
        reply = client.execute_command(*command)
    except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
        fail(f"{to} at {target.host}:{target.port} did not answer ({e}); is it running? "
             f"(replikv node --config {config_path} --id {to})", FAILURE)
    except redis.ResponseError as e:
        err_console.print(f"[bold red]failover to {escape(to)} refused:[/] {escape(str(e))}")
        console.print(status_table(collect_status(config)))
        raise typer.Exit(FAILURE)
    finally:
        client.close()
    console.print(f"[bold green]{escape(' '.join(command))}[/] -> {escape(str(reply))}")
    # The reply can come before every node has heard of the new epoch: give
    # the table a moment to show the settled state.
    deadline = time.monotonic() + min(timeout, 5.0)
    statuses = collect_status(config)
    while time.monotonic() < deadline and leaders(statuses) != [to]:
        time.sleep(0.1)
        statuses = collect_status(config)
    console.print(status_table(statuses))
    if to not in leaders(statuses):
        err_console.print(f"[yellow]{escape(to)} does not report itself leader yet[/]")
        raise typer.Exit(FAILURE)


cluster_app = typer.Typer(help="Membership: add or remove a node, one at a time (raft: a learner, then a voter; "
                               "sharded raft: the node joins hosting no group, see replikv rebalance, and a "
                               "removed node's replicas move away first; leaderless: a new ring epoch, with the "
                               "moving ranges streamed).",
                          no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")


def _require_membership(config: ClusterConfig, verb: str) -> None:
    if not modes.get(config.mode).membership:
        having = [s.name for s in modes.specs() if s.membership]
        fail(f"replikv cluster {verb} needs a cluster whose mode changes membership "
             f"({', '.join(having)}); this one runs {config.mode}")


def _membership_command(config: ClusterConfig, skip: str, *args: str, timeout_s: float) -> Any:
    """Send REPLIKV CLUSTER ... to the first reachable node other than ``skip``
    (a follower forwards it to the leader)."""
    last: Exception | None = None
    for node in config.nodes.values():
        if node.id == skip:
            continue
        client = node_client(config, node, timeout_s)
        try:
            return client.execute_command("REPLIKV", "CLUSTER", *args)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            last = e
        finally:
            client.close()
    fail(f"no node of the cluster answered ({last})", FAILURE)


@cluster_app.command("add")
def cluster_add(
    config_path: Path = typer.Option(..., "--config", "-c", help="The cluster's cluster.toml."),
    node_id: str = typer.Option(..., "--id", help="The new node's id, e.g. n4 (raft: its number is its Raft id)."),
    addr: str = typer.Option("", "--addr", help="host:port for its RESP clients (peers on port+10000); "
                                                "default: the first node's host and --port."),
    port_opt: int = typer.Option(0, "--port", min=0, max=65535,
                                 help="Its RESP port when --addr is not given (default: the highest port + 1)."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.0,
                                  help="Seconds to wait for the node to catch up (raft: be promoted; leaderless: "
                                       "receive its ranges) (0: start the change and return)."),
) -> None:
    """Add a node: write it into cluster.toml, tell the cluster, wait until it is a full member.

    raft: added as a learner, promoted once caught up. sharded raft (--shards): the node joins
    hosting no group (it serves clients by forwarding/MOVED); `replikv rebalance` gives it replicas.
    leaderless: a new ring epoch with the node's
    ranges pending; writes go to old and new owners while the old owners stream the ranges; then
    the ring switches. Start the new node (replikv node --config ... --id <id>) while this waits:
    this command does not start it.
    """
    config = load_config(config_path)
    _require_membership(config, "add")
    if node_id in config.nodes:
        fail(f"{node_id} is already in {config_path}")
    first = next(iter(config.nodes.values()))
    if not addr:
        taken = {n.port for n in config.nodes.values()}
        addr = f"{first.host}:{port_opt or max(taken) + 1}"
    host, _, port_text = addr.rpartition(":")
    if not host or not port_text.isdigit():
        fail(f"--addr must be host:port (got {addr!r})")
    port = int(port_text)
    data_root = Path(first.data_dir).parent
    if not config.bootstrap:
        config.bootstrap = list(config.nodes)  # the new node must not count as a founding voter
    config.nodes[node_id] = NodeAddress(id=node_id, host=host, port=port, peer_port=port + PEER_PORT_OFFSET,
                                        data_dir=str(data_root / node_id))
    try:
        config.validate()
    except ConfigError as e:
        fail(str(e))
    config.save(config_path)
    if config.options.shards:  # sharded raft: the node joins hosting no group (replikv rebalance)
        told = _tell_every_node(config, node_id, "REPLIKV", "CLUSTER", "ADD", node_id)
        console.print(f"{escape(node_id)} joins hosting no group ({told} node(s) told); start it with: "
                      f"replikv node --config {config_path} --id {escape(node_id)}, then give it groups "
                      f"with: replikv rebalance --config {config_path}")
        return
    try:
        reply = _membership_command(config, node_id, "ADD", node_id, timeout_s=10)
    except redis.ResponseError as e:
        fail(f"adding {node_id} refused: {e}", FAILURE)
    console.print(f"{escape(node_id)} is joining ({_text(reply)}); start it with: "
                  f"replikv node --config {config_path} --id {escape(node_id)}")
    if timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            _membership_command(config, node_id, "PROMOTE", node_id, timeout_s=10)
            console.print(f"[bold green]{escape(node_id)} is a full member[/]")
            return
        except redis.ResponseError as e:
            if time.monotonic() > deadline:
                fail(f"{node_id} was not promoted within {timeout} s: {e}", FAILURE)
        time.sleep(0.2)


@cluster_app.command("remove")
def cluster_remove(
    config_path: Path = typer.Option(..., "--config", "-c", help="The cluster's cluster.toml."),
    node_id: str = typer.Option(..., "--id", help="The node to remove, e.g. n2."),
    timeout: float = typer.Option(120.0, "--timeout", min=0.0,
                                  help="leaderless: seconds to wait for the node's ranges to reach their new "
                                       "owners."),
) -> None:
    """Remove a node from the membership, then from cluster.toml (stop it afterwards).

    sharded raft: a rebalance over the other nodes moves the node's replicas away first (its data
    is dropped), then it leaves cluster.toml.
    leaderless: the node streams each of its ranges to its new owner first (the cluster refuses to go
    below --replicas nodes); this waits until the ring has switched.
    """
    config = load_config(config_path)
    _require_membership(config, "remove")
    try:
        config.node(node_id)
    except ConfigError as e:
        fail(str(e))
    if config.options.shards:  # sharded raft: move the node's replicas away first, then drop it
        _run_rebalance(config, [n for n in config.nodes if n != node_id], timeout)
        reply = "its replicas moved to the other nodes"
    else:
        try:
            reply = _membership_command(config, node_id, "REMOVE", node_id, timeout_s=10)
        except redis.ResponseError as e:
            fail(f"removing {node_id} refused: {e}", FAILURE)
    deadline = time.monotonic() + timeout
    while not config.options.shards:  # a mode that streams answers WAIT with TRYAGAIN until the change is over
        try:
            _membership_command(config, node_id, "WAIT", node_id, timeout_s=10)
            break
        except redis.ResponseError as e:
            if not (isinstance(e, redis.exceptions.TryAgainError) or str(e).startswith("TRYAGAIN")):
                break  # this mode has nothing to wait for (raft: the removal is committed)
            if time.monotonic() > deadline:
                fail(f"{node_id} was not removed within {timeout} s: {e}", FAILURE)
        time.sleep(0.2)
    if not config.bootstrap:
        config.bootstrap = list(config.nodes)
    del config.nodes[node_id]
    config.bootstrap = [n for n in config.bootstrap if n != node_id]
    if config.initial_leader == node_id:
        config.initial_leader = next(iter(config.nodes))
    config.save(config_path)
    console.print(f"{escape(node_id)} removed ({_text(reply)}); you may stop its process now")


def _tell_every_node(config: ClusterConfig, skip: str, *argv: str) -> int:
    """Send ``argv`` to every reachable node but ``skip``; how many answered OK."""
    told = 0
    for node in config.nodes.values():
        if node.id == skip:
            continue
        client = node_client(config, node, 5.0)
        try:
            client.execute_command(*argv)
            told += 1
        except redis.RedisError as e:
            err_console.print(f"[yellow]{escape(node.id)}: {escape(str(e))}[/]")
        finally:
            client.close()
    return told


def _cluster_placement(config: ClusterConfig) -> tuple[dict[int, tuple[str, ...]], dict[int, str]]:
    """Every group's members (preferred leader first) and leader, each as the group's leader
    reports it (its Raft configuration is the newest), else as a node hosting it does."""
    best: dict[int, tuple[int, tuple[str, ...], str]] = {}
    for node in config.nodes.values():
        client = node_client(config, node, 5.0)
        try:
            rows = client.execute_command("REPLIKV", "PLACEMENT")
        except redis.RedisError:
            continue
        finally:
            client.close()
        for g, members, leader, hosted, leading in rows:
            rank = 2 * int(leading) + int(hosted)
            if int(g) not in best or rank > best[int(g)][0]:
                best[int(g)] = (rank, tuple(_text(m) for m in members), _text(leader))
    if not best:
        fail("no node of the cluster answered REPLIKV PLACEMENT", FAILURE)
    return {g: b[1] for g, b in best.items()}, {g: b[2] for g, b in best.items()}


def _group_command(config: ClusterConfig, deadline: float, *argv: str, done_if: str = "",
                   at: str = "") -> Any:
    """REPLIKV GROUP ... on a node (``at``, else any: it forwards to the group's leader), again
    while the cluster answers TRYAGAIN, until ``deadline``; an error containing ``done_if`` is
    success (a retried change that had been made)."""
    from replikv.rebalance_lease import NoAnswer, call_any_node

    nodes = [config.nodes[at]] if at else list(config.nodes.values())
    try:
        return call_any_node(lambda: [node_client(config, node, 10.0) for node in nodes], deadline,
                             "REPLIKV", "GROUP", *argv, done_if=done_if)
    except redis.ResponseError as e:
        fail(f"REPLIKV GROUP {' '.join(argv)} refused: {e}", FAILURE)
    except NoAnswer as e:
        fail(f"REPLIKV GROUP {' '.join(argv)} did not succeed in time: {e}", FAILURE)


def _run_rebalance(config: ClusterConfig, nodes: list[str], timeout: float, parallel: int = 2) -> None:
    """Carry out placement.rebalance over ``nodes`` (core/sharding/placement.py), step by step."""
    from replikv.rebalance_lease import LeaseError, RebalanceLease

    lease = RebalanceLease(lambda: [node_client(config, n, 10.0) for n in config.nodes.values()])
    try:
        lease.acquire()  # one rebalance at a time (rebalance_lease.py); the plan is made under it
        _rebalance_steps(config, nodes, timeout, lease, parallel)
    except LeaseError as e:
        fail(str(e), FAILURE)
    finally:
        lease.release()


def _rebalance_step(config: ClusterConfig, deadline: float, step: Any) -> None:
    """One step of a group's move (core/sharding/placement.py ``rebalance_steps``), retried while
    the cluster answers TRYAGAIN, until ``deadline``."""
    g = str(step.group)
    console.print(f"group {g}: {step.op.replace('_', ' ')} {escape(step.node)}")
    if step.op == "add_learner":
        _group_command(config, deadline, g, "ADD", step.node, done_if="already a member")
    elif step.op == "promote":  # refused (TRYAGAIN) until the learner holds the committed log
        _group_command(config, deadline, g, "PROMOTE", step.node, done_if="is not a learner")
    elif step.op == "transfer":
        _group_command(config, deadline, g, "PREFER", step.node)  # in the group's log
        while True:
            _group_command(config, deadline, g, "TRANSFER", step.node)
            wait_until = min(deadline, time.monotonic() + 5)
            while time.monotonic() < wait_until and _cluster_placement(config)[1].get(step.group) != step.node:
                time.sleep(0.2)
            if _cluster_placement(config)[1].get(step.group) == step.node:
                break
            if time.monotonic() > deadline:
                fail(f"group {g}: {step.node} did not take the leadership in time", FAILURE)
    else:
        index = _group_command(config, deadline, g, "REMOVE", step.node, done_if="is not a member")
        if index is not None:
            try:
                _group_command(config, deadline, g, "DROP", str(index), at=step.node)
            except typer.Exit:
                err_console.print(f"[yellow]{escape(step.node)} did not drop its replica of group {g}; "
                                  "it does when it next asks the group's members[/]")


def _rebalance_steps(config: ClusterConfig, nodes: list[str], timeout: float, lease: Any, parallel: int) -> None:
    from replikv.core.sharding.placement import PlacementError, rebalance, rebalance_steps

    placement, _leaders = _cluster_placement(config)
    try:
        plan = rebalance(placement, nodes)
    except PlacementError as e:
        fail(str(e))
    steps = rebalance_steps(plan)
    if not steps:
        console.print("the groups are balanced already: nothing to move")
        return
    console.print(f"{len(plan.moves)} replica move(s), {len(plan.leader_changes)} leader change(s)")
    deadline = time.monotonic() + (timeout or 3600)
    chains: dict[int, list[Any]] = {}  # each group's steps, in order; groups move side by side
    for step in steps:
        chains.setdefault(step.group, []).append(step)
    stopped = threading.Event()  # a chain failed: the others stop before their next step

    def run_chain(chain: list[Any]) -> None:
        try:
            for step in chain:
                if stopped.is_set():
                    return
                lease.check()
                _rebalance_step(config, deadline, step)
        except BaseException:
            stopped.set()
            raise

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="rebalance") as pool:
        for future in [pool.submit(run_chain, chain) for chain in chains.values()]:
            future.result()
    console.print("[bold green]rebalanced[/]")


@app.command()
def rebalance(
    config_path: Path = typer.Option(..., "--config", "-c", help="The cluster's cluster.toml."),
    timeout: float = typer.Option(600.0, "--timeout", min=0.0, help="Seconds for the whole rebalance."),
    parallel: int = typer.Option(2, "--parallel", min=1, help="Groups moved at once (each new replica "
                                 "receives a snapshot: more at once means more memory and disk traffic)."),
) -> None:
    """Sharded raft: spread the groups' replicas and preferred leaders over the cluster's nodes.

    Computes the smallest set of replica moves that balances replicas and leaders over the nodes
    in cluster.toml (after `replikv cluster add`), then carries it out group by group: the new
    member is added as a learner, promoted once caught up (it receives a snapshot), leadership
    moves to the group's preferred leader, and the old member is removed and drops its data;
    --parallel groups move at once. One rebalance runs at a time: it holds the lock
    `replikv:rebalance` (LOCK, with a 30 s lease it renews) while it plans and moves; another
    is refused meanwhile.
    """
    config = load_config(config_path)
    if not config.options.shards:
        fail("replikv rebalance moves the Raft groups of a sharded cluster (--shards); this one has one group")
    _run_rebalance(config, list(config.nodes), timeout, parallel)


def _text(reply: Any) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sim(ctx: typer.Context) -> None:
    """Run the deterministic simulator: `python -m replikv.sim ARGS...`.

    Every argument is passed through; `replikv sim -- --help` shows the
    simulator's own help.
    """
    try:
        spec = importlib.util.find_spec("replikv.sim.__main__")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        fail("the simulator (python -m replikv.sim) is not available in this build yet")
    raise typer.Exit(subprocess.call([sys.executable, "-m", "replikv.sim", *ctx.args]))


app.command(name="check")(check_main)


@app.command()
def version() -> None:
    """Print the replikv version."""
    print(f"replikv {__version__}")


if __name__ == "__main__":
    main()
