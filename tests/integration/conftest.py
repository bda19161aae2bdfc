from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from replikv import modes
from tests.integration.cluster import Cluster


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(n: int = 3, start: bool = True, **options: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"c{len(made)}", n, **options)
        made.append(cluster)
        if start:
            cluster.start()
        return cluster

    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture(params=modes.names())
def mode_cluster(request: Any, tmp_path: Path) -> Iterator[Cluster]:
    """A started cluster of each registered mode in turn (3 nodes, or the mode's most)."""
    spec = modes.get(request.param)
    c = Cluster(tmp_path / "c", min(3, spec.max_nodes or 3), election_timeout_ms=300)
    c.config.mode = spec.name
    c.config.save(c.path)
    c.start()
    yield c
    c.close()
