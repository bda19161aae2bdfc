"""Peer authentication: the handshake proofs and the per-frame MAC.

Every node of a cluster shares one secret. A connection between two nodes is
authenticated in both directions, and then every frame on it is too.

Handshake (protocol version 2), A accepting, D dialing:

1. A -> D: ``["replikv-peer", 2, nonce_a]`` (16 random bytes).
2. D -> A: ``[d_id, a_id, nonce_d, proof_d]`` where ``a_id`` is the node D
   meant to dial and ``proof_d = HMAC(secret, "dial" | transcript)``.
3. A checks ``d_id`` is a member, ``a_id`` is itself and ``proof_d``; any
   failure gets the same answer ``[False, "refused"]`` (an unknown id and a
   wrong secret look alike from outside; the log says which) and a close.
4. A -> D: ``[True, proof_a, a_id]`` with ``proof_a = HMAC(secret, "accept"
   | transcript)``; D checks it before it sends any data frame.

``transcript = nonce_a | nonce_d | d_id | a_id`` (each length-prefixed):
both proofs bind both nonces and both identities, so a proof made for one
connection is worth nothing on another, and a relay that shows D a
challenge from a third node gets a proof naming the node D meant to reach,
which that third node refuses.

After the handshake each direction has its own key,
``HMAC(secret, "key d->a" | transcript)`` and ``"key a->d"``; every frame
carries ``BLAKE2b-128(key, seq | payload)`` after its payload, ``seq``
counting the frames sent in that direction from 0. A frame whose tag does
not match (altered, injected, replayed, reordered, dropped before it) closes
the connection: the replication cores resend after a reconnect.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

PROTOCOL_NAME = "replikv-peer"
PROTOCOL_VERSION = 2
NONCE_BYTES = 16
TAG_BYTES = 16
REFUSED = "refused"  # the one answer to every refused handshake

_SEQ = struct.Struct(">Q")


def transcript(nonce_a: bytes, nonce_d: bytes, d_id: str, a_id: str) -> bytes:
    out = bytearray()
    for part in (nonce_a, nonce_d, d_id.encode(), a_id.encode()):
        out += struct.pack(">H", len(part)) + part
    return bytes(out)


def proof(secret: bytes, label: bytes, script: bytes) -> bytes:
    return hmac.new(secret, label + script, hashlib.sha256).digest()


def check_proof(secret: bytes, label: bytes, script: bytes, given: object) -> bool:
    return isinstance(given, bytes) and hmac.compare_digest(proof(secret, label, script), given)


class FrameSealer:
    """Tags outgoing frames of one direction of one connection."""

    __slots__ = ("key", "seq")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.seq = 0

    def tag(self, payload: bytes) -> bytes:
        """The MAC of the next frame, sent right after its payload (the frame on the wire is
        payload + tag; the caller writes both without joining them: no copy of the payload)."""
        tag = hashlib.blake2b(_SEQ.pack(self.seq), key=self.key, digest_size=TAG_BYTES)
        tag.update(payload)
        self.seq += 1
        return tag.digest()


class FrameOpener:
    """Checks and strips the tags of incoming frames of one direction."""

    __slots__ = ("key", "seq")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.seq = 0

    def open(self, frame: bytes | memoryview) -> bytes | None:
        """The payload, or None when the tag does not match (close the connection). ``frame``
        may be a view of the receive buffer: it is checked in place and the payload copied
        once (a 64 KiB write's frames were copied four times on a follower)."""
        if len(frame) < TAG_BYTES:
            return None
        view = memoryview(frame)
        payload = view[:-TAG_BYTES]
        tag = hashlib.blake2b(_SEQ.pack(self.seq), key=self.key, digest_size=TAG_BYTES)
        tag.update(payload)
        if not hmac.compare_digest(tag.digest(), view[-TAG_BYTES:]):
            return None
        self.seq += 1
        return bytes(payload)


def session_keys(secret: bytes, script: bytes) -> tuple[bytes, bytes]:
    """(dialer->acceptor key, acceptor->dialer key) for one connection (32 bytes each)."""
    return proof(secret, b"key d->a", script), proof(secret, b"key a->d", script)
