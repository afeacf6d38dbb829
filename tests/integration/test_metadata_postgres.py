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


def test_concurrent_links_of_one_name_end_in_success_or_a_conflict(postgres_uri: str) -> None:
    import threading

    from conveyor.core.errors import ConflictError
    from conveyor.store.artifacts.cas import ArtifactStore
    from conveyor.store.catalog import link_artifact
    from conveyor.store.records import ObjectRef

    artifacts = ArtifactStore("memory://pg-concurrent-links")
    puts = [artifacts.put(f"content {i}".encode()) for i in range(8)]
    outcomes: list[str] = []
    with MetadataStore(postgres_uri) as store:
        barrier = threading.Barrier(8)

        def link(i: int) -> None:
            barrier.wait()
            try:
                with store.transaction() as uow:
                    link_artifact(uow, artifacts, puts[i], ObjectRef("run", "r"), "model.bin")
                outcomes.append("ok")
            except ConflictError:
                outcomes.append("conflict")

        threads = [threading.Thread(target=link, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]
