"""A real redis-server per test module of the job layer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.distributed.conftest import RedisProcess


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
