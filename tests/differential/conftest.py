from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.differential.oracle import Differential, RawPair, RedisServer, redis_server_path


@pytest.fixture(scope="session")
def redis_oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if redis_server_path() is None:
        pytest.skip("needs redis-server (Debian redis-server; .ci/run installs it)")
    server = RedisServer(tmp_path_factory.mktemp("redis-oracle"))
    yield server
    server.close()


@pytest.fixture
def diff(redis_oracle: RedisServer) -> Differential:
    """Redis and three fresh replikv replicas, both empty (``oracle.py``)."""
    return Differential(redis_oracle)


@pytest.fixture
def raw_pair(redis_oracle: RedisServer, tmp_path: Path) -> Iterator[RawPair]:
    """Redis and a real one-node replikv process, spoken to over raw sockets (``oracle.py``)."""
    from tests.integration.cluster import Cluster

    assert redis_oracle.call("FLUSHALL") == b"OK"  # the replikv node is new; Redis is shared
    node = Cluster(tmp_path / "node", 1)
    node.start()
    try:
        yield RawPair(redis_oracle.port, node.port("n1"))
    finally:
        node.close()
