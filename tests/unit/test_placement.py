"""Group placement and rebalancing (core/sharding/placement.py)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.core.sharding import (
    Move,
    PlacementError,
    leader_counts,
    place_groups,
    rebalance,
    replica_counts,
)


def names(n: int, prefix: str = "n") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def spread(counts: Mapping[str, int]) -> int:
    return max(counts.values()) - min(counts.values())


def assert_valid(
    placement: Mapping[int, Sequence[str]], nodes: Sequence[str], sizes: Mapping[int, int]
) -> None:
    assert set(placement) == set(sizes)
    for g, members in placement.items():
        assert len(members) == sizes[g]
        assert len(set(members)) == len(members), (g, members)
        assert set(members) <= set(nodes), (g, members)
    assert spread(replica_counts(placement, nodes)) <= 1, replica_counts(placement, nodes)
    assert spread(leader_counts(placement, nodes)) <= 1, leader_counts(placement, nodes)


def apply_moves(
    placement: Mapping[int, Sequence[str]], moves: Sequence[Move]
) -> dict[int, set[str]]:
    out = {g: set(m) for g, m in placement.items()}
    for mv in moves:
        assert mv.source in out[mv.group] and mv.target not in out[mv.group], mv
        out[mv.group].remove(mv.source)
        out[mv.group].add(mv.target)
    return out


def test_three_nodes_three_groups_each_node_leads_one() -> None:
    p = place_groups(["a", "b", "c"], 3, 3)
    assert p == {0: ("a", "b", "c"), 1: ("b", "c", "a"), 2: ("c", "a", "b")}


def test_leaders_and_replicas_spread_for_nine_groups_on_three_nodes() -> None:
    p = place_groups(names(3), 9, 2)
    assert leader_counts(p, names(3)) == {"n0": 3, "n1": 3, "n2": 3}
    assert replica_counts(p, names(3)) == {"n0": 6, "n1": 6, "n2": 6}


@given(st.integers(1, 12), st.integers(1, 80), st.data())
def test_place_groups_is_balanced(n: int, k: int, data: st.DataObject) -> None:
    r = data.draw(st.integers(1, n))
    nodes = names(n)
    p = place_groups(nodes, k, r)
    assert sorted(p) == list(range(k))
    assert_valid(p, nodes, dict.fromkeys(range(k), r))
    assert place_groups(nodes, k, r) == p  # deterministic


def test_place_groups_at_scale() -> None:
    nodes = names(30)
    p = place_groups(nodes, 3000, 3)
    assert_valid(p, nodes, dict.fromkeys(range(3000), 3))
    assert set(leader_counts(p, nodes).values()) == {100}


@pytest.mark.parametrize(
    ("nodes", "k", "r"),
    [([], 1, 1), (["a"], 1, 2), (["a", "b"], 0, 1), (["a", "b"], 1, 0), (["a", "a"], 1, 1)],
)
def test_place_groups_refuses_impossible_requests(nodes: list[str], k: int, r: int) -> None:
    with pytest.raises(PlacementError):
        place_groups(nodes, k, r)


def test_adding_a_node_moves_only_what_it_takes_over() -> None:
    nodes = names(3)
    p = place_groups(nodes, 9, 3)  # every node holds all 9 groups
    result = rebalance(p, [*nodes, "n3"])
    counts = replica_counts(result.placement, [*nodes, "n3"])
    assert counts["n3"] == 6 and sorted(counts.values()) == [6, 7, 7, 7]
    assert len(result.moves) == 6 and {mv.target for mv in result.moves} == {"n3"}
    assert leader_counts(result.placement, [*nodes, "n3"])["n3"] == 2
    assert len(result.leader_changes) == 2


def test_removing_a_node_moves_exactly_its_replicas() -> None:
    nodes = names(5)
    p = place_groups(nodes, 10, 3)
    result = rebalance(p, nodes[:4])
    held = replica_counts(p, nodes)["n4"]
    assert len(result.moves) == held and {mv.source for mv in result.moves} == {"n4"}
    assert_valid(result.placement, nodes[:4], dict.fromkeys(range(10), 3))
    led = leader_counts(p, nodes)["n4"]
    assert len(result.leader_changes) == led
    assert all(ch.source is None for ch in result.leader_changes)


def test_rebalance_of_a_balanced_placement_changes_nothing() -> None:
    p = place_groups(names(7), 20, 3)
    result = rebalance(p, names(7))
    assert result.placement == p and result.moves == () and result.leader_changes == ()


def test_rebalance_refuses_groups_larger_than_the_cluster() -> None:
    with pytest.raises(PlacementError):
        rebalance(place_groups(names(3), 3, 3), names(2))
    with pytest.raises(PlacementError):
        rebalance({0: ("a", "a")}, ["a", "b"])


@st.composite
def scenarios(
    draw: st.DrawFn, max_nodes: int, max_groups: int
) -> tuple[dict[int, tuple[str, ...]], list[str]]:
    """An arbitrary (possibly unbalanced) placement of groups of one size and
    a new node list that keeps some old nodes and may add new ones."""
    old_nodes = names(draw(st.integers(1, max_nodes)))
    k = draw(st.integers(1, max_groups))
    size = draw(st.integers(1, len(old_nodes)))
    placement = {}
    for g in range(k):
        placement[g] = tuple(draw(st.permutations(old_nodes))[:size])
    kept = draw(st.lists(st.sampled_from(old_nodes), unique=True, min_size=0))
    added = names(draw(st.integers(0, 3)), "new")
    new_nodes = kept + added
    largest = max(len(m) for m in placement.values())
    if len(new_nodes) < largest:
        new_nodes += names(largest - len(new_nodes), "extra")
    return placement, new_nodes


@settings(max_examples=300, deadline=None)
@given(scenarios(max_nodes=10, max_groups=40))
def test_rebalance_is_valid_balanced_and_its_moves_explain_it(
    scenario: tuple[dict[int, tuple[str, ...]], list[str]],
) -> None:
    placement, nodes = scenario
    result = rebalance(placement, nodes)
    assert_valid(result.placement, nodes, {g: len(m) for g, m in placement.items()})
    assert apply_moves(placement, result.moves) == {g: set(m) for g, m in result.placement.items()}
    for ch in result.leader_changes:
        assert result.placement[ch.group][0] == ch.target != placement[ch.group][0]
    unchanged = set(placement) - {ch.group for ch in result.leader_changes}
    assert all(result.placement[g][0] == placement[g][0] for g in unchanged)
    # Every replica on a removed node moves, and no more than that when the
    # survivors were already balanced and no node was added.
    gone = sum(1 for m in placement.values() for x in m if x not in nodes)
    assert len(result.moves) >= gone


def fewest_moves(placement: Mapping[int, Sequence[str]], nodes: Sequence[str]) -> int:
    """Brute force: the fewest replica moves of any balanced placement."""
    groups = sorted(placement)
    choices = [list(itertools.combinations(nodes, len(placement[g]))) for g in groups]
    best = None
    for pick in itertools.product(*choices):
        counts = dict.fromkeys(nodes, 0)
        for members in pick:
            for x in members:
                counts[x] += 1
        if spread(counts) > 1:
            continue
        cost = sum(
            len(set(members) - set(placement[g])) for g, members in zip(groups, pick, strict=True)
        )
        best = cost if best is None else min(best, cost)
    assert best is not None
    return best


@settings(max_examples=300, deadline=None)
@given(scenarios(max_nodes=4, max_groups=4))
def test_rebalance_moves_as_few_replicas_as_the_brute_force_optimum(
    scenario: tuple[dict[int, tuple[str, ...]], list[str]],
) -> None:
    placement, nodes = scenario
    if len(nodes) > 5:
        nodes = nodes[:5] if max(len(m) for m in placement.values()) <= 5 else nodes
    result = rebalance(placement, nodes)
    assert len(result.moves) == fewest_moves(placement, nodes)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 12), st.integers(1, 60), st.integers(1, 3), st.data())
def test_adding_nodes_to_a_balanced_placement_moves_the_lower_bound(
    n: int, k: int, added: int, data: st.DataObject
) -> None:
    """With no node removed, the fewest moves is the surplus above the new
    ceiling (or the deficit below the new floor, whichever is larger)."""
    r = data.draw(st.integers(1, n))
    nodes = names(n)
    p = place_groups(nodes, k, r)
    new_nodes = [*nodes, *names(added, "new")]
    result = rebalance(p, new_nodes)
    counts = replica_counts(p, new_nodes)
    floor, extra = divmod(k * r, len(new_nodes))
    surplus = sum(max(0, c - (floor + (1 if extra else 0))) for c in counts.values())
    deficit = sum(max(0, floor - c) for c in counts.values())
    assert len(result.moves) == max(surplus, deficit)


def test_rebalance_after_losing_one_of_thirty_nodes() -> None:
    nodes = names(30)
    p = place_groups(nodes, 3000, 3)
    result = rebalance(p, nodes[1:])
    assert len(result.moves) == 300  # exactly n0's replicas
    assert len(result.leader_changes) == 100  # exactly the groups n0 led
    assert_valid(result.placement, nodes[1:], dict.fromkeys(range(3000), 3))


def test_rebalance_when_the_cluster_doubles() -> None:
    nodes = names(30)
    new_nodes = nodes + names(30, "x")
    result = rebalance(place_groups(nodes, 3000, 3), new_nodes)
    assert len(result.moves) == 4500  # each new node takes its 150 replicas, no more
    assert all(mv.target.startswith("x") and not mv.source.startswith("x") for mv in result.moves)
    assert_valid(result.placement, new_nodes, dict.fromkeys(range(3000), 3))
    assert len(result.leader_changes) == 1500  # each new node leads its 50 groups


# -- rebalance_steps, initial_placement (issue 13) ------------------------------------------------

from replikv.core.sharding import (  # noqa: E402
    Step,
    decode_placement,
    encode_placement,
    initial_placement,
    rebalance_steps,
)


def test_steps_add_promote_transfer_then_remove() -> None:
    old = place_groups(["n1", "n2", "n3"], 4, 3)
    plan = rebalance(old, ["n1", "n2", "n3", "n4"])
    steps = rebalance_steps(plan)
    assert plan.moves and plan.leader_changes
    for m in plan.moves:
        mine = [s for s in steps if s.group == m.group]
        ops = [(s.op, s.node) for s in mine]
        add, promote, remove = (ops.index(("add_learner", m.target)), ops.index(("promote", m.target)),
                                ops.index(("remove", m.source)))
        assert add < promote < remove
        transfers = [i for i, (op, _) in enumerate(ops) if op == "transfer"]
        assert all(promote < i < remove for i in transfers)  # never removes the member leading it
    for c in plan.leader_changes:
        assert Step(op="transfer", group=c.group, node=c.target) in steps


@given(st.integers(1, 6), st.integers(1, 9), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2))
@settings(max_examples=150, deadline=None)
def test_steps_reach_the_planned_placement(n: int, shards: int, r: int, added: int, removed: int) -> None:
    r = min(r, n)
    nodes = names(n)
    old = place_groups(nodes, shards, r)
    later = nodes[min(removed, n - 1):] + names(added, "m")
    if len(later) < r:
        return
    plan = rebalance(old, later)
    members = {g: list(m) for g, m in old.items()}
    leader = {g: m[0] for g, m in old.items()}
    for s in rebalance_steps(plan):
        m = members[s.group]
        if s.op == "add_learner":
            assert s.node not in m
            m.append(s.node)
        elif s.op == "transfer":
            assert s.node in m
            leader[s.group] = s.node
        elif s.op == "remove":
            assert s.node != leader[s.group] or leader[s.group] not in later
            m.remove(s.node)
        assert len(m) >= r  # never fewer voters than the group's size
    for g, m in plan.placement.items():
        assert sorted(members[g]) == sorted(m)
        if old[g][0] in later:
            assert leader[g] == m[0]


def test_initial_placement_founders_then_record() -> None:
    founders = ["n1", "n2", "n3"]
    assert initial_placement(None, founders, 3, 3) == place_groups(founders, 3, 3)
    stored = {0: ("n4", "n2", "n3"), 1: ("n2", "n3", "n1"), 2: ("n3", "n1", "n4")}
    record = encode_placement(stored)
    assert record == {"0": ["n4", "n2", "n3"], "1": ["n2", "n3", "n1"], "2": ["n3", "n1", "n4"]}
    assert decode_placement(record) == stored
    assert initial_placement(record, founders + ["n4"], 3, 3) == stored  # the record wins
    with pytest.raises(PlacementError):
        initial_placement(record, founders, 4, 3)  # the shard count cannot change
    for bad in ([1], {"x": ["n1"]}, {"0": []}, {"0": ["n1", "n1"]}, {"0": [1]}):
        with pytest.raises(PlacementError):
            decode_placement(bad)
