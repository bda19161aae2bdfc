from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.differential.oracle import Differential, RedisServer, redis_server_path


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
