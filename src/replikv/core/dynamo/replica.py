"""One leaderless node, pure: its replica of the keys it owns, the requests
it coordinates, the hints it holds and its anti-entropy sessions (Dynamo
§4.5-4.7; Cassandra's coordinator, hints and repair). The runtime
(``runtime/leaderless.py``) and the simulator (``sim/leaderless_driver.py``)
drive the same object.

Every input returns effects, in order:

- ``Persist(entry)``: a WAL entry. Durability rule: every ``Persist``
  returned so far is written (and synced as the fsync policy says) before
  any ``Send`` returned with or after it leaves the node, so a replica acks
  only what is durable and a write leaves its coordinator only once logged.
- ``Changed(keys)``: these keys' visible state may have changed (the view).
- ``Send(to, msg)``; ``WriteDone`` / ``ReadDone`` (from the coordinator;
  a read's answers are already joined into this replica when it comes).

Rules:
- Writes are made here against this replica's state of the key (the caller
  routes a command to a replica of its keys); dot ``(node, hlc)``
  (``core/crdt/keyed.py``).
- A write this node coordinates goes to the other replicas as a delta
  (``Put.delta``: ``keyed.write_delta``, its dot, mutations and each key's
  context here just before it) unless ``deltas`` is False, except a
  ``VSET ... CONTEXT`` (a client
  context may name writes this replica lacks) and what goes to stand-ins
  (whole states, kept as hints). The fallback rule: a replica applies the
  delta to the keys whose context covers the delta's base context (and
  skips those that hold its dot already), logs it (WAL ``wd``; the deltas
  of one batch in one ``wds``, ``_put_deltas``; replayed with the same
  rule) and answers ``PutAck``; for the keys whose base it
  lacks it answers ``PutNeed`` and this node sends their whole states in a
  ``Put`` with the same ``req``, acknowledged as any ``Put`` (the write's
  level counts that ack).
- Batching (``frames``): the messages of one loop iteration to one peer
  leave in one frame; to a peer that announced ``FEATURE_PUTS`` (``Hello``,
  sent on every connect) the delta ``Put``s of the writes this node
  coordinated become one ``Puts`` and the acks one ``PutAcks`` (as raft's
  AppendEntries and its reply). A ``Puts`` is applied in one pass, the
  fallback rule per write (one ``PutNeed`` per write that lacks its base),
  its keys made one ``Changed``. A peer that never announced (an older
  version) gets the single messages, and this node still understands them.
  No frame passes the transport's limit (``frames``' size rule, issue 9):
  where they would, a peer's messages leave in several frames and its
  writes in several ``Puts``, in order.
- The asking Hello: a peer's features are forgotten whenever this node's
  connection to it drops (``peer_down``: it may come back as another
  version), but the peer announces again only when its own connection comes
  up; and a Hello can be lost (the simulator's lossy links; a connection
  that broke with it in flight). Until it announces again the peer gets the
  older forms, Paxos messages without provenance among them, and a Commit
  without its ``origin`` writes a second version of its chosen value (paxos.py,
  Commit): the replicas then differ in their version contexts until
  anti-entropy joins them. So the Hello sent on connect names
  ``dm.HELLO_ASK``: a node answers such a Hello with its own (not asking), and
  the asker sends it again at every ``tick`` until a Hello from the peer
  arrives, ``HELLO_ASKS`` times at most (an older node never answers). A
  Paxos message that carries provenance also proves that its sender reads it
  (``pm.has_provenance``).
- A SET's overwrite is one ``put`` mutation (``core/crdt/store.py``: one
  register and one TTL entry replace what the write observed, where the
  ``del`` + ``set`` + ``ttl`` it stands for sweep three times) when every
  replica of the write announced ``FEATURE_PUT_MUT``; otherwise the write is
  expanded (``without_put``) before it is applied here, so every replica
  applies the same mutations and gives its entries the same ids.
- Read repair: the answers of a read are joined into this replica; every
  answering replica whose state of a key differs from the joined one gets
  it back (``Put`` with no ack), late answers too.
- Hints (``hints.py``) are held for a replica that was down or did not
  acknowledge, and delivered in batches while it is connected; one batch in
  flight per target.
- Anti-entropy: the keys are grouped by their replica set (every key whose
  preference list holds exactly these nodes), one Merkle tree per group this
  node is in, over the whole token circle (so a cluster of 3 nodes and N = 3
  has one tree however many vnodes it has). Every ``ae_interval_ms`` (0:
  never) one group, in turn, is compared with one other alive member of it
  by a Merkle walk (``merkle.py``); for the keys whose digests differ each
  side gets the other's state (this node sends its own with ``Put``s of at
  most ``PUT_STATES_MAX_BYTES`` each, bar the first state, and asks for the
  peer's with one ``Get`` per key, so that no answer passes the frame
  limit: a ``GetReply`` cannot be cut). Every ``Put`` of key states this node
  sends without an ack (repairs, forwards) is cut the same way
  (``_put_states``). Trees are updated from the keys changed since they
  last took their digests, at most ``AE_DIGESTS_PER_UPDATE`` per update, the
  longest waiting first (``_update_trees``): once a round is due, one update
  per tick until the keys waiting then are digested, and the round starts
  (its own digests current); one at each step of a walk. The first round
  comes at a random time within one interval. A round compares the keys of at most
  ``AE_LEAVES_PER_ROUND`` differing leaves (a window from a random start),
  so what one step costs the event loop is bounded (``_ae_tick``).
- Tombstones are collected ``tombstone_grace_ms`` after the delete.
- Paxos (``paxos.py``, Cassandra's lightweight transactions): this node's
  acceptor for every key it holds, and the proposers of the operations it
  coordinates (``paxos``: CAS, SET NX/XX, SERIAL reads and writes). Its
  participants come from the membership (``paxos_replicas``): during a
  change the old replicas plus the pending ones, with a quorum of the old
  plus one per pending replica (``paxos.paxos_quorum``, CASSANDRA-8346),
  read again each round; a Prepare or Propose names them and the acceptor
  refuses one whose electorate its own ring does not give the key (paxos.py,
  a round fenced by its electorate; stripped to a peer of an older version,
  which cannot read it). A
  message to itself is stepped at once, in order (a worklist, no recursion);
  the acceptor's ``Persist`` becomes a WAL entry (``px``) before the reply
  that depends on it leaves the node. A commit is written into the store as
  an overwrite stamped with the ballot (origin = the proposer, hlc = the
  ballot's), the same mutations on every replica (``overwrite_muts``).
  ``paxos_tick`` drives the proposers' timeouts, resends and backoff. A
  round commits on accept (paxos.py) with the peers that announced
  ``FEATURE_COMMIT_ON_ACCEPT``: its own acceptor's Propose is stepped (and
  its ``Persist`` returned) before the peer's Propose, so the peer's commit
  rests on an accept that is durable before that frame leaves.
- Membership changes (``membership.py``: epochs, pending ranges, the
  change's progress): the ring messages go to ``membership``; its
  ``SaveRing`` and ``RingChanged`` effects pass to the driver (which saves
  the state before any later frame leaves, and follows the new members),
  and the replica's placement, Merkle groups and streams follow the ring.
  Streaming out (``StreamStart``): the key states (tombstones included) of
  the asked ranges, as held when the stream starts, go to the target in
  ``Put`` chunks of ``STREAM_CHUNK_KEYS`` and ``PUT_STATES_MAX_BYTES`` (bar the
  first state: a chunk must fit a peer frame), one chunk in flight, resent
  after the request timeout; then ``StreamDone`` to the change's
  coordinator. A chunk carries the acceptor states of its keys as well
  (``Put.paxos``, read when the chunk is sent; keys with an acceptor state
  and no data too), which the target joins into its acceptor
  (``paxos.merge_states``) and persists before it acknowledges: a new
  owner then answers Paxos rounds with the old replica's promise, accepted
  proposal and most recent commit (CASSANDRA-8346; see ``paxos.py``). A ``StreamStart`` for a stream already done is answered with
  ``StreamDone`` again. Until the ring switches, a key state this replica
  joins from a ``Put`` whose token lies in a range it streams is forwarded
  to the target too (no ack): a write a coordinator sent just before it
  learnt the pending epoch reaches the new replica even when it arrives
  after the chunk that held its key. So are a Paxos commit's data and
  every acceptor state change of such a key (a round of a proposer that
  began on the previous epoch, among the old replicas only). ``cleanup_delay_ms`` after a switch
  the keys this node no longer replicates are dropped (WAL ``drop``). A
  write (a ``Put`` asking for an ack) for a key this node does not
  replicate in its view (a coordinator that still held an older ring sent
  it, and this node switched meanwhile) is joined and passed on to the
  key's replicas, but answered ``PutAck(ok=False)``: it must not count
  toward the write's level, since this node will drop the key. A Paxos commit for such a key (a
  proposer on the previous ring) is passed on and cleaned up the same way. Hints for
  keys their node no longer replicates, and every hint held for a node that
  left the ring, go to the keys' replicas instead (no ack) and count as
  delivered.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

from replikv.core.crdt.hlc import Hlc
from replikv.core.crdt.keyed import KeyedStore, decode_delta, write_delta
from replikv.core.crdt.store import overwrite_muts, without_put
from replikv.core.dynamo import membership as mb
from replikv.core.dynamo import messages as dm
from replikv.core.dynamo import paxos as px
from replikv.core.dynamo import paxos_messages as pm
from replikv.core.dynamo.coordinator import Coordinator, Hint, LateAnswer, ReadDone, Send, WriteDone
from replikv.core.dynamo.hints import Hints
from replikv.core.dynamo.merkle import MerkleError, MerkleTree, MerkleWalk
from replikv.core.dynamo.ring import Range, Ring, token_of
from replikv.core.framing import cut_runs, take_within

Group = tuple[str, ...]  # a replica set, sorted
_CIRCLE = Range(start=0, end=0)

__all__ = ["Changed", "PaxosDone", "Persist", "ReadDone", "Replica", "Send", "WriteBatch", "WriteDone"]

_NO_CTX: dict[str, int] = {}  # the context of a key this replica holds nothing of (read only)
HINT_BATCH_KEYS = 256  # key states per hint delivery, at most
# bytes of key states one Put carries at most, bar its first state (a hint delivery, a stream chunk, an
# anti-entropy push): a Put is one message, which no frame cut can split, and it must fit a frame (issue 9)
PUT_STATES_MAX_BYTES = 1024 * 1024
AE_TREE_DEPTH = 10  # 1024 leaves per replica group
AE_KEYS_PER_ROUND = 512  # key states one anti-entropy round exchanges at most
# changed keys one tree update digests at most (_update_trees; ~2-5 ms of loop time): every tick
# digests that many while keys wait, and a round starts once none wait ("Anti-entropy" above)
AE_DIGESTS_PER_UPDATE = 200
AE_LEAVES_PER_ROUND = 32  # differing leaves one round compares the keys of at most
STREAM_CHUNK_KEYS = 256  # key states per streaming chunk (one in flight per stream)
CLEANUP_KEYS_PER_TICK = 1000  # keys a cleanup drops per tick at most
CATCH_UP_TRIES = 5  # Gets a catch-up sends each peer at most, one per timeout (``Replica._catch_up``)
HELLO_ASKS = 10  # asking Hellos sent per connect at most, one per tick (module docstring, "The asking Hello")
# each feature a peer may announce (``Hello``), and the set of this Replica's that holds the peers
# that announced it since they last connected
FEATURE_PEERS = ((dm.FEATURE_PUTS, "batch_peers"), (dm.FEATURE_ELECTORATE, "electorate_peers"),
                 (dm.FEATURE_PROVENANCE, "provenance_peers"), (dm.FEATURE_QUIET_COMMIT, "quiet_commit_peers"),
                 (dm.FEATURE_COMMIT_ON_ACCEPT, "commit_accept_peers"), (dm.FEATURE_PUT_MUT, "put_peers"),
                 (dm.FEATURE_GET_PARTS, "get_parts_peers"), (dm.FEATURE_PAXOS_BODY, "paxos_body_peers"))
ASKING_HELLO = dm.Hello(features=(*dm.FEATURES, dm.HELLO_ASK))  # sent on connect: answer with yours
ANSWER_HELLO = dm.Hello(features=dm.FEATURES)


@dataclass(slots=True, kw_only=True)  # not frozen: see coordinator.Send
class Persist:
    entry: list[Any]


@dataclass(slots=True, kw_only=True)  # not frozen: see coordinator.Send
class Changed:
    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PaxosDone:
    """The Paxos operation ``req`` ended (``px.Chosen``, ``Timeout``, ``Preempted`` or ``Contended``)."""

    req: int
    outcome: px.Outcome


Effect = Persist | Changed | Send | WriteDone | ReadDone | PaxosDone


@dataclass(slots=True)
class WriteBatch:
    """Client writes this node coordinates, joined into one write ``(node, hlc)`` to the same
    replicas (``Replica.begin_batch``): its mutations so far, each key's context just before
    the write (``before``: what the delta ships) and the keys it touched, in order."""

    hlc: int
    replicas: tuple[str, ...]
    now_ms: int
    expand: bool  # a replica may not know ``put`` (FEATURE_PUT_MUT): each write is expanded first
    muts: list[Any] = field(default_factory=list)
    before: dict[bytes, dict[str, int]] = field(default_factory=dict)
    keys: dict[bytes, None] = field(default_factory=dict)


Decider = Callable[[bytes | None], bytes | None]  # the current value -> the value to propose


@dataclass(slots=True)
class _StreamOut:
    coordinator: str
    epoch: int
    target: str
    ranges: tuple[Range, ...]
    keys: list[bytes]
    pos: int = 0  # keys[:pos] are acknowledged by the target
    req: int = 0  # the chunk in flight
    deadline_us: int = 0
    count: int = 0  # keys[pos:pos + count] are the chunk in flight


def _put_states(peer: str, states: Sequence[tuple[bytes, bytes]], out: list[Any]) -> None:
    """``states`` sent to ``peer`` as unacknowledged ``Put``s of at most ``PUT_STATES_MAX_BYTES``
    each (bar a single state above it), in order: a ``Put`` is one message and must fit a peer
    frame (``frames`` cuts frames between messages, not inside a ``Put`` of states)."""
    for run in cut_runs(states, [len(k) + len(b) for k, b in states], PUT_STATES_MAX_BYTES):
        out.append(Send(to=peer, msg=dm.Put(req=0, states=tuple(run))))


@dataclass(slots=True)
class _AeSession:
    peer: str
    group: Group
    walk: MerkleWalk
    deadline_us: int
    phase: str = "tree"  # "tree" (walking) | "leaves" (comparing keys)
    leaves: tuple[int, ...] = ()  # the differing leaves whose keys the round compares


def _coalesce(msgs: list[dm.One]) -> list[dm.One]:
    """``Replica.frames``' batching of one peer's messages."""
    writes: list[tuple[int, bytes]] = []
    ok: list[int] = []
    refused: list[int] = []
    out: list[Any] = []
    puts_at = acks_at = -1
    for m in msgs:
        if type(m) is dm.PaxosBody or type(m) is dm.Paxos:  # the Paxos path's messages, passed as is
            out.append(m)
        elif isinstance(m, dm.Put) and m.delta and m.req and not m.hint_for:
            if puts_at < 0:
                puts_at = len(out)
                out.append(None)
            writes.append((m.req, m.delta))
        elif isinstance(m, (dm.PutAck, dm.PutAcks)):
            if acks_at < 0:
                acks_at = len(out)
                out.append(None)
            if isinstance(m, dm.PutAck):
                (ok if m.ok else refused).append(m.req)
            else:
                ok.extend(m.ok)
                refused.extend(m.refused)
        else:
            out.append(m)
    if puts_at >= 0:
        out[puts_at] = dm.Puts(writes=tuple(writes))
    if acks_at >= 0:
        out[acks_at] = dm.PutAcks(ok=tuple(ok), refused=tuple(refused))
    return out


def _cut(msgs: list[dm.One], encoded: list[bytes], max_bytes: int) -> list[bytes]:
    """``Replica.frames``' size rule, for a peer's messages (``encoded``: each one's bytes) that
    do not fit one frame: a ``Puts`` above a frame is cut into several (its writes in order),
    then the messages into frames (``dm.encode_frames``)."""
    budget = max_bytes - dm.BATCH_HEAD_BYTES
    pieces: list[bytes] = []
    for m, e in zip(msgs, encoded):
        if len(e) > budget and isinstance(m, dm.Puts) and len(m.writes) > 1:
            sizes = [len(d) + dm.PUTS_WRITE_BYTES for _, d in m.writes]
            pieces.extend(dm.encode(dm.Puts(writes=run)) for run in cut_runs(m.writes, sizes, budget - dm.PUTS_HEAD_BYTES))
        else:
            pieces.append(e)
    return dm.encode_frames(pieces, max_bytes)


class Replica:
    """See the module docstring."""

    def __init__(
        self,
        node: str,
        ring: Ring,
        *,
        conflicts: str,
        timeout_us: int,
        rng: random.Random,
        sloppy_quorum: bool = False,
        read_repair_chance: float = 0.1,
        tombstone_grace_ms: int = 864_000_000,
        ae_interval_ms: int = 1000,
        hlc: Hlc | None = None,
        paxos_tick_ms: int = 10,
        membership: mb.Membership | None = None,
        deltas: bool = True,
        batches: bool = True,
    ) -> None:
        self.node = node
        self.batches = batches  # False: neither announces nor sends Puts / PutAcks (a node of an older version)
        self.batch_peers: set[str] = set()  # peers that announced FEATURE_PUTS since they last connected
        self.electorate_peers: set[str] = set()  # peers that announced FEATURE_ELECTORATE since then
        self.provenance_peers: set[str] = set()  # peers that announced FEATURE_PROVENANCE since then
        self.quiet_commit_peers: set[str] = set()  # peers that announced FEATURE_QUIET_COMMIT since then
        self.commit_accept_peers: set[str] = set()  # peers that announced FEATURE_COMMIT_ON_ACCEPT since then
        self.put_peers: set[str] = set()  # peers that announced FEATURE_PUT_MUT since then
        self.get_parts_peers: set[str] = set()  # peers that announced FEATURE_GET_PARTS since then
        self.paxos_body_peers: set[str] = set()  # peers that announced FEATURE_PAXOS_BODY since then
        self.hello_asks: dict[str, int] = {}  # peer -> asking Hellos left to send until it announces
        self.deltas = deltas  # False: writes ship whole key states (as before deltas; the simulator mixes both)
        if membership is None:  # a fixed ring (epoch 0), as the simulator runs it
            members = tuple(mb.Member(id=n, host="", port=0, peer_port=0) for n in ring.nodes)
            membership = mb.Membership(node, mb.RingState(epoch=0, members=members), ring.replicas, ring.vnodes)
        self.membership = membership
        self.ring = membership.ring
        # (epoch, target, ranges) -> a stream this node sends (a stand-in may send two to one target)
        self.streams: dict[tuple[int, str, tuple[tuple[int, int], ...]], _StreamOut] = {}
        self.streams_done: set[tuple[int, str, tuple[tuple[int, int], ...]]] = set()
        self.stream_ranges: dict[str, list[Range]] = {}  # target -> ranges streamed to it this change
        self._local_done: list[dm.StreamDone] = []  # streams done whose coordinator is this node
        self.store = KeyedStore(conflicts)
        self.hints = Hints(conflicts)
        self.coord = Coordinator(node, timeout_us=timeout_us, rng=rng, sloppy_quorum=sloppy_quorum,
                                 read_repair_chance=read_repair_chance, blobs=self._blob)
        self.rng = rng
        self.hlc = hlc if hlc is not None else Hlc()  # the node's clock: ballots are drawn from it
        self.acceptor = px.PaxosAcceptor(node)
        self.proposers: dict[int, tuple[px.PaxosProposer, Decider]] = {}
        self.paxos_timeout_ticks = max(1, timeout_us // 1000 // paxos_tick_ms)
        self.tombstone_grace_ms = tombstone_grace_ms
        self.ae_interval_ms = ae_interval_ms
        self.hint_sends: dict[int, tuple[str, list[tuple[bytes, bytes]], int]] = {}
        self.trees: dict[Group, MerkleTree] = {}
        # keys changed since the trees last took their digests, oldest first (``_update_trees``)
        self.dirty: dict[bytes, None] = {}
        self.ae: dict[int, _AeSession] = {}
        # req -> (peer, key, deadline ms, tries left): ``_catch_up``'s Gets, each asked again when unanswered
        self.catch_ups: dict[int, tuple[str, bytes, int, int]] = {}
        self.paxos_heard: dict[str, int] = {}  # peer -> when a Paxos message last came from it (ms)
        self._ae_next = rng.randrange(1 << 16)  # which group next (round robin from a random start)
        self._ae_due_ms: int | None = None  # the next round's time (the first: at random in one interval)
        self._ae_backlog: int | None = None  # keys waiting when the due round began digesting (_ae_tick)
        self._reqs = 1 << 40  # the replica's own request ids (the runtime's client requests count from 1)
        self.stats = {"read_repairs": 0, "hints_stored": 0, "hints_delivered": 0, "tombstones_collected": 0,
                      "states_joined": 0, "ae_rounds": 0, "ae_groups_in_sync": 0, "ae_keys_repaired": 0,
                      "bad_states": 0, "deltas_applied": 0, "deltas_missing_base": 0,
                      "write_batches": 0, "batched_writes": 0, "keys_streamed": 0,
                      "streams_done": 0, "keys_forwarded": 0,
                      "keys_cleaned": 0, "paxos_fenced": 0, "paxos_catch_ups": 0,
                      "paxos_commits_on_accept": 0}

    def _req(self) -> int:
        self._reqs += 1
        return self._reqs

    def _blob(self, key: bytes) -> bytes | None:
        """The coordinator's ``blobs``: this replica's whole state of ``key`` (``self.store`` is
        read at each call: a recovery replaces it)."""
        return self.store.key_blob(key)

    # ------------------------------------------------------------ recovery

    def replay(self, entry: list[Any]) -> None:
        """Re-apply one WAL entry (start-up)."""
        kind = entry[0]
        if kind == "w":
            hlc, muts, now = entry[1], entry[2], entry[3]
            origin = entry[4] if len(entry) > 4 else self.node  # a Paxos commit: the proposer's dot
            self.dirty.update(dict.fromkeys(self.store.apply_write(origin, hlc, muts, now)))
        elif kind == "px":
            self.acceptor.restore(entry[1], pm.decode_state(entry[2]))
        elif kind == "j":
            self.store.join_key(entry[1], entry[2], entry[3])
            self.dirty[entry[1]] = None
        elif kind == "wd":
            self.dirty.update(dict.fromkeys(self.store.apply_delta(decode_delta(entry[1]), entry[2])[0]))
        elif kind == "wds":  # the deltas of one batch, in order (``_put_deltas``)
            for blob in entry[1]:
                self.dirty.update(dict.fromkeys(self.store.apply_delta(decode_delta(blob), entry[2])[0]))
        elif kind == "h":
            self.hints.add(entry[1], entry[2], entry[3], entry[4])
        elif kind == "hd":
            self.hints.delivered(entry[1], entry[2], entry[3])
        elif kind == "gc":
            self.store.collect(entry[1])
            self.dirty[entry[1]] = None
        elif kind == "drop":
            self.store.forget(entry[1])
            self.dirty[entry[1]] = None

    # ------------------------------------------------------------ requests

    def write(self, req: int, muts: Sequence[Any], hlc: int, replicas: Sequence[str], needed: int,
              alive: Iterable[str], stand_ins: Sequence[str], now_ms: int, now_us: int) -> list[Any]:
        """A client write this node coordinates (``muts`` from kv/crdt_writes.translate)."""
        out: list[Any] = []
        node = self.node
        if self._expands(replicas) and any(m[0] == "put" for m in muts):
            muts = without_put(muts)  # a replica may be of an older version: before anything applies it
        delta = b""
        if not self.deltas:
            pass
        elif len(muts) == 1 and muts[0][0] == "put":  # a SET: one key, no client context
            key = bytes(muts[0][1])
            delta = write_delta(node, hlc, muts, {key: self.store.ctx.get(key, _NO_CTX)})
        elif not any(m[0] == "set" and m[4] is not None for m in muts):  # (VSET ... CONTEXT: whole states)
            ctx = self.store.ctx
            # the contexts as they are, not copies: write_delta packs them before the write applies
            before = {k: ctx.get(k, _NO_CTX) for k in {bytes(m[1]) for m in muts}}
            delta = write_delta(node, hlc, muts, before)
        changed = self._apply_local(muts, hlc, now_ms, out)
        # the whole states only when needed (coordinator.py, "Whole states, taken late")
        out.extend(self._coordinated(self.coord.write(req, None, replicas, needed, alive, stand_ins, now_us,
                                                      delta, tuple(changed)), now_ms))
        return out

    def begin_batch(self, hlc: int, replicas: Sequence[str], now_ms: int) -> WriteBatch:
        """Open a batch: the client writes ``batch_add`` gives it become one write of this node,
        dot ``(node, hlc)``, to ``replicas`` (this node among them), which ``end_batch`` logs,
        ships and hands the coordinator as one request. Between the two nothing else may step
        this replica or change its store (the runtime runs a pipelined run's writes with nothing
        in between): the delta ships each key's context as the batch first touched it
        (``KeyedStore.write_more``), so a change from elsewhere in between would make the
        replicas apply the later writes against less than this one saw."""
        return WriteBatch(hlc, tuple(replicas), now_ms, self._expands(replicas))

    def _expands(self, replicas: Iterable[str]) -> bool:
        """Whether a write to ``replicas`` has its ``put`` mutations expanded first
        (``without_put``): another replica has not announced ``FEATURE_PUT_MUT`` (an older
        version), and every replica must apply the same list."""
        node, put_peers = self.node, self.put_peers
        return any(r != node and r not in put_peers for r in replicas)

    def batch_add(self, batch: WriteBatch, muts: Sequence[Any]) -> None:
        """One client write (``muts`` from kv/crdt_writes.translate, against the store as the
        batch's earlier writes left it) applied here as the batch's next mutations: their ids
        continue the batch's (``(node, hlc, i)``), and each observes what its key's context
        covered before the batch and the batch's own entries, so the outcome is that of the
        batch's mutations as one write, on this replica and on every replica the delta reaches
        (``apply_delta``), and of its WAL entry replayed (``apply_write``). A later write of the
        same key wins as a later write would (its entries supersede the earlier ones'; LWW
        orders entries of one dot by their index)."""
        if batch.expand and any(m[0] == "put" for m in muts):
            muts = without_put(muts)  # as Replica.write does: every replica applies the same list
        start = len(batch.muts)
        batch.muts.extend(muts)
        keys = batch.keys
        for key in self.store.write_more(self.node, batch.hlc, muts, start, batch.before, batch.now_ms):
            keys[key] = None

    def end_batch(self, batch: WriteBatch, req: int, needed: int, alive: Iterable[str],
                  now_us: int) -> list[Any]:
        """The batch as one write this node coordinates, with ``Replica.write``'s effects in its
        order: one WAL entry (``w``, its mutations in order), one ``Changed``, one delta to the
        other replicas (``write_delta``: the dot, the mutations, each key's context before the
        batch) and one request ``req`` at the coordinator, which counts the replicas' acks for
        the batch as a whole and hints a replica that does not ack (the keys' whole states,
        taken late). No stand-ins: the runtime batches only writes whose replicas are all
        believed alive. An empty batch has no effect."""
        if not batch.muts:
            return []
        out: list[Any] = []
        muts, keys = batch.muts, tuple(batch.keys)
        self._logged(muts, batch.hlc, batch.now_ms, keys, out)
        delta = write_delta(self.node, batch.hlc, muts, batch.before) if self.deltas else b""
        out.extend(self._coordinated(self.coord.write(req, None, batch.replicas, needed, alive, (), now_us,
                                                      delta, keys), batch.now_ms))
        return out

    def local_write(self, muts: Sequence[Any], hlc: int, now_ms: int) -> list[Any]:
        """A write on this replica only (expiry: every replica expires a key on its own)."""
        out: list[Any] = []
        self._apply_local(muts, hlc, now_ms, out)
        return out

    def _apply_local(self, muts: Sequence[Any], hlc: int, now_ms: int, out: list[Any]) -> list[bytes]:
        changed = self.store.apply_write(self.node, hlc, muts, now_ms)
        self._logged(muts, hlc, now_ms, changed, out)
        return changed

    def _logged(self, muts: Sequence[Any], hlc: int, now_ms: int, changed: Sequence[bytes], out: list[Any]) -> None:
        """A write of this node applied here (``_apply_local``, ``end_batch``): its WAL entry
        (``w``, replayed by ``apply_write``), its changed keys marked for the Merkle trees and
        one ``Changed``."""
        out.append(Persist(entry=["w", hlc, list(muts), now_ms]))
        if changed:
            dirty = self.dirty
            for key in changed:
                dirty[key] = None  # a key already dirty keeps its place (``_update_trees``)
            out.append(Changed(keys=tuple(changed)))

    def read(self, req: int, keys: tuple[bytes, ...], replicas: Sequence[str], needed: int,
             alive: Iterable[str], now_ms: int, now_us: int) -> list[Any]:
        return self._coordinated(self.coord.read(req, keys, replicas, needed, alive, now_us), now_ms)

    def _coordinated(self, effects: list[Any], now_ms: int) -> list[Any]:
        """The coordinator's effects, with reads' answers joined (read repair) and hints held."""
        out: list[Any] = []
        for e in effects:
            if type(e) is Send or type(e) is WriteDone:  # the common effects, as they are (final classes)
                out.append(e)
            elif isinstance(e, ReadDone):
                self._join_answers(e.answers, now_ms, out)
                out.append(e)
            elif isinstance(e, LateAnswer):
                self._join_answers({e.peer: e.states}, now_ms, out)
            elif isinstance(e, Hint):
                self.hold_hints(e.node, e.states, now_ms, out)
            else:
                out.append(e)
        return out

    def _answer_get(self, peer: str, msg: dm.Get, out: list[Any]) -> None:
        """This replica's states of ``msg.keys``, in order: one ``GetReply``, or, to a peer that joins
        parts (``FEATURE_GET_PARTS``) asking for several keys, ``GetReply``s of the same ``req`` of
        at most ``PUT_STATES_MAX_BYTES`` each (bar a single state above it), so that each fits a
        peer frame as ``_put_states``' ``Put``s do."""
        states = tuple((k, self.store.key_blob(k)) for k in msg.keys)
        if len(states) > 1 and peer in self.get_parts_peers:
            sizes = [len(k) + (len(b) if b is not None else 0) for k, b in states]
            for run in cut_runs(states, sizes, PUT_STATES_MAX_BYTES):
                out.append(Send(to=peer, msg=dm.GetReply(req=msg.req, states=run)))
        else:
            out.append(Send(to=peer, msg=dm.GetReply(req=msg.req, states=states)))

    def _join_answers(self, answers: dict[str, Any], now_ms: int, out: list[Any]) -> None:
        for states in answers.values():
            self._join_states(states, now_ms, out)
        for peer, states in answers.items():
            repairs = []
            for key, blob in states:
                mine = self.store.key_blob(key)
                if mine is not None and blob != mine:
                    repairs.append((key, mine))
            if repairs:
                self.stats["read_repairs"] += len(repairs)
                _put_states(peer, repairs, out)

    def _join_states(self, states: Iterable[tuple[bytes, bytes | None]], now_ms: int, out: list[Any]) -> None:
        """Join a peer's key states (None: it holds nothing of that key); ``Changed`` for those joined."""
        changed = [key for key, blob in states if blob is not None and self._join(key, blob, now_ms, out)]
        if changed:
            out.append(Changed(keys=tuple(changed)))

    def _join(self, key: bytes, blob: bytes, now_ms: int, out: list[Any]) -> bool:
        try:
            changed = self.store.join_key(key, blob, now_ms)
        except ValueError:
            self.stats["bad_states"] += 1
            return False
        if changed:
            self.stats["states_joined"] += 1
            self.dirty[key] = None
            out.append(Persist(entry=["j", key, blob, now_ms]))
            # a later write here that saw these entries gets a greater HLC (hlc.py's LWW rule)
            self.hlc.observe(max(self.store.context(key).values(), default=0), now_ms)
        return changed

    def hold_hints(self, node: str, states: Iterable[tuple[bytes, bytes]], now_ms: int, out: list[Any]) -> bool:
        """Keep key states for ``node``; False if one of them was not a key state."""
        ok = True
        for key, blob in states:
            try:
                self.hints.add(node, key, blob, now_ms)
            except ValueError:
                self.stats["bad_states"] += 1
                ok = False
                continue
            self.stats["hints_stored"] += 1
            out.append(Persist(entry=["h", node, key, blob, now_ms]))
        return ok

    # ------------------------------------------------------------ messages

    def frames(self, sends: Iterable[Send], max_bytes: int) -> list[tuple[str, bytes]]:
        """The frames that carry ``sends`` (one loop iteration's, in order): one per peer (a
        ``Batch``), and each ``Hello`` alone in a frame of its own, first (a node of an older
        version drops it, and would drop any message it shared a frame with). To a peer that
        announced ``FEATURE_PUTS`` the coordinated writes' delta ``Put``s become one ``Puts`` and
        the acks (``PutAck``, ``PutAcks``) one ``PutAcks``, each where the first of its messages was (the later ones
        move ahead of the messages between: every message of this protocol survives reordering, as
        between frames; the writes keep their order, which a key's successive deltas need).

        Size rule (issue 9): no frame is above ``max_bytes`` (the peer transport's
        ``max_frame_bytes``: a frame above it closes the link, and the writes it held would reach
        the replica only through hints after their client was refused), unless one message alone
        is: a peer's messages are cut into several frames, in order
        (``dm.encode_frames``), and its writes into several ``Puts`` (``_cut``), where one
        would pass it. One message is bounded where it is made: a write's delta holds one client
        command, or a batch the runtime ends at ``OPEN_BATCH_MAX_BYTES`` of client arguments
        plus its last SET (``_join``, ``_write_run``), so a write of one value of ``max_bulk_len`` fits the limit
        (``max_bulk_len`` + 64 MiB) with room to spare."""
        out: list[tuple[str, bytes]] = []
        by_peer: dict[str, list[dm.One]] = {}
        for s in sends:
            if type(s.msg) is dm.Hello:
                out.append((s.to, dm.encode(s.msg)))
            else:
                by_peer.setdefault(s.to, []).append(s.msg)
        encode, head = dm.encode, dm.BATCH_HEAD_BYTES
        for peer, msgs in by_peer.items():
            if peer in self.batch_peers:
                msgs = _coalesce(msgs)
            encoded = [encode(m) for m in msgs]
            if sum(map(len, encoded)) + head <= max_bytes:  # the usual case: one frame
                out.append((peer, dm.encode_batch(encoded)))
            else:
                out.extend((peer, frame) for frame in _cut(msgs, encoded, max_bytes))
        return out


    def step(self, peer: str, msg: dm.One, now_ms: int, now_us: int, *, writable: bool = True) -> list[Any]:
        """A peer's message. ``writable`` False: the WAL refuses writes (the disk guard): a
        ``Put`` is refused with ``PutAck(ok=False)`` and nothing is joined."""
        out: list[Any] = []
        if type(msg) is dm.PaxosBody:  # the Paxos path's messages: before the 20 cases below
            self._paxos_in(peer, msg.msg, now_ms, out, writable)
            return out
        if type(msg) is dm.Paxos:
            self._paxos_frame(peer, msg, now_ms, out, writable)
            return out
        match msg:
            case dm.Put():
                if not writable:
                    if msg.req:
                        out.append(Send(to=peer, msg=dm.PutAck(req=msg.req, ok=False)))
                    return out
                ok = True
                if msg.hint_for:
                    ok = self.hold_hints(msg.hint_for, msg.states, now_ms, out)
                elif msg.delta:
                    self._put_deltas(peer, ((msg.req, msg.delta),), now_ms, out)
                    return out
                else:
                    if msg.req and self.membership.state.epoch and not self._replicates(msg.states):
                        ok = False  # joined and passed on, but not counted: see "Membership changes" above
                    changed = [k for k, b in msg.states if self._join(k, b, now_ms, out)]
                    self._merge_acceptor_states(msg.paxos, out)
                    if changed:
                        out.append(Changed(keys=tuple(changed)))
                        if self.stream_ranges:
                            self._forward_to_targets(changed, out)
                        elif self.membership.state.epoch and not self.membership.changing:
                            self._late_write(changed, now_ms, out)
                if msg.req:
                    out.append(Send(to=peer, msg=dm.PutAck(req=msg.req, ok=ok)))
            case dm.Puts():  # a coordinator's delta writes of one loop iteration
                self.stats["write_batches"] += 1
                self.stats["batched_writes"] += len(msg.writes)
                if writable:
                    self._put_deltas(peer, msg.writes, now_ms, out, batched=True)
                else:
                    out.append(Send(to=peer, msg=dm.PutAcks(ok=(), refused=tuple(req for req, _ in msg.writes))))
            case dm.PutAcks():
                if self.hint_sends or self.streams:  # an ack may be a hint delivery's or a chunk's
                    for req in msg.ok:
                        self._acked(peer, req, True, now_ms, now_us, out)
                else:  # writes' acks only: ``_acked`` per req gives just these (an ok ack makes no hint)
                    self.coord.acked_ok(peer, msg.ok, out)
                for req in msg.refused:
                    self._acked(peer, req, False, now_ms, now_us, out)
            case dm.PutAck():
                self._acked(peer, msg.req, msg.ok, now_ms, now_us, out)
            case dm.Hello():
                if self.batches:
                    self.hello_asks.pop(peer, None)
                    if dm.HELLO_ASK in msg.features:  # its connection came up: it forgot ours
                        out.append(Send(to=peer, msg=ANSWER_HELLO))
                    for feature, attr in FEATURE_PEERS:
                        if feature in msg.features:
                            getattr(self, attr).add(peer)
            case dm.PutNeed():  # a replica lacks the base of our delta: the whole states, same req
                need = tuple((k, b) for k in msg.keys if (b := self.store.key_blob(k)) is not None)
                if len(need) < len(msg.keys):  # dropped meanwhile: the states the write took (``pin``)
                    held = dict(self.coord.states_of(msg.req))
                    need = tuple((k, b) for k in msg.keys if (b := self.store.key_blob(k) or held.get(k)) is not None)
                if len(need) == len(msg.keys):
                    out.append(Send(to=peer, msg=dm.Put(req=msg.req, states=need)))
                else:  # a key this node no longer holds (dropped meanwhile): not acked, a hint if any
                    out.extend(self._coordinated(self.coord.step(peer, dm.PutAck(req=msg.req, ok=False), now_us),
                                                 now_ms))
            case dm.Get():
                self._answer_get(peer, msg, out)
            case dm.RingMsg() | dm.RingAck() | dm.StreamDone():
                self._members(self.membership.step(peer, msg, now_ms), now_ms, now_us, out)
            case dm.StreamStart():
                self._stream_start(peer, msg, now_us, out)
                self._members([], now_ms, now_us, out)
            case dm.GetReply() if msg.req in self.ae:
                sess = self.ae.pop(msg.req)
                self._join_answers({sess.peer: msg.states}, now_ms, out)
            case dm.GetReply() if msg.req in self.catch_ups:
                key = self.catch_ups.pop(msg.req)[1]
                replicas = self.membership.paxos_replicas(key)[0]
                if self.node not in replicas:
                    pass  # this node left the key's replicas meanwhile (and cleans it up): not joined
                elif peer in replicas:  # and what it lacks goes back to it, as read repair does
                    self._join_answers({peer: msg.states}, now_ms, out)
                else:  # it left them: it may have cleaned the key up, so nothing goes back
                    self._join_states(msg.states, now_ms, out)
            case dm.GetReply():
                out.extend(self._coordinated(self.coord.step(peer, msg, now_us), now_ms))
            case dm.TreeGet():
                out.append(Send(to=peer, msg=dm.TreeHashes(req=msg.req, hashes=self._tree_hashes(msg))))
            case dm.LeafGet():
                out.append(Send(to=peer, msg=dm.LeafKeys(req=msg.req, entries=self._leaf_keys(msg))))
            case dm.TreeHashes():
                self._ae_hashes(peer, msg, now_us, out)
            case dm.LeafKeys():
                self._ae_keys(peer, msg, now_us, out)
            case dm.Paxos():
                self._paxos_frame(peer, msg, now_ms, out, writable)
            case dm.PaxosBody():
                self._paxos_in(peer, msg.msg, now_ms, out, writable)
        return out

    def _paxos_frame(self, peer: str, msg: dm.Paxos, now_ms: int, out: list[Any], writable: bool) -> None:
        """A peer's Paxos message in the packed form (``dm.Paxos``): decoded, then ``_paxos_in``."""
        try:
            pmsg = pm.decode(msg.data)
        except pm.PaxosCodecError:
            self.stats["bad_states"] += 1
            return
        self._paxos_in(peer, pmsg, now_ms, out, writable)

    def _paxos_in(self, peer: str, pmsg: pm.PaxosMsg, now_ms: int, out: list[Any], writable: bool) -> None:
        """A peer's Paxos message, decoded (either form): stepped if its sender is the peer."""
        if pmsg.sender == peer:
            self.paxos_heard[peer] = now_ms
            if self.batches and peer not in self.provenance_peers and pm.has_provenance(pmsg):
                self.provenance_peers.add(peer)  # it reads provenance: it wrote some (see ``pm.has_provenance``)
            self._paxos_run([pmsg], now_ms, out, writable)

    def _acked(self, peer: str, req: int, ok: bool, now_ms: int, now_us: int, out: list[Any]) -> None:
        """A ``PutAck`` (alone or in a ``PutAcks``): a hint delivery's, a stream chunk's or a write's."""
        if req in self.hint_sends:
            self._hints_acked(req, ok, out)
        elif self.streams and any(st.req == req for st in self.streams.values()):
            self._stream_acked(peer, req, ok, now_us, out)
            self._members([], now_ms, now_us, out)
        else:
            out.extend(self._coordinated(self.coord.acked(peer, req, ok), now_ms))

    def _put_deltas(self, peer: str, writes: Iterable[tuple[int, bytes]], now_ms: int, out: list[Any],
                    batched: bool = False) -> None:
        """Writes shipped as deltas (``keyed.py``; one ``Put`` or a ``Puts``), in order: each is
        applied to the keys whose base this replica holds and acknowledged (``PutAck``;
        ``batched``, the writes of a ``Puts``: one ``PutAcks``, which its
        sender understands); for the keys whose base it lacks their whole states are asked for
        (``PutNeed``) and the write is acknowledged when they come. The keys they changed make
        one ``Changed``, after every write of the batch is applied, and the acks follow it. The
        deltas applied are logged in one WAL entry, before the ``Changed`` and the acks: ``wd``
        for one, ``wds`` (the blobs in order, one receive time) for more, replayed with the same
        rule one after another (one entry and one effect per batch rather than per write)."""
        acks: list[Any] = []
        acked: list[int] = []
        refused: list[int] = []
        changed_all: dict[bytes, None] = {}
        ms = self.membership
        epoch = ms.state.epoch
        apply_delta, dirty, stats = self.store.apply_delta, self.dirty, self.stats
        hlc_max = 0
        logged: list[bytes] = []  # the deltas applied, in order (one WAL entry)
        for req, blob in writes:
            try:
                delta = decode_delta(blob)
            except ValueError:
                stats["bad_states"] += 1
                if req:
                    refused.append(req)
                continue
            ok = not (req and epoch and not all(self.node in ms.write_replicas(k)[0] for k in delta[3]))
            changed, missing = apply_delta(delta, now_ms)
            if changed:
                for key in changed:
                    dirty[key] = None  # a key already dirty keeps its place (``_update_trees``)
                    changed_all[key] = None
                logged.append(blob)
                if delta[1] > hlc_max:
                    hlc_max = delta[1]
            if missing and req:
                self.stats["deltas_missing_base"] += 1
                acks.append(Send(to=peer, msg=dm.PutNeed(req=req, keys=tuple(missing))))
            elif req:
                (acked if ok else refused).append(req)
        if logged:
            stats["deltas_applied"] += len(logged)
            out.append(Persist(entry=["wd", logged[0], now_ms] if len(logged) == 1 else ["wds", logged, now_ms]))
        if changed_all:
            keys = list(changed_all)
            self.hlc.observe(hlc_max, now_ms)
            out.append(Changed(keys=tuple(keys)))
            if self.stream_ranges:
                self._forward_to_targets(keys, out)
            elif ms.state.epoch and not ms.changing:
                self._late_write(keys, now_ms, out)
        out.extend(acks)
        if batched:
            if acked or refused:
                out.append(Send(to=peer, msg=dm.PutAcks(ok=tuple(acked), refused=tuple(refused))))
        else:
            out.extend(Send(to=peer, msg=dm.PutAck(req=req, ok=True)) for req in acked)
            out.extend(Send(to=peer, msg=dm.PutAck(req=req, ok=False)) for req in refused)

    # ------------------------------------------------------------ membership

    def begin_change(self, change: str, node: mb.Member, now_ms: int, now_us: int) -> list[Any]:
        """Start adding or removing ``node`` (driven by this node); ``MembershipError`` if refused."""
        out: list[Any] = []
        self._members(self.membership.begin(change, node, now_ms), now_ms, now_us, out)
        return out

    def peer_connected(self, peer: str, now_ms: int, now_us: int) -> list[Any]:
        """A peer connected: tell it the features this node understands (``Hello``), our ring
        (gossip), deliver its hints."""
        out: list[Any] = []
        if self.batches:
            out.append(Send(to=peer, msg=ASKING_HELLO))
            self.hello_asks[peer] = HELLO_ASKS - 1
        self._members(self.membership.on_connect(peer), now_ms, now_us, out)
        out.extend(self.deliver_hints(peer, now_us, self.coord.timeout_us, now_ms))
        return out

    def _members(self, effects: list[Any], now_ms: int, now_us: int, out: list[Any]) -> None:
        """Carry out the membership's effects; its messages to this node are stepped at once."""
        work = list(effects)
        while work or self._local_done:
            if not work:  # a stream this node ran for itself finished: its StreamDone
                work = [mb.Send(to=self.node, msg=d) for d in self._local_done]
                self._local_done.clear()
            e = work.pop(0)
            if isinstance(e, mb.Send):
                if e.to != self.node:
                    out.append(Send(to=e.to, msg=e.msg))
                elif isinstance(e.msg, dm.StreamStart):
                    self._stream_start(self.node, e.msg, now_us, out)
                else:
                    work.extend(self.membership.step(self.node, e.msg, now_ms))
            elif isinstance(e, mb.RingChanged):
                self._ring_changed(e)
                out.append(e)
            else:
                out.append(e)

    def _ring_changed(self, e: mb.RingChanged) -> None:
        if self.membership.ring is not self.ring:
            self.ring = self.membership.ring
            self.trees = {}  # the Merkle groups follow the ring (rebuilt lazily)
        if not e.state.change or e.state.epoch != e.previous.epoch:
            for key in [k for k in self.streams if k[0] != e.state.epoch or not e.state.change]:
                del self.streams[key]
            self.stream_ranges.clear()

    def _stream_start(self, peer: str, msg: dm.StreamStart, now_us: int, out: list[Any]) -> None:
        key = (msg.epoch, msg.target, msg.ranges)
        if msg.epoch != self.membership.state.epoch or not self.membership.changing:
            return  # a stream for an epoch this node has left (or not reached yet: the start is resent)
        if key in self.streams_done:
            self._send_done(peer, dm.StreamDone(epoch=msg.epoch, target=msg.target, ranges=msg.ranges), out)
            return
        if key in self.streams:
            return
        ranges = tuple(Range(start=a, end=b) for a, b in msg.ranges)
        held = set(self.store.stored_keys()) | {k for k, _ in self.acceptor.states()}
        keys = sorted(k for k in held if any(token_of(k) in r for r in ranges))
        self.stream_ranges.setdefault(msg.target, []).extend(ranges)
        st = _StreamOut(coordinator=peer, epoch=msg.epoch, target=msg.target, ranges=ranges, keys=keys)
        self.streams[key] = st
        self._stream_chunk(st, now_us, out)

    def _stream_chunk(self, st: _StreamOut, now_us: int, out: list[Any]) -> None:
        """Send the next chunk, or report the stream done."""
        while st.pos < len(st.keys):
            taken = take_within(((k, self.store.key_blob(k)) for k in st.keys[st.pos:st.pos + STREAM_CHUNK_KEYS]),
                                STREAM_CHUNK_KEYS, PUT_STATES_MAX_BYTES)
            keys = [k for k, _ in taken]
            chunk = tuple((k, b) for k, b in taken if b is not None)
            acceptors = self._acceptor_states(keys, st.target)
            st.count = len(keys)
            if chunk or acceptors:
                st.req = self._req()
                st.deadline_us = now_us + self.coord.timeout_us
                out.append(Send(to=st.target, msg=dm.Put(req=st.req, states=chunk, paxos=acceptors)))
                return
            st.pos += st.count  # every key of the chunk was dropped meanwhile
        wire = tuple((r.start, r.end) for r in st.ranges)
        del self.streams[(st.epoch, st.target, wire)]
        self.streams_done.add((st.epoch, st.target, wire))
        self.stats["streams_done"] += 1
        self._send_done(st.coordinator, dm.StreamDone(epoch=st.epoch, target=st.target, ranges=wire), out)

    def _send_done(self, coordinator: str, done: dm.StreamDone, out: list[Any]) -> None:
        if coordinator == self.node:
            self._local_done.append(done)
        else:
            out.append(Send(to=coordinator, msg=done))

    def _stream_acked(self, peer: str, req: int, ok: bool, now_us: int, out: list[Any]) -> None:
        st = next(s for s in self.streams.values() if s.req == req)
        if peer != st.target or not ok:
            return  # refused (the target's disk): resent at the deadline
        sent = st.count
        st.pos += sent
        self.stats["keys_streamed"] += sent
        st.req = 0
        self._stream_chunk(st, now_us, out)

    def _merge_acceptor_states(self, states: Iterable[tuple[bytes, bytes]], out: list[Any]) -> None:
        """Join streamed acceptor states into this node's acceptor; persisted (``px``) before the ack."""
        for key, blob in states:
            try:
                theirs = pm.decode_state(blob)
            except pm.PaxosCodecError:
                self.stats["bad_states"] += 1
                continue
            for e in self.acceptor.merge(key, theirs):
                if isinstance(e, px.Persist):
                    out.append(Persist(entry=["px", e.key, pm.encode_state(e.state)]))

    def _acceptor_states(self, keys: Iterable[bytes], target: str) -> tuple[tuple[bytes, bytes], ...]:
        """The encoded acceptor states of those of ``keys`` that have one, as ``target`` reads them."""
        empty = pm.AcceptorState()
        return tuple((k, self._state_for(target, st)) for k in keys if (st := self.acceptor.state(k)) != empty)

    def _state_for(self, target: str, state: pm.AcceptorState) -> bytes:
        """``state`` encoded for ``target``: without provenance to a node of an older version."""
        return pm.encode_state(state if target in self.provenance_peers else pm.state_without_provenance(state))

    def _forward_to_targets(self, keys: list[bytes], out: list[Any]) -> None:
        for target, ranges in self.stream_ranges.items():
            fwd = tuple((k, b) for k in keys if any(token_of(k) in r for r in ranges)
                        and (b := self.store.key_blob(k)) is not None)
            if fwd and target != self.node:
                self.stats["keys_forwarded"] += len(fwd)
                _put_states(target, fwd, out)

    def _forward_acceptor(self, key: bytes, state: pm.AcceptorState, out: list[Any]) -> None:
        token = token_of(key)
        for target, ranges in self.stream_ranges.items():
            if target != self.node and any(token in r for r in ranges):
                out.append(Send(to=target, msg=dm.Put(req=0, states=(),
                                                      paxos=((key, self._state_for(target, state)),))))

    def _replicates(self, states: tuple[tuple[bytes, bytes], ...]) -> bool:
        """Whether this node is among the write replicas of every key of ``states`` (in its view)."""
        ms = self.membership
        return all(self.node in ms.write_replicas(k)[0] for k, _ in states)

    def _late_write(self, keys: list[bytes], now_ms: int, out: list[Any]) -> None:
        """A write sent under the previous ring reached this node after the switch, for keys it no
        longer replicates: pass their states on to the keys' replicas, and clean up again later."""
        late = [k for k in keys if self.node not in self.ring.preference_list(k)]
        if not late:
            return
        by_node: dict[str, list[tuple[bytes, bytes]]] = {}
        for k in late:
            blob = self.store.key_blob(k)
            if blob is not None:
                for n in self.ring.preference_list(k):
                    by_node.setdefault(n, []).append((k, blob))
        for n, states in sorted(by_node.items()):
            self.stats["keys_forwarded"] += len(states)
            _put_states(n, states, out)
        if self.membership.cleanup_due_ms is None:
            self.membership.cleanup_due_ms = now_ms + self.membership.cleanup_delay_ms

    def membership_tick(self, now_ms: int, now_us: int, alive: Iterable[str]) -> list[Any]:
        """The change's resends, stalled streams' chunks, and the cleanup after a switch."""
        out: list[Any] = []
        self._members(self.membership.tick(now_ms, alive), now_ms, now_us, out)
        for st in list(self.streams.values()):
            if st.req and now_us >= st.deadline_us:
                self._stream_chunk(st, now_us, out)
        self._members([], now_ms, now_us, out)
        due = self.membership.cleanup_due_ms
        if due == -1:  # restarted after a switch: clean up what a crash may have left, after the delay
            due = self.membership.cleanup_due_ms = now_ms + self.membership.cleanup_delay_ms
        if due is not None and now_ms >= due:
            drop = []
            ms = self.membership
            for key in self.store.stored_keys():  # a change begun since: its pending ranges stay
                if self.node not in ms.write_replicas(key)[0]:
                    drop.append(key)
                    if len(drop) == CLEANUP_KEYS_PER_TICK:
                        break
            self._drop(drop, out)
            self.stats["keys_cleaned"] += len(drop)
            if drop:
                out.append(Changed(keys=tuple(drop)))
            if len(drop) < CLEANUP_KEYS_PER_TICK:
                self.membership.cleanup_due_ms = None
        return out

    def _drop(self, keys: list[bytes], out: list[Any]) -> None:
        """Drop ``keys`` (a cleanup: this node no longer replicates them; WAL ``drop``); the writes
        in flight for them take their whole states first (coordinator.py, ``pin``)."""
        self.coord.pin(set(keys))
        for key in keys:
            self.store.forget(key)
            self.dirty[key] = None
            out.append(Persist(entry=["drop", key]))

    def peer_down(self, peer: str, now_ms: int, now_us: int) -> list[Any]:
        for _, attr in FEATURE_PEERS:  # it may come back as another version: it announces again
            getattr(self, attr).discard(peer)
        self.hello_asks.pop(peer, None)
        self.paxos_heard.pop(peer, None)
        for req, (node, _, _) in list(self.hint_sends.items()):
            if node == peer:
                del self.hint_sends[req]
        for req, sess in list(self.ae.items()):
            if sess.peer == peer:
                del self.ae[req]
        for req, (node, *_) in list(self.catch_ups.items()):
            if node == peer:
                del self.catch_ups[req]
        return self._coordinated(self.coord.peer_down(peer, now_us), now_ms)

    # ------------------------------------------------------------ Paxos

    def paxos(self, req: int, key: bytes, decide: Decider, now_ms: int) -> list[Any]:
        """Start a Paxos operation on ``key`` among its participants in this node's view
        (``Membership.paxos_replicas``: during a change the old replicas and the pending ones, a
        quorum of the old plus one per pending replica must answer, CASSANDRA-8346; otherwise a
        majority of the replicas); ``decide`` maps the value the round read to the value it
        proposes (itself: a no-op)."""
        replicas, pending = self.membership.paxos_replicas(key)
        prop = px.PaxosProposer(node=self.node, key=key, replicas=replicas,
                                quorum=px.paxos_quorum(len(replicas), pending),
                                rng=self.rng, hlc=self.hlc, req=req, timeout_ticks=self.paxos_timeout_ticks,
                                resend_ticks=max(1, self.paxos_timeout_ticks // 5),
                                view=lambda: self._electorate(key), order=self._paxos_order,
                                commit_on_accept=self.batches)
        self.proposers[req] = (prop, decide)
        out: list[Any] = []
        self._paxos_run(self._paxos_effects(prop.start(now_ms), req, now_ms, out), now_ms, out)
        return out

    def _paxos_order(self, participants: tuple[str, ...]) -> list[str]:
        """A round's participants in the order its Prepare asks them (paxos.py, 1.: a quorum
        first): this node, then the peers it heard a Paxos message from most recently (one
        down or slow is not heard from, so it goes last)."""
        heard = self.paxos_heard
        return sorted(participants, key=lambda p: -1 << 62 if p == self.node else -heard.get(p, -1))

    def _electorate(self, key: bytes) -> pm.Electorate:
        """``key``'s Paxos electorate in this node's ring now: what its proposers send, and what
        its acceptor requires of a Prepare or Propose (paxos.py, a round fenced by its
        electorate)."""
        return px.electorate(*self.membership.paxos_replicas(key))

    def paxos_states(self) -> list[tuple[bytes, bytes]]:
        """Every key's acceptor state, encoded (for a snapshot)."""
        return [(k, pm.encode_state(st)) for k, st in self.acceptor.states()]

    def paxos_tick(self, now_ms: int) -> list[Any]:
        out: list[Any] = []
        for req, (prop, _) in list(self.proposers.items()):
            self._paxos_run(self._paxos_effects(prop.tick(now_ms), req, now_ms, out), now_ms, out)
        return out

    def _paxos_run(self, msgs: list[pm.PaxosMsg], now_ms: int, out: list[Any], writable: bool = True) -> None:
        """Step Paxos messages addressed to this node (from a peer, or sent to itself), in order."""
        work = list(msgs)
        at = 0
        while at < len(work):  # first in, first out (what the messages stepped send is appended)
            msg = work[at]
            at += 1
            kind = type(msg)  # the message classes are final: the exact type says which it is
            if kind is pm.Prepare or kind is pm.Propose or kind is pm.Commit:
                if not writable:
                    continue  # the disk guard: no promise that cannot be made durable
                current = self._current(msg.key) if kind is pm.Prepare else None
                mine = None if kind is pm.Commit else self._electorate(msg.key)
                effects = self.acceptor.step(msg, current, mine)
                if effects and isinstance(e := effects[0], px.Send) and isinstance(e.msg, pm.Nack) and e.msg.fenced:
                    self.stats["paxos_fenced"] += 1
                elif isinstance(msg, pm.Propose) and msg.commit and effects and isinstance(
                        e := effects[-1], px.Send) and isinstance(e.msg, pm.Accepted) and e.msg.committed:
                    self.stats["paxos_commits_on_accept"] += 1
                if msg.sender == self.node and effects:  # its own round's (paxos.py, "the durability rule")
                    first = effects[0]
                    if kind is pm.Prepare and type(first) is px.Persist and not self.stream_ranges \
                            and not self.membership.changing:
                        del effects[0]  # its promise: not logged
                    elif kind is pm.Propose and type(first) is px.Send and type(first.msg) is pm.Nack:
                        # its Propose refused: the promise above it may be another own round's, not
                        # logged; logged now, before the round's Propose goes to the other replicas
                        effects.insert(0, px.Persist(key=msg.key, state=self.acceptor.state(msg.key)))
                work.extend(self._paxos_effects(effects, 0, now_ms, out))
            else:
                entry = self.proposers.get(msg.req)
                if entry is not None:
                    work.extend(self._paxos_effects(entry[0].step(msg), msg.req, now_ms, out))

    def _paxos_effects(self, effects: list[px.Effect], req: int, now_ms: int, out: list[Any]) -> list[pm.PaxosMsg]:
        """Carry out Paxos effects; the messages addressed to this node are returned, to be stepped.

        A phase sends one message object to every participant: it is encoded once per wire form
        (a peer of an older version reads one without electorate or provenance, and a Propose
        without ``commit``: paxos.py, "Commit on accept"; in line, ``dm.PaxosBody``, only to a
        peer that announced ``FEATURE_PAXOS_BODY``, packed in a ``dm.Paxos`` to the others) and
        the peers of one form share the frame's message, which is immutable."""
        local: list[pm.PaxosMsg] = []
        framed: dict[tuple[int, bool, bool, bool, bool, bool], tuple[pm.PaxosMsg, dm.PaxosBody | dm.Paxos]] = {}
        for e in effects:
            if isinstance(e, px.Send):
                if e.to == self.node:
                    local.append(e.msg)
                else:
                    msg = e.msg
                    form = (id(msg), e.to in self.electorate_peers, e.to in self.provenance_peers,
                            e.to in self.quiet_commit_peers, e.to in self.commit_accept_peers,
                            e.to in self.paxos_body_peers)
                    known = framed.get(form)
                    if known is None or known[0] is not msg:  # the id alone: reused once msg is freed
                        if isinstance(msg, pm.Propose) and msg.commit and not (form[1] and form[4]):
                            msg = replace(msg, commit=False, after=None, noop=False)  # it would drop it
                        if isinstance(msg, (pm.Prepare, pm.Propose)) and not form[1]:
                            msg = replace(msg, electorate=None)  # an older version: it would drop it
                        if not form[2]:
                            msg = pm.without_provenance(msg)  # likewise
                        if not form[3] and isinstance(msg, pm.Commit) and not msg.ack:
                            msg = replace(msg, ack=True)  # likewise: it acks, and the ack is dropped
                        framed_msg: dm.PaxosBody | dm.Paxos
                        if form[5]:
                            framed_msg = dm.paxos_body(msg)
                        else:
                            framed_msg = dm.Paxos(data=pm.encode(msg))
                        known = framed[form] = (e.msg, framed_msg)
                    out.append(Send(to=e.to, msg=known[1]))
            elif isinstance(e, px.Persist):
                blob = pm.encode_state(e.state)
                out.append(Persist(entry=["px", e.key, blob]))
                if self.stream_ranges:  # a range streamed: the new owner learns the change too
                    self._forward_acceptor(e.key, e.state, out)
            elif isinstance(e, px.ApplyCommit):
                self._apply_commit(e, now_ms, out)
                if e.behind:
                    self._catch_up(e.key, now_ms, out)
            elif isinstance(e, px.Decide):
                prop, decide = self.proposers[req]
                local_effects = prop.decided(decide(e.current))
                local.extend(self._paxos_effects(local_effects, req, now_ms, out))
            elif isinstance(e, px.Done):
                self.proposers.pop(req, None)
                out.append(PaxosDone(req=req, outcome=e.outcome))
        return local

    def _current(self, key: bytes) -> tuple[int, bytes | None]:
        """The replica's data for ``key`` as Paxos reads it: (hlc of the value, the string)."""
        ks = self.store.state(key)
        if ks is None or self.store.visible_head(key) is None:
            return (0, None)
        win = ks.winner()
        value = ks.value()
        return (win[1] if win is not None else 0, value)

    def _apply_commit(self, e: px.ApplyCommit, now_ms: int, out: list[Any]) -> None:
        """A chosen value applied to the data as the write ``(ballot.node, ballot.hlc)`` of
        ``overwrite_muts`` (the same mutations on every replica, so the entries' ids agree), and
        logged as such; a key absent here takes ``overwrite_absent``, the same state built
        directly (a fresh key's SET NX: most commits)."""
        store, key, value = self.store, e.key, e.value
        muts = overwrite_muts(store, key, value)
        origin, hlc = e.ballot.node, e.ballot.hlc
        if store.context(key).get(origin, 0) >= hlc:
            return  # this commit (or a later write of its proposer) is here already
        if value is not None and key not in store.data:
            changed = store.overwrite_absent(origin, hlc, key, value, now_ms)
        else:
            changed = store.apply_write(origin, hlc, muts, now_ms)
        self.hlc.observe(hlc, now_ms)
        out.append(Persist(entry=["w", hlc, list(muts), now_ms, origin]))
        if changed:
            self.dirty.update(dict.fromkeys(changed))
            out.append(Changed(keys=tuple(changed)))
            if self.stream_ranges:
                self._forward_to_targets(changed, out)  # as a joined Put (see the module docstring)
            elif self.membership.state.epoch and not self.membership.changing:
                self._late_write(changed, now_ms, out)  # a proposer on the previous ring: as a late Put

    def _catch_up(self, key: bytes, now_ms: int, out: list[Any]) -> None:
        """This replica missed a commit of ``key`` (paxos.py, "A replica that missed a commit"): ask
        the key's other replicas for their whole states of it; each reply is joined as read repair
        joins one (``_join_answers``: what the peer lacks goes back to it), while both are still
        among the key's replicas (a node that left may have cleaned the key up already)."""
        self.stats["paxos_catch_ups"] += 1
        for peer in self.membership.paxos_replicas(key)[0]:
            if peer != self.node:
                self._catch_up_get(peer, key, now_ms, CATCH_UP_TRIES - 1, out)

    def _catch_up_get(self, peer: str, key: bytes, now_ms: int, left: int, out: list[Any]) -> None:
        req = self._req()
        self.catch_ups[req] = (peer, key, now_ms + self.coord.timeout_us // 1000, left)
        out.append(Send(to=peer, msg=dm.Get(req=req, keys=(key,))))

    # ------------------------------------------------------------ hints

    def deliver_hints(self, node: str, now_us: int, timeout_us: int, now_ms: int = 0) -> list[Any]:
        """The next batch of hints for ``node`` (connected now), unless one is in flight."""
        if any(n == node for n, _, _ in self.hint_sends.values()) or not self.hints.pending(node):
            return []
        batch = self.hints.batch(node, HINT_BATCH_KEYS, PUT_STATES_MAX_BYTES)
        if self.membership.state.epoch:
            out: list[Any] = []
            batch = self._reroute_hints(node, batch, now_ms, out)
            if not batch:
                return out
            req = self._req()
            self.hint_sends[req] = (node, batch, now_us + timeout_us)
            return [*out, Send(to=node, msg=dm.Put(req=req, states=tuple(batch)))]
        req = self._req()
        self.hint_sends[req] = (node, batch, now_us + timeout_us)
        return [Send(to=node, msg=dm.Put(req=req, states=tuple(batch)))]

    def _reroute_hints(self, node: str, batch: list[tuple[bytes, bytes]], now_ms: int,
                       out: list[Any]) -> list[tuple[bytes, bytes]]:
        """Hints for keys ``node`` no longer replicates (the ring changed since they were taken) go to
        the keys' replicas now, without an ack, and count as delivered; the rest are returned."""
        keep: list[tuple[bytes, bytes]] = []
        by_node: dict[str, list[tuple[bytes, bytes]]] = {}
        for key, blob in batch:
            replicas = self.membership.write_replicas(key)[0]
            if node in replicas:
                keep.append((key, blob))
                continue
            for n in replicas:
                if n != self.node:
                    by_node.setdefault(n, []).append((key, blob))
                elif self._join(key, blob, now_ms, out):
                    out.append(Changed(keys=(key,)))
            if self.hints.delivered(node, key, blob):
                self.stats["hints_delivered"] += 1
                out.append(Persist(entry=["hd", node, key, blob]))
        for n, states in sorted(by_node.items()):
            _put_states(n, states, out)
        return keep

    def _hints_acked(self, req: int, ok: bool, out: list[Any]) -> None:
        node, batch, _ = self.hint_sends.pop(req)
        if not ok:
            return
        for key, blob in batch:
            if self.hints.delivered(node, key, blob):
                self.stats["hints_delivered"] += 1
                out.append(Persist(entry=["hd", node, key, blob]))

    # ------------------------------------------------------------ timers

    def requests_due(self, now_ms: int, now_us: int) -> list[Any]:
        """The coordinator's deadlines only: timeouts and speculative retries (a precise timer)."""
        return self._coordinated(self.coord.tick(now_us), now_ms)

    def tick(self, now_ms: int, now_us: int, alive: Iterable[str], *, writable: bool = True) -> list[Any]:
        """Coordinator deadlines, hint deliveries, tombstone collection and anti-entropy."""
        up = set(alive)
        out = self.requests_due(now_ms, now_us)
        out.extend(self.membership_tick(now_ms, now_us, up))
        for peer, left in list(self.hello_asks.items()):  # unanswered asking Hellos (module docstring)
            if peer in up:
                out.append(Send(to=peer, msg=ASKING_HELLO))
                if left <= 1:
                    del self.hello_asks[peer]
                else:
                    self.hello_asks[peer] = left - 1
        for req, (_, _, deadline) in list(self.hint_sends.items()):
            if now_us >= deadline:
                del self.hint_sends[req]
        for req, sess in list(self.ae.items()):
            if now_us >= sess.deadline_us:
                del self.ae[req]
        for req, (peer, key, deadline_ms, left) in list(self.catch_ups.items()):
            if now_ms >= deadline_ms:
                del self.catch_ups[req]
                if left and peer in up:  # lost on the way (a lossy link): ask again
                    self._catch_up_get(peer, key, now_ms, left - 1, out)
        for node in self.hints.nodes():
            if node in up:
                out.extend(self.deliver_hints(node, now_us, self.coord.timeout_us, now_ms))
            elif self.membership.state.epoch and node not in self.membership.state.everyone():
                self._reroute_hints(node, self.hints.batch(node, HINT_BATCH_KEYS, PUT_STATES_MAX_BYTES), now_ms, out)  # it left
        if not writable:
            return out
        collect = [k for k, dead in self.store.dead_ms.items() if now_ms - dead >= self.tombstone_grace_ms][:1000]
        if collect:
            self.coord.pin(set(collect))  # writes in flight keep their states (coordinator.py)
        for key in collect:
            if self.store.collect(key):
                self.stats["tombstones_collected"] += 1
                self.dirty[key] = None
                out.append(Persist(entry=["gc", key]))
        if self.ae_interval_ms:
            self._ae_tick(up, now_ms, now_us, out)
        return out

    # ------------------------------------------------------------ anti-entropy

    def _ae_tick(self, up: set[str], now_ms: int, now_us: int, out: list[Any]) -> None:
        """Once a round is due: digest the keys that were waiting then, ``AE_DIGESTS_PER_UPDATE``
        per tick, then start the round (its own digests are current; keys changed since are
        newer than the round).

        Before, the round started at once and its steps digested the backlog, 1,000 keys per
        step (10-70 ms on the event loop) on both members, on every node at once (all rounds
        came due together), and compared stale digests, which made nearly every leaf differ and
        the leaf exchange carry every key (90-240 ms): the QUORUM GET p99 spikes of issue 9's
        benchmark, after the 15,000 fresh keys of its SET NX phase. Each key is still digested
        once per drain (no more CPU), a tick at a time. The first round comes at a random time
        within one interval, so nodes started together do not run their rounds together."""
        due = self._ae_due_ms
        if due is None:
            self._ae_due_ms = now_ms + self.rng.randrange(self.ae_interval_ms)
            return
        if now_ms < due or self.ae:
            return
        if self._ae_backlog is None:
            if not self.trees:
                self._update_trees(0)  # the trees exist, every stored key waiting
            self._ae_backlog = len(self.dirty)
        if self._ae_backlog > 0 and self.dirty:
            before = len(self.dirty)
            self._update_trees()
            self._ae_backlog -= before - len(self.dirty)
            if self._ae_backlog > 0 and self.dirty:
                return
        self._ae_backlog = None
        self._ae_due_ms = now_ms + self.ae_interval_ms
        self._ae_start(up, now_us, out)

    def _update_trees(self, limit: int | None = None) -> None:
        """Bring the trees up to date with the keys changed since they took their digests, at most
        ``limit`` (``AE_DIGESTS_PER_UPDATE``) of them per call, the longest waiting first.

        Invariant: a key whose stored state may differ from its digest in the trees is in
        ``dirty`` (every change adds it; a call removes only the keys it digests). ``dirty`` keeps
        the order in which keys first changed since their last digest (a dict: a key changed again
        keeps its place), so a key waits at most ``len(dirty) // AE_DIGESTS_PER_UPDATE`` calls
        more. The bound keeps one call (a round's start, each step of a walk, a peer's
        ``TreeGet``) from stalling the event loop for the whole backlog (10,000 changed keys:
        0.1-0.5 s); until the backlog is digested a round compares some older digests, which
        at worst repairs a key that was already equal or finds a difference a round later (Dynamo
        §4.7: anti-entropy converges replicas over rounds, it is not on a write's path)."""
        if not self.trees:
            groups = {tuple(sorted(self.ring.replicas_of_range(r))) for r in self.ring.owned_ranges(self.node)}
            self.trees = {g: MerkleTree(_CIRCLE, AE_TREE_DEPTH) for g in sorted(groups)}
            self.dirty.update(dict.fromkeys(self.store.stored_keys()))
        dirty = self.dirty
        limit = AE_DIGESTS_PER_UPDATE if limit is None else limit
        if len(dirty) <= limit:
            keys: Iterable[bytes] = list(dirty)
            dirty.clear()
        else:
            keys = list(islice(dirty, limit))
            for key in keys:
                del dirty[key]
        for key in keys:
            token = token_of(key)
            tree = self.trees.get(tuple(sorted(self.ring.preference_for_token(token))))
            if tree is not None:
                tree.update(key, token, self.store.key_digest(key))

    def _tree_of(self, group: Group) -> MerkleTree | None:
        self._update_trees()
        return self.trees.get(group)

    def _tree_hashes(self, msg: dm.TreeGet) -> tuple[bytes, ...]:
        tree = self._tree_of(msg.group)
        if tree is None:
            return ()
        try:
            return tuple(tree.hashes(msg.level, msg.indexes))
        except MerkleError:
            return ()

    def _leaf_keys(self, msg: dm.LeafGet) -> tuple[tuple[bytes, bytes], ...]:
        tree = self._tree_of(msg.group)
        if tree is None:
            return ()
        out: list[tuple[bytes, bytes]] = []
        for leaf in msg.leaves[:1 << AE_TREE_DEPTH]:
            if 0 <= leaf < tree.leaf_count:
                out.extend(sorted(tree.keys_in_leaf(leaf).items()))
        return tuple(out)

    def _ae_start(self, up: set[str], now_us: int, out: list[Any]) -> None:
        self._update_trees()
        groups = list(self.trees)
        for _ in range(len(groups)):
            group = groups[self._ae_next % len(groups)]
            self._ae_next += 1
            peers = [p for p in group if p != self.node and p in up]
            if peers:
                peer = self.rng.choice(peers)
                walk = MerkleWalk(self.trees[group], levels_per_step=2)
                self._ae_send(_AeSession(peer, group, walk, now_us + self.coord.timeout_us), out)
                return

    def _ae_send(self, sess: _AeSession, out: list[Any]) -> None:
        request = sess.walk.request
        assert request is not None
        req = self._req()
        self.ae[req] = sess
        out.append(Send(to=sess.peer, msg=dm.TreeGet(req=req, group=sess.group, level=request.level,
                                                      indexes=request.indexes)))

    def _ae_hashes(self, peer: str, msg: dm.TreeHashes, now_us: int, out: list[Any]) -> None:
        sess = self.ae.pop(msg.req, None)
        if sess is None or sess.peer != peer or sess.phase != "tree":
            return
        request = sess.walk.request
        if request is None or len(msg.hashes) != len(request.indexes):
            return  # the peer does not hold the range (yet): the next round tries again
        self._update_trees()
        try:
            sess.walk.receive(msg.hashes)
        except MerkleError:
            return
        if not sess.walk.done:
            self._ae_send(sess, out)
            return
        self.stats["ae_rounds"] += 1
        leaves = sess.walk.differing_leaves
        if not leaves:
            self.stats["ae_groups_in_sync"] += 1
            return
        if len(leaves) > AE_LEAVES_PER_ROUND:  # a window from a random start: every leaf has its turn
            start = self.rng.randrange(len(leaves))
            leaves = (leaves[start:] + leaves[:start])[:AE_LEAVES_PER_ROUND]
        req = self._req()
        sess.phase = "leaves"
        sess.leaves = tuple(leaves)
        self.ae[req] = sess
        out.append(Send(to=peer, msg=dm.LeafGet(req=req, group=sess.group, leaves=sess.leaves)))

    def _ae_keys(self, peer: str, msg: dm.LeafKeys, now_us: int, out: list[Any]) -> None:
        sess = self.ae.pop(msg.req, None)
        if sess is None or sess.peer != peer or sess.phase != "leaves":
            return
        self._update_trees()
        tree = self.trees.get(sess.group)
        if tree is None:
            return
        theirs = dict(msg.entries)
        mine: dict[bytes, bytes] = {}
        for leaf in sess.leaves:
            mine.update(tree.keys_in_leaf(leaf))
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))[:AE_KEYS_PER_ROUND]
        if not differ:
            return
        self.stats["ae_keys_repaired"] += len(differ)
        _put_states(peer, [(k, b) for k in differ if (b := self.store.key_blob(k)) is not None], out)
        # One Get per key: the answer to a Get is one GetReply, which cannot be cut (a key left out
        # would read as "holds nothing"), and the states of up to AE_KEYS_PER_ROUND keys of large
        # values would pass the frame limit, closing the link at every round; each answer is one
        # key's state, and ``frames`` packs the answers into frames within the limit.
        sess.phase = "keys"
        for key in differ:
            if key in theirs:
                req = self._req()
                self.ae[req] = sess
                out.append(Send(to=peer, msg=dm.Get(req=req, keys=(key,))))
