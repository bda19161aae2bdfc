"""replikv.dashboard.poller: the timeline derived from two polls, and the mode panels' helpers."""

from __future__ import annotations

import pytest

pytest.importorskip("aiohttp", reason="the dashboard needs aiohttp")

from replikv.dashboard.poller import NodeView, cluster_leader, converged, derive_events


def v(nid: str, state: str = "up", role: str = "follower", epoch: int | None = 1, **kw: object) -> NodeView:
    return NodeView(id=nid, address="", state=state, role=role if state == "up" else state, epoch=epoch, **kw)


def texts(prev: dict[str, NodeView], cur: dict[str, NodeView]) -> list[str]:
    return [e.text for e in derive_events(prev, cur, 0)]


def test_leader_killed_then_new_leader() -> None:
    a = {"n1": v("n1", role="leader"), "n2": v("n2"), "n3": v("n3")}
    b = {"n1": v("n1", state="down", epoch=None), "n2": v("n2"), "n3": v("n3")}
    assert texts(a, b) == ["n1 is down (connection refused)", "no leader (was n1)"]
    c = {"n1": v("n1", state="down", epoch=None), "n2": v("n2", role="leader", epoch=2), "n3": v("n3", epoch=2)}
    assert texts(b, c) == ["n2: follower -> leader", "leader changed: none -> n2 (term 2)"]
    # straight from one leader to another: one leader event, no separate term event
    assert texts(a, c)[-1] == "leader changed: n1 -> n2 (term 2)"
    assert not any(t.startswith("term") for t in texts(a, c))


def test_term_change_without_leader_change_and_pause() -> None:
    a = {"n1": v("n1", role="leader"), "n2": v("n2")}
    b = {"n1": v("n1", role="leader", epoch=3), "n2": v("n2", state="paused", epoch=None)}
    assert texts(a, b) == ["n2 is paused (SIGSTOP)", "term 1 -> 3"]
    assert texts(b, a) == ["n2 is up (follower)"]


def test_cluster_leader_prefers_highest_term() -> None:
    views = {"n1": v("n1", role="leader", epoch=1), "n2": v("n2", role="leader", epoch=2)}
    assert cluster_leader(views) == "n2"
    assert cluster_leader({"n1": v("n1")}) == ""


def test_group_leaders_and_convergence() -> None:
    g = {"0": {"role": "leader"}}
    a = {"n1": v("n1", groups=g), "n2": v("n2", groups={"0": {"role": "follower"}})}
    b = {"n1": v("n1", groups={"0": {"role": "follower"}}), "n2": v("n2", groups=g)}
    assert "group 0 leader: n1 -> n2" in texts(a, b)
    assert converged(a) is None
    x = {"n1": v("n1", extra={"version_vector": "n1:2,n2:1"}), "n2": v("n2", extra={"version_vector": "n2:1,n1:2"})}
    y = {"n1": v("n1", extra={"version_vector": "n1:3,n2:1"}), "n2": v("n2", extra={"version_vector": "n2:1,n1:2"})}
    assert converged(x) is True and converged(y) is False
    assert texts(x, y) == ["replicas diverged"] and texts(y, x) == ["replicas converged (one version vector)"]


def test_no_cluster_leader_events_where_every_node_writes() -> None:
    a = {"n1": v("n1", role="writer", epoch=None), "n2": v("n2", role="writer", epoch=None)}
    b = {"n1": v("n1", state="down", epoch=None), "n2": v("n2", role="writer", epoch=None)}
    assert texts(a, b) == ["n1 is down (connection refused)"]
    assert [e.text for e in derive_events(b, a, 0, single_leader=False)] == ["n1 is up (writer)"]
