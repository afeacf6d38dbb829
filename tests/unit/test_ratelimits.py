"""Rate limits in the metadata store: a budget per key, strict when hits come at once, on
SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest

from conveyor.core.errors import RateLimitedError
from conveyor.store.metadata.store import MetadataStore
from conveyor.store.ratelimits import RateLimiter


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("postgresql-serializable", marks=pytest.mark.postgres),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MetadataStore:
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'c.db'}"
    else:
        uri = request.getfixturevalue("postgres_uri")
    if request.param == "postgresql-serializable":  # a server whose default is stricter
        options = quote("-c default_transaction_isolation=serializable")
        uri += f"{'&' if '?' in uri else '?'}options={options}"
    metadata = MetadataStore(uri)
    metadata.open()
    yield metadata
    metadata.close()


def test_a_key_past_its_budget_is_refused_and_others_are_not(store: MetadataStore) -> None:
    limiter = RateLimiter(store, limit=2)
    limiter.spend("login:10.0.0.1")
    limiter.spend("login:10.0.0.1")
    with pytest.raises(RateLimitedError, match=r"retry in \d+ s"):
        limiter.spend("login:10.0.0.1")
    limiter.spend("login:10.0.0.2")  # another address has its own budget


def test_a_refunded_hit_does_not_count(store: MetadataStore) -> None:
    limiter = RateLimiter(store, limit=1)
    limiter.refund(limiter.spend("login:10.0.0.1"))  # a login that succeeded
    limiter.spend("login:10.0.0.1")
    with pytest.raises(RateLimitedError):
        limiter.spend("login:10.0.0.1")


def test_hits_at_once_get_exactly_the_budget(store: MetadataStore) -> None:
    limiter = RateLimiter(store, limit=10)

    def guess(_: int) -> bool:
        try:
            limiter.spend("auth:10.0.0.9")
        except RateLimitedError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        passed = sum(pool.map(guess, range(40)))
    assert passed == 10  # no more, and no fewer: a refused hit does not spend the budget
