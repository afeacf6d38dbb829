"""Contract test suites: written once, run against every backend.

Subclass a suite in a test module and provide its fixture::

    class TestMyArtifactBackend(ArtifactStoreContract):
        @pytest.fixture
        def artifact_store(self):
            return ArtifactStore("myscheme://bucket/prefix")

``MetadataStoreContract`` needs a ``store_uri`` fixture naming an empty database.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conveyor.core.errors import (
    ConflictError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from conveyor.store.artifacts.cas import ArtifactStore, PutResult, key_of
from conveyor.store.catalog import link_artifact, list_artifacts
from conveyor.store.metadata.migrate import HEAD, REVISIONS
from conveyor.store.metadata.schema import audit_events, lineage_edges, metadata, projects
from conveyor.store.metadata.store import MetadataStore
from conveyor.store.records import ObjectRef

__all__ = ["ArtifactStoreContract", "MetadataStoreContract"]


def _open_in_child(uri: str, barrier: Any, results: Any) -> None:
    barrier.wait()  # every process opens the new store at the same moment
    try:
        with MetadataStore(uri) as store:
            results.put(store.revision())
    except Exception as e:  # noqa: BLE001 - reported to the parent test
        results.put(f"{type(e).__name__}: {e}")


class MetadataStoreContract:
    """What every metadata store backend must do. Needs a ``store_uri`` fixture."""

    @pytest.fixture
    def store(self, store_uri: str):  # type: ignore[no-untyped-def]
        with MetadataStore(store_uri, actor="alice") as store:
            yield store

    def test_a_new_store_is_migrated_to_head_on_first_open(self, store: MetadataStore) -> None:
        assert store.revision() == HEAD

    def test_opening_an_up_to_date_store_applies_nothing(self, store_uri: str) -> None:
        with MetadataStore(store_uri) as first:
            assert first.revision() == HEAD
        with MetadataStore(store_uri) as second:
            assert second.migrate() == []

    def test_concurrent_first_opens_all_succeed(self, store_uri: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        n = 8
        barrier, results = ctx.Barrier(n), ctx.Queue()
        procs = [
            ctx.Process(target=_open_in_child, args=(store_uri, barrier, results)) for _ in range(n)
        ]
        for p in procs:
            p.start()
        revisions = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert revisions == [HEAD] * n

    def test_schema_built_by_migrations_matches_the_declared_tables(
        self, store: MetadataStore
    ) -> None:
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []

    def test_store_made_at_first_revision_upgrades_with_data_intact(self, store_uri: str) -> None:
        with MetadataStore(store_uri, auto_migrate=False) as old:
            assert old.migrate(REVISIONS[0]) == [REVISIONS[0]]
            with old.transaction(actor="bob") as uow:
                uow.conn.execute(
                    projects.insert().values(
                        id="01JAAAAAAAAAAAAAAAAAAAAAAA",
                        name="legacy",
                        description="",
                        created_at=uow.now,
                    )
                )
                uow.link(ObjectRef("dataset_version", "d1"), ObjectRef("run", "r1"), "used_by")
                uow.audit("project.create", ObjectRef("project", "legacy"), after={"n": 1})
        with MetadataStore(store_uri) as upgraded:
            assert upgraded.revision() == HEAD
            assert upgraded.get_project("legacy").id == "01JAAAAAAAAAAAAAAAAAAAAAAA"
            graph = upgraded.lineage(ObjectRef("run", "r1"))
            assert [str(e.src) for e in graph.edges] == ["dataset_version:d1"]
            (event,) = upgraded.audit_log(actor="bob")
            assert event.after == {"n": 1}

    def test_a_store_from_a_newer_conveyor_is_refused(self, store: MetadataStore) -> None:
        with store.transaction() as uow:
            uow.conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        store.close()
        with pytest.raises(ConflictError, match="newer Conveyor"):
            MetadataStore(store.uri).open()

    def test_ensure_project_creates_once_and_audits_it(self, store: MetadataStore) -> None:
        first = store.ensure_project("churn")
        again = store.ensure_project("churn")
        assert again.id == first.id
        events = store.audit_log(action="project.create")
        assert [(e.actor, e.object.id) for e in events] == [("alice", first.id)]

    def test_timestamps_come_back_as_aware_utc(self, store: MetadataStore) -> None:
        project = store.ensure_project("clock")
        assert project.created_at.tzinfo is not None
        assert project.created_at.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - project.created_at) < timedelta(minutes=5)

    def test_change_lineage_and_audit_commit_together(self, store: MetadataStore) -> None:
        run, model = ObjectRef("run", "r1"), ObjectRef("model_version", "m@1")
        with store.transaction() as uow:
            uow.link(run, model, "produced")
            uow.audit("model_version.create", model, after={"version": 1})
        assert store.lineage(model).edges[0].src == run
        assert store.audit_log(obj=model)[0].after == {"version": 1}

    def test_a_failing_unit_of_work_leaves_nothing(self, store: MetadataStore) -> None:
        run, model = ObjectRef("run", "r2"), ObjectRef("model_version", "m@2")

        class Boom(Exception):
            pass

        def fail_midway() -> None:
            with store.transaction() as uow:
                uow.link(run, model, "produced")
                uow.audit("model_version.create", model)
                raise Boom

        with pytest.raises(Boom):
            fail_midway()
        assert store.lineage(model).edges == []
        assert store.audit_log(obj=model) == []

    def test_recording_an_edge_twice_keeps_one(self, store: MetadataStore) -> None:
        a, b = ObjectRef("run", "a"), ObjectRef("model_version", "b")
        for _ in range(2):
            with store.transaction() as uow:
                uow.link(a, b, "produced")
        assert len(store.lineage(b).edges) == 1

    def test_lineage_walks_any_depth_both_ways(self, store: MetadataStore) -> None:
        chain = [ObjectRef("node", f"n{i}") for i in range(150)]
        with store.transaction() as uow:
            for src, dst in itertools.pairwise(chain):
                uow.link(src, dst, "feeds")
        up = store.lineage(chain[-1], direction="upstream")
        assert up.nodes() == set(chain[:-1])
        assert max(e.depth for e in up.edges) == 149
        down = store.lineage(chain[0], direction="downstream", depth=3)
        assert down.nodes() == set(chain[1:4])

    def test_lineage_of_a_diamond_reports_each_edge_once(self, store: MetadataStore) -> None:
        d, r1, r2, m = (ObjectRef("x", n) for n in ("d", "r1", "r2", "m"))
        with store.transaction() as uow:
            for src, dst in ((d, r1), (d, r2), (r1, m), (r2, m)):
                uow.link(src, dst, "feeds")
        graph = store.lineage(m)
        assert len(graph.edges) == 4
        assert graph.nodes() == {d, r1, r2}

    def test_lineage_of_a_cycle_terminates(self, store: MetadataStore) -> None:
        a, b = ObjectRef("x", "a"), ObjectRef("x", "b")
        with store.transaction() as uow:
            uow.link(a, b, "feeds")
            uow.link(b, a, "feeds")
        graph = store.lineage(a, direction="downstream")
        assert graph.nodes() == {b}
        assert len(graph.edges) == 2

    def test_lineage_of_a_dense_cyclic_graph_lists_each_edge_once(
        self, store: MetadataStore
    ) -> None:
        nodes = [ObjectRef("x", f"n{i}") for i in range(30)]
        with store.transaction() as uow:
            for i, src in enumerate(nodes):  # every node feeds the next 29: 870 edges, cycles
                for dst in nodes[i + 1 :] + nodes[:i]:
                    uow.link(src, dst, "feeds")
        graph = store.lineage(nodes[0], direction="downstream")
        assert graph.nodes() == set(nodes[1:])
        assert len(graph.edges) == 870

    def test_audit_events_are_append_only_in_the_database(self, store: MetadataStore) -> None:
        with store.transaction() as uow:
            uow.audit("thing.create", ObjectRef("thing", "t"))
        for statement in (audit_events.update().values(actor="mallory"), audit_events.delete()):
            with pytest.raises(PermissionDeniedError, match="append-only"):
                self._execute(store, statement)
        assert store.audit_log()[0].actor == "alice"

    @staticmethod
    def _execute(store: MetadataStore, statement: sa.Executable) -> None:
        with store.transaction() as uow:
            uow.conn.execute(statement)

    def test_audit_log_filters_by_actor_object_and_time(self, store: MetadataStore) -> None:
        thing = ObjectRef("thing", "t")
        with store.transaction(actor="carol") as uow:
            uow.audit("thing.create", thing, after={"v": 1})
        with store.transaction(actor="dave") as uow:
            uow.audit("thing.update", thing, before={"v": 1}, after={"v": 2})
            uow.audit("other.create", ObjectRef("other", "o"))
        assert [e.action for e in store.audit_log(obj=thing)] == ["thing.update", "thing.create"]
        assert [e.action for e in store.audit_log(actor="carol")] == ["thing.create"]
        future = datetime.now(UTC) + timedelta(hours=1)
        assert store.audit_log(since=future) == []

    def test_artifact_links_name_content_and_refuse_silent_overwrite(
        self, store: MetadataStore
    ) -> None:
        run = ObjectRef("run", "r")
        one = PutResult(hashlib.sha256(b"1").hexdigest(), 1, True)
        two = PutResult(hashlib.sha256(b"2").hexdigest(), 1, True)
        with store.transaction() as uow:
            link_artifact(uow, None, one, run, "model/weights.bin")
            link_artifact(uow, None, one, run, "model/weights.bin")  # same content: no-op
        with pytest.raises(ConflictError, match="other content"), store.transaction() as uow:
            link_artifact(uow, None, two, run, "model/weights.bin")
        with store.transaction() as uow:
            link_artifact(uow, None, two, run, "model/weights.bin", replace=True)
        with store.read() as conn:
            (link,) = list_artifacts(conn, run)
        assert link.digest == two.digest
        assert link.media_type == "application/octet-stream"

    def test_bad_references_are_refused(self, store: MetadataStore) -> None:
        with pytest.raises(InvalidArgumentError, match="KIND:ID"):
            ObjectRef.parse("no-colon")
        with pytest.raises(InvalidArgumentError, match="object kind"):
            ObjectRef("Run; DROP TABLE", "x")
        with pytest.raises(InvalidArgumentError, match="itself"), store.transaction() as uow:
            uow.link(ObjectRef("x", "a"), ObjectRef("x", "a"), "feeds")
        with store.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(lineage_edges)).scalar() == 0


class ArtifactStoreContract:
    """What every artifact store backend must do. Needs an ``artifact_store`` fixture."""

    def test_put_returns_the_sha256_and_get_returns_the_bytes(
        self, artifact_store: ArtifactStore
    ) -> None:
        put = artifact_store.put(b"hello world")
        assert put.digest == hashlib.sha256(b"hello world").hexdigest()
        assert (put.size, put.created) == (11, True)
        assert artifact_store.get(put.digest) == b"hello world"
        assert artifact_store.exists(put.digest)
        assert artifact_store.size(put.digest) == 11

    def test_the_same_content_is_stored_once(self, artifact_store: ArtifactStore) -> None:
        first = artifact_store.put(b"same")
        second = artifact_store.put(io.BytesIO(b"same"))
        assert (first.digest, second.created) == (second.digest, False)
        assert [d for d, _ in artifact_store.objects()] == [first.digest]

    def test_files_and_streams_larger_than_a_chunk_round_trip(
        self, artifact_store: ArtifactStore, tmp_path: Path
    ) -> None:
        data = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB, not a multiple of the chunk size
        src = tmp_path / "big.bin"
        src.write_bytes(data)
        from_file = artifact_store.put(src)
        from_stream = artifact_store.put(io.BytesIO(data + b"!"))
        assert from_file.digest == hashlib.sha256(data).hexdigest()
        with artifact_store.open(from_stream.digest) as f:
            assert f.read() == data + b"!"
        out = artifact_store.download(from_file.digest, tmp_path / "out" / "copy.bin")
        assert out.read_bytes() == data

    def test_objects_are_laid_out_by_digest_prefix(self, artifact_store: ArtifactStore) -> None:
        put = artifact_store.put(b"layout")
        assert artifact_store.backend.exists(f"{put.digest[:2]}/{put.digest[2:]}")
        (listed,) = list(artifact_store.objects())
        assert listed[0] == put.digest
        assert listed[1].size == 6
        assert listed[1].modified is not None

    def test_a_corrupted_object_raises_integrity_error_naming_it(
        self, artifact_store: ArtifactStore
    ) -> None:
        put = artifact_store.put(b"original content")
        artifact_store.backend.put_bytes(key_of(put.digest), b"tampered content")
        with pytest.raises(IntegrityError, match=put.digest):
            artifact_store.get(put.digest)
        with pytest.raises(IntegrityError, match=put.digest):
            artifact_store.verify(put.digest)

    def test_a_missing_object_is_not_found(self, artifact_store: ArtifactStore) -> None:
        missing = hashlib.sha256(b"never stored").hexdigest()
        assert not artifact_store.exists(missing)
        with pytest.raises(NotFoundError, match=missing):
            artifact_store.get(missing)

    def test_exists_many_names_exactly_the_stored_digests(
        self, artifact_store: ArtifactStore
    ) -> None:
        never = [hashlib.sha256(b"never %d" % i).hexdigest() for i in range(3)]
        assert artifact_store.exists_many(never) == set()  # nothing stored yet
        kept = [artifact_store.put(b"kept %d" % i).digest for i in range(3)]
        gone = artifact_store.put(b"deleted").digest
        artifact_store.delete(gone)
        assert artifact_store.exists_many([*kept, gone, *never]) == set(kept)

    @pytest.mark.parametrize("digest", ["../../etc/passwd", "ab/../../x", "A" * 64, "", "ab"])
    def test_a_malformed_digest_is_refused(
        self, artifact_store: ArtifactStore, digest: str
    ) -> None:
        with pytest.raises(InvalidArgumentError, match="not an artifact digest"):
            artifact_store.get(digest)

    def test_delete_removes_the_object(self, artifact_store: ArtifactStore) -> None:
        put = artifact_store.put(b"short-lived")
        artifact_store.delete(put.digest)
        assert not artifact_store.exists(put.digest)
        assert list(artifact_store.objects()) == []
