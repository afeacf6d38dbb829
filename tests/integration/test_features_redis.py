"""The online-store contract and the feature store on the real Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

import conveyor as cv
from conveyor.core.errors import BackendUnavailableError, InvalidArgumentError
from conveyor.core.ids import new_id
from conveyor.features import DataFrameSource, Entity, FeatureView, Field
from conveyor.features.online_stores import OnlineStore, RedisOnlineStore
from tests.conftest import unavailable
from tests.suites.online_stores import OnlineStoreContract

REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as e:  # noqa: BLE001 - any failure means the server is not there
        unavailable(f"Redis at {REDIS_URL} is not reachable ({e})")
    return REDIS_URL


@pytest.mark.redis
class TestRedisOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def store(self, redis_url: str) -> Iterator[OnlineStore]:
        store = RedisOnlineStore(redis_url, namespace=f"test-{new_id()}")
        yield store
        for view in ("v", "never"):
            store.drop(view)
        store.close()


@pytest.mark.redis
def test_materialize_and_read_online_through_redis(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_ONLINE_URI", redis_url)
    cv.init(tmp_path, project=f"redis-{new_id().lower()[-8:]}")  # its own key namespace
    rows = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "event_ts": [datetime(2026, 1, 1, tzinfo=UTC)] * 2,
            "spend": [1.5, 2.5],
        }
    )
    customer = Entity("customer", key="customer_id")
    view = FeatureView(
        name="spend_view",
        entities=[customer],
        source=DataFrameSource(rows),
        features=[Field("spend")],
    )
    cv.features.apply([customer, view])
    cv.features.materialize(end=datetime(2026, 1, 2, tzinfo=UTC))
    try:
        found = cv.features.online({"customer_id": [2, 1, 7]}, ["spend_view:spend"])
        assert found["spend"] == [2.5, 1.5, None]
    finally:
        from conveyor.features.service import feature_service

        feature_service().online_store.drop("spend_view")


def test_an_unreachable_redis_is_named() -> None:
    store = RedisOnlineStore("redis://127.0.0.1:1/0", namespace="x")
    with pytest.raises(BackendUnavailableError, match=r"redis://127\.0\.0\.1:1/0"):
        store.read("v", ["1", "2"])


@pytest.mark.redis
def test_a_database_number_redis_does_not_have_is_named(redis_url: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    store = RedisOnlineStore(f"{base}/9999", namespace="x")
    with pytest.raises(InvalidArgumentError, match="names a database Redis does not have"):
        store.read("v", ["1"])
