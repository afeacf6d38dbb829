"""The metadata store contract on a real PostgreSQL server."""

from __future__ import annotations

import pytest

from conveyor.core.errors import BackendUnavailableError
from conveyor.store.metadata.store import MetadataStore
from conveyor.testing.contracts import MetadataStoreContract

pytestmark = pytest.mark.postgres


class TestPostgresMetadataStore(MetadataStoreContract):
    @pytest.fixture
    def store_uri(self, postgres_uri: str) -> str:
        return postgres_uri


def test_unreachable_postgres_names_the_host_and_hides_the_password() -> None:
    store = MetadataStore("postgresql://bob:s3cret@127.0.0.1:1/nowhere?connect_timeout=2")
    with pytest.raises(BackendUnavailableError, match=r"PostgreSQL at 127\.0\.0\.1:1") as info:
        store.open()
    assert "s3cret" not in str(info.value)
