"""A sharded node's peer frames are told apart by their first byte (runtime/base.py
``service_frame``): the shared services' kinds and the mode's own must all differ. (A membership
frame once took forwarding's FORWARD_REPLY byte, and was read as a malformed reply.)"""

from replikv.runtime import forwarding, pubsub, sharded_raft


def test_every_peer_frame_kind_of_a_sharded_node_is_distinct() -> None:
    kinds = [forwarding.FORWARD, forwarding.FORWARD_REPLY, pubsub.PUBLISH_FRAME, sharded_raft.BATCH,
             sharded_raft.LEADERS, sharded_raft.MEMBER_CHECK, sharded_raft.GONE]
    assert all(len(k) == 1 for k in kinds)
    assert len(set(kinds)) == len(kinds)
