"""ClientConnection: pipeline order and a client that went away."""

from __future__ import annotations

from types import SimpleNamespace

from replikv.config import AckLevel, NodeOptions
from replikv.runtime.acl import AccessControl
from replikv.runtime.resp_server import ClientConnection


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        if self.closing:
            raise RuntimeError("unable to perform operation: the handler is closed")
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str) -> object:
        return None if name == "socket" else ("127.0.0.1", 5555)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = high

    def get_write_buffer_size(self) -> int:
        return 0  # the fake peer reads everything at once


def make_conn(transport: FakeTransport | None = None,
              requirepass: str | None = None) -> tuple[ClientConnection, FakeTransport]:
    node = SimpleNamespace(options=NodeOptions(), clients={}, dirty_clients=set(),
                           acl=AccessControl(requirepass=requirepass, aclfile=None),
                           default_read_level=lambda: ("eventual", 0), default_ack=AckLevel("async"),
                           ack_replicas=lambda level: 0)
    conn = ClientConnection(node)  # type: ignore[arg-type]
    transport = transport or FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def test_replies_leave_in_pipeline_order_behind_a_waiting_slot():
    conn, transport = make_conn()
    slot = conn.slot()
    conn.reply_bytes(b"+second\r\n")
    conn.flush()
    assert transport.written == []          # the first reply is not ready: nothing may overtake it
    slot.resolve(b"+first\r\n")
    conn.flush()
    assert b"".join(transport.written) == b"+first\r\n+second\r\n"


def test_held_replies_go_out_before_later_slots():
    conn, transport = make_conn()
    conn.held.append(b"+w1\r\n")
    conn.reply_bytes(b"+r1\r\n")            # queued behind the held write
    slot = conn.slot()
    slot.resolve(b"+w2\r\n")
    conn.release_held()
    assert b"".join(transport.written) == b"+w1\r\n+r1\r\n+w2\r\n"


def test_flush_to_a_client_that_went_away_drops_replies_without_raising():
    conn, transport = make_conn()
    slot = conn.slot()
    transport.closing = True                # the client disconnected while its write waited
    conn.connection_lost(None)
    slot.resolve(b"+OK\r\n")
    conn.flush()                            # must not raise: the caller is a peer frame or a timer
    assert transport.written == []


def test_protected_mode_refuses_a_remote_client_while_the_default_user_has_no_password() -> None:
    """Redis's per-connection protected mode (no traffic leaves the machine: the
    peer address is the fake transport's)."""

    class RemoteTransport(FakeTransport):
        def get_extra_info(self, name: str) -> object:
            return None if name == "socket" else ("10.20.30.40", 5555)

    _, refused = make_conn(RemoteTransport())
    assert refused.written and refused.written[0].startswith(b"-DENIED") and refused.closing
    _, served = make_conn(RemoteTransport(), requirepass="pw")  # may connect (and must AUTH)
    assert not served.written and not served.closing
