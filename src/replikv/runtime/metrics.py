"""Prometheus metrics: ``GET /metrics`` on a node's ``metrics_port`` (issue 16).

One source of truth: what a node reports in INFO (each runtime's ``info()``:
the stats, replication, persistence, memory, commandstats and keyspace
sections every mode fills with its own counters) is read at scrape time and
written out under Prometheus's names and types, as redis_exporter does for
Redis; only what INFO cannot carry is kept here: a latency histogram per
command class (``CommandLatency``, fed by ``BaseRunner.execute`` only when a
metrics port is set) and the WAL's fsync latency buckets
(``WriteAheadLog.fsync_buckets``).

Names (Prometheus conventions): the ``replikv_`` prefix, ``_total`` for
counters, ``_seconds`` and ``_bytes`` in base units, labels ``node`` and
``mode`` on ``replikv_node_info``; ``command``, ``class``, ``peer`` where the
figure is per command, command class or peer:

- ``replikv_node_info{node,mode,role,version}`` 1; ``replikv_up`` 1;
  ``replikv_is_leader`` 1 or 0 (every node of a leaderless or multi-leader
  cluster takes writes: 1);
- ``replikv_commands_total{command}``, ``replikv_command_errors_total{command}``,
  ``replikv_command_duration_seconds_total{command}`` (INFO commandstats);
  ``replikv_command_duration_seconds_by_class{class}`` (histogram: read, write, other);
- ``replikv_term`` (raft term, leader-follower epoch), ``replikv_commit_index``,
  ``replikv_applied_index``, ``replikv_log_index``, ``replikv_snapshot_index``;
  ``replikv_peer_lag_entries{peer}`` (the leader's view of each follower, a
  multi-leader node's of each peer), ``replikv_peer_lag_seconds{peer}``
  (leader-follower and raft leaders), ``replikv_replication_lag_seconds`` (a follower's
  staleness);
- ``replikv_wal_bytes``, ``replikv_wal_fsyncs_total``,
  ``replikv_wal_fsync_duration_seconds`` (histogram);
- every other numeric INFO stats field, as ``replikv_<field>_total`` (a
  counter: the mode's own counters, e.g. elections, snapshots taken, read
  repairs, hints delivered, Paxos rounds, transactions committed) or, for the
  few that go up and down, ``replikv_<field>`` (a gauge: ``GAUGES``);
  replication fields that count things now (state transfers in flight, ops
  waiting, hints held, tombstones) as gauges, and the leaderless replica's
  repair counters (read repairs, hints stored and delivered, anti-entropy
  rounds and keys repaired, tombstones collected) as ``_total`` counters;
- sharded raft: ``replikv_group_term{group}``, ``replikv_group_commit_index``,
  ``replikv_group_applied_index``, ``replikv_group_keys``, ``replikv_group_is_leader``,
  ``replikv_group_quiesced``; transactions committed/aborted and the lock
  service's counters come with the stats section;
- ``replikv_memory_used_bytes``, ``replikv_memory_rss_bytes``,
  ``replikv_keys``, ``replikv_connected_clients``.

The HTTP side is deliberately small (one request per connection, ``GET`` of
``/metrics`` only, request head at most 8 KiB, answered on the node's loop so
no thread reads state the loop is changing); prometheus_client renders the
text format and is imported only when a port is set (a node's start-up is
timed, issue 15).
"""

from __future__ import annotations

import asyncio
import logging
import re
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from replikv.storage.wal import FSYNC_BUCKETS_S

if TYPE_CHECKING:
    from replikv.runtime.base import BaseRunner

__all__ = ["LATENCY_BUCKETS_S", "CommandLatency", "MetricsServer", "families"]

log = logging.getLogger("replikv.metrics")

LATENCY_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                     0.5, 1.0)
_LATENCY_NS = tuple(int(b * 1e9) for b in LATENCY_BUCKETS_S)
CLASSES = ("read", "write", "other")
MAX_REQUEST_HEAD = 8192
# stats fields that go up and down (the rest of the stats section are counters)
GAUGES = frozenset({"pubsub_channels", "pubsub_patterns", "replikv_peers_connected", "connected_clients",
                    "blocked_clients", "instantaneous_ops_per_sec"})
# replication fields exported as they are (gauges), beyond the ones named in the docstring
REPLICATION_GAUGES = ("replikv_groups_hosted", "replikv_groups_led", "replikv_groups_quiesced",
                      "replikv_state_transfers_out", "replikv_state_transfers_in", "replikv_state_chunks_queued",
                      "replikv_ops_waiting_for_deps", "replikv_keys_awaiting_ops", "replikv_hints_pending",
                      "connected_slaves", "replikv_follower_logs_lost", "replikv_hints_held", "replikv_tombstones",
                      "replikv_keys_held", "replikv_requests_in_flight")
# replication fields that only grow (leaderless: the replica's repair and anti-entropy counters;
# multi-leader: duplicates dropped)
REPLICATION_COUNTERS = ("replikv_read_repairs", "replikv_hints_stored", "replikv_hints_delivered",
                        "replikv_hints_dropped", "replikv_tombstones_collected", "replikv_states_joined",
                        "replikv_ae_rounds", "replikv_ae_groups_in_sync", "replikv_ae_keys_repaired",
                        "replikv_bad_states", "replikv_keys_streamed", "replikv_streams_done",
                        "replikv_keys_forwarded", "replikv_keys_cleaned", "replikv_speculative_retries",
                        "replikv_ops_received_twice", "replikv_deltas_applied", "replikv_deltas_missing_base",
                        "replikv_write_batches", "replikv_batched_writes", "replikv_paxos_fenced")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class CommandLatency:
    """Per command class: counts per ``LATENCY_BUCKETS_S`` upper bound (the last: above
    them all) and the sum, in nanoseconds as measured by ``BaseRunner.execute``."""

    __slots__ = ("buckets", "sums")

    def __init__(self) -> None:
        self.buckets = {c: [0] * (len(_LATENCY_NS) + 1) for c in CLASSES}
        self.sums = dict.fromkeys(CLASSES, 0)

    def observe(self, cls: str, ns: int) -> None:
        self.buckets[cls][bisect_left(_LATENCY_NS, ns)] += 1
        self.sums[cls] += ns

    def observe_run(self, cls: str, ns: int, count: int) -> None:
        """``count`` commands timed together in ``ns`` (a pipelined run): each at the mean."""
        self.buckets[cls][bisect_left(_LATENCY_NS, ns // count)] += count
        self.sums[cls] += ns


def parse_info(text: str) -> dict[str, dict[str, str]]:
    """INFO's text as ``{section: {field: value}}`` (sections lower-cased)."""
    out: dict[str, dict[str, str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line[1:].strip().lower()
            out.setdefault(section, {})
        elif ":" in line:
            key, _, value = line.partition(":")
            out.setdefault(section, {})[key] = value
    return out


def _fields(value: str) -> dict[str, str]:
    """``a=1,b=2`` (commandstats, slaveN, peerN, keyspace) as a dict."""
    return dict(part.split("=", 1) for part in value.split(",") if "=" in part)


def _num(value: str) -> float | None:
    return float(value) if _NUMBER.match(value) else None


def _name(field: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", field.removeprefix("replikv_"))


def families(node: BaseRunner) -> Iterator[Any]:
    """The node's metric families now (prometheus_client's core types), from its INFO."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    info = parse_info(node.info(["everything"]))
    server, rep = info.get("server", {}), info.get("replication", {})
    stats, pers, mem = info.get("stats", {}), info.get("persistence", {}), info.get("memory", {})
    role = rep.get("replikv_raft_role") or rep.get("role", "")
    fam = GaugeMetricFamily("replikv_node_info", "The node: its id, mode, role now and version.",
                            labels=["node", "mode", "role", "version"])
    fam.add_metric([node.id, node.config.mode, role, server.get("replikv_version", "")], 1)
    yield fam
    yield GaugeMetricFamily("replikv_up", "1: the node answered this scrape.", value=1)
    yield GaugeMetricFamily("replikv_is_leader", "1 where this node takes writes now (a leader, or any node "
                            "of a leaderless or multi-leader cluster).", value=1 if node.is_leader else 0)

    calls = CounterMetricFamily("replikv_commands", "Commands run, by command.", labels=["command"])
    errors = CounterMetricFamily("replikv_command_errors", "Commands refused or failed, by command.",
                                 labels=["command"])
    spent = CounterMetricFamily("replikv_command_duration_seconds", "Time spent running each command.",
                                labels=["command"])
    for key, value in info.get("commandstats", {}).items():
        f = _fields(value)
        command = key.removeprefix("cmdstat_")
        calls.add_metric([command], float(f.get("calls", 0)))
        errors.add_metric([command], float(f.get("rejected_calls", 0)) + float(f.get("failed_calls", 0)))
        spent.add_metric([command], float(f.get("usec", 0)) / 1e6)
    yield calls
    yield errors
    yield spent
    if node.latency is not None:
        hist = HistogramMetricFamily("replikv_command_duration_seconds_by_class",
                                     "Command latency on the node, by class (read, write, other).",
                                     labels=["class"])
        for cls in CLASSES:
            yield_buckets = _cumulative(node.latency.buckets[cls], LATENCY_BUCKETS_S)
            hist.add_metric([cls], yield_buckets, node.latency.sums[cls] / 1e9)
        yield hist

    for src, name, help_text in (
            ("replikv_epoch", "term", "Raft term, or leader-follower epoch."),
            ("replikv_commit_index", "commit_index", "Highest log index known committed."),
            ("replikv_applied_index", "applied_index", "Highest log index applied to the data set."),
            ("master_repl_offset", "log_index", "The node's replication offset (last log index)."),
            ("replikv_lag_ops", "lag_entries", "A follower's entries behind its leader.")):
        value = _num(rep.get(src, ""))
        if value is not None:
            yield GaugeMetricFamily(f"replikv_{name}", help_text, value=value)
    lag_ms = _num(rep.get("replikv_lag_ms", ""))
    if lag_ms is not None and lag_ms >= 0:
        yield GaugeMetricFamily("replikv_replication_lag_seconds", "A follower's staleness behind its leader.",
                                value=lag_ms / 1000)
    peers = GaugeMetricFamily("replikv_peer_lag_entries", "Entries (operations) a peer lacks, as this node "
                              "sees it (a leader: each follower).", labels=["peer"])
    peer_seconds = GaugeMetricFamily("replikv_peer_lag_seconds", "How far behind a follower is, in time, as "
                                     "its leader sees it (leader-follower, raft).", labels=["peer"])
    for key, value in rep.items():
        if re.fullmatch(r"(slave|peer)\d+", key):
            f = _fields(value.replace(";", ","))
            lag = _num(f.get("lag_ops", ""))
            if lag is not None and "id" in f:
                peers.add_metric([f["id"]], lag)
            lag_ms = _num(f.get("lag_ms", ""))
            if lag_ms is not None and lag_ms >= 0 and "id" in f:
                peer_seconds.add_metric([f["id"]], lag_ms / 1000)
    yield peers
    yield peer_seconds
    groups = {int(k[5:]): _fields(v) for k, v in rep.items() if re.fullmatch(r"group\d+", k)}
    if groups:  # sharded raft: each Raft group this node hosts
        per_group = {name: GaugeMetricFamily(f"replikv_group_{name}", f"Each hosted Raft group's {what}.",
                                             labels=["group"])
                     for name, what in (("term", "term"), ("commit_index", "commit index"),
                                        ("applied_index", "applied index"), ("keys", "keys"),
                                        ("is_leader", "leadership here (1: this node leads it)"),
                                        ("quiesced", "quiescence (1: idle, not ticking)"))}
        for g, f in sorted(groups.items()):
            label = [str(g)]
            for name, src in (("term", "term"), ("commit_index", "commit"), ("applied_index", "applied"),
                              ("keys", "keys"), ("quiesced", "quiesced")):
                number = _num(f.get(src, ""))
                if number is not None:
                    per_group[name].add_metric(label, number)
            per_group["is_leader"].add_metric(label, 1 if f.get("role") == "leader" else 0)
        yield from per_group.values()
    for key in REPLICATION_GAUGES:
        value = _num(rep.get(key, ""))
        if value is not None:
            yield GaugeMetricFamily(f"replikv_{_name(key)}", f"INFO replication {key}.", value=value)
    for key in REPLICATION_COUNTERS:
        value = _num(rep.get(key, ""))
        if value is not None:
            yield CounterMetricFamily(f"replikv_{_name(key)}", f"INFO replication {key}.", value=value)

    for key, value in stats.items():
        number = _num(value)
        if number is None:
            continue
        if key in GAUGES:
            yield GaugeMetricFamily(f"replikv_{_name(key)}", f"INFO stats {key}.", value=number)
        else:
            yield CounterMetricFamily(f"replikv_{_name(key).removesuffix('_total')}", f"INFO stats {key}.",
                                      value=number)

    for src, name, kind in (("replikv_wal_bytes", "wal_bytes", "gauge"),
                            ("replikv_snapshot_index", "snapshot_index", "gauge"),
                            ("replikv_wal_fsyncs", "wal_fsyncs", "counter"),
                            ("replikv_snapshots_in_background", "snapshots_in_background", "counter")):
        value = _num(pers.get(src, ""))
        if value is not None:
            family = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            yield family(f"replikv_{name}", f"INFO persistence {src}.", value=value)
    wal = getattr(node, "wal", None)
    if wal is not None:
        fsync = HistogramMetricFamily("replikv_wal_fsync_duration_seconds", "How long the WAL's fsyncs took.")
        fsync.add_metric([], _cumulative(list(wal.fsync_buckets), FSYNC_BUCKETS_S), wal.fsync_seconds)
        yield fsync

    for src, name in (("used_memory", "memory_used_bytes"), ("used_memory_rss", "memory_rss_bytes")):
        value = _num(mem.get(src, ""))
        if value is not None:
            yield GaugeMetricFamily(f"replikv_{name}", f"INFO memory {src}.", value=value)
    keys = sum(float(_fields(v).get("keys", 0)) for v in info.get("keyspace", {}).values())
    yield GaugeMetricFamily("replikv_keys", "Keys the node holds.", value=keys)
    clients = _num(info.get("clients", {}).get("connected_clients", ""))
    if clients is not None:
        yield GaugeMetricFamily("replikv_connected_clients", "Client connections open.", value=clients)


def _cumulative(counts: list[int], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    """Prometheus histogram buckets (cumulative, ``+Inf`` last) from per-bucket counts."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip(bounds, counts):
        total += count
        out.append((repr(bound), float(total)))
    out.append(("+Inf", float(total + counts[-1])))
    return out


class _Collector:
    def __init__(self, node: BaseRunner) -> None:
        self.node = node

    def collect(self) -> Iterator[Any]:
        return families(self.node)


class _MetricsHttp(asyncio.Protocol):
    """One HTTP/1.x request: ``GET /metrics`` answered, anything else refused; then closed."""

    def __init__(self, server: MetricsServer) -> None:
        self.server = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" not in self.buf and b"\n\n" not in self.buf:
            if len(self.buf) > MAX_REQUEST_HEAD:
                self._answer(431, "Request Header Fields Too Large", b"request head too large\n")
            return
        parts = self.buf.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._answer(400, "Bad Request", b"not an HTTP/1.x request\n")
        elif parts[0] not in (b"GET", b"HEAD"):
            self._answer(405, "Method Not Allowed", b"GET /metrics only\n")
        elif parts[1].split(b"?", 1)[0] != b"/metrics":
            self._answer(404, "Not Found", b"GET /metrics only\n")
        else:
            try:
                body = self.server.render()
            except Exception:  # a bug must not take the node down
                log.exception("rendering /metrics failed")
                self._answer(500, "Internal Server Error", b"rendering the metrics failed\n")
                return
            self._answer(200, "OK", body, head_only=parts[0] == b"HEAD",
                         content_type="text/plain; version=0.0.4; charset=utf-8")

    def _answer(self, code: int, reason: str, body: bytes, head_only: bool = False,
                content_type: str = "text/plain; charset=utf-8") -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        head = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        transport.write(head if head_only else head + body)
        transport.close()
        self.buf = b""


class MetricsServer:
    """The node's ``/metrics`` listener (on its loop, beside the RESP server)."""

    def __init__(self, node: BaseRunner) -> None:
        from prometheus_client import CollectorRegistry

        self.node = node
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(node))  # type: ignore[arg-type]
        self.server: asyncio.AbstractServer | None = None

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _MetricsHttp(self), host, port, reuse_address=True)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
