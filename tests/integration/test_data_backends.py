"""Data versioning on the real backends: PostgreSQL metadata, and an S3-compatible store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.suites.data import DataSuite


@pytest.mark.postgres
class TestDataOnPostgres(DataSuite):
    @pytest.fixture
    def store_uri(self, postgres_uri: str) -> str:
        return postgres_uri

    @pytest.fixture
    def artifact_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "objects")


@pytest.mark.s3
class TestDataOnS3(DataSuite):
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'meta.db'}"

    @pytest.fixture
    def artifact_uri(self, s3_bucket: str) -> str:
        return f"s3://{s3_bucket}/objects"


@pytest.mark.s3
def test_push_to_an_s3_remote_and_pull_back(tmp_path: Path, s3_bucket: str) -> None:
    import conveyor as cv

    src = tmp_path / "d"
    src.mkdir()
    (src / "a.bin").write_bytes(b"a" * 5000)
    (src / "b.bin").write_bytes(b"b" * 7000)
    with cv.init(tmp_path / "p", project="p", remote_uri=f"s3://{s3_bucket}/remote") as ws:
        cv.data.add("d", src)
        assert cv.data.push().copied == 3
        for digest, _ in list(ws.artifacts.objects()):
            ws.artifacts.delete(digest)
        assert cv.data.pull(["d@1"]).copied == 3
        out = cv.data.checkout("d@1", tmp_path / "out")
        assert (out / "b.bin").read_bytes() == b"b" * 7000


@pytest.mark.s3
def test_a_pull_from_a_bucket_that_does_not_exist_names_the_bucket(
    tmp_path: Path, s3_bucket: str
) -> None:
    import conveyor as cv
    from conveyor.core.errors import NotFoundError

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.bin").write_bytes(b"a" * 100)
    with cv.init(tmp_path / "p", project="p", remote_uri=f"s3://{s3_bucket}/remote") as ws:
        cv.data.add("d", tmp_path / "d")
        cv.data.push()
        for digest, _ in list(ws.artifacts.objects()):
            ws.artifacts.delete(digest)
        with pytest.raises(NotFoundError, match=f"the bucket '{s3_bucket}x', which does not"):
            cv.data.pull(["d@1"], f"s3://{s3_bucket}x/remote")  # a typo in the bucket
        assert cv.data.pull(["d@1"]).copied == 2  # the right bucket still serves the pull


@pytest.mark.postgres
def test_a_nul_character_postgresql_cannot_store_is_named_and_nothing_is_recorded(
    tmp_path: Path, postgres_uri: str
) -> None:
    import pandas as pd

    import conveyor as cv
    from conveyor.core.errors import InvalidArgumentError, NotFoundError

    with cv.init(tmp_path / "p", project="p", store_uri=postgres_uri):
        scraped = pd.DataFrame({"id": [1, 2], "text": ["fine", "cut\x00off"]})
        with pytest.raises(InvalidArgumentError, match=r"NUL character .* not made"):
            cv.data.add("scraped", scraped)  # the value lands in the profile (JSONB)
        with pytest.raises(InvalidArgumentError, match="NUL character"):
            cv.data.add("scraped", scraped.iloc[:1], description="a\x00b")  # a text column
        with pytest.raises(NotFoundError):
            cv.data.get("scraped")
        scraped["text"] = scraped["text"].str.replace("\x00", "")  # what the hint says
        assert cv.data.add("scraped", scraped).version == 1


@pytest.mark.postgres
def test_concurrent_adds_to_one_dataset_get_distinct_numbers(
    tmp_path: Path, postgres_uri: str
) -> None:
    import threading

    import pandas as pd

    import conveyor as cv
    from conveyor.store.workspace import Workspace

    cv.init(tmp_path / "p", project="p", store_uri=postgres_uri).close()
    made: list[int] = []
    errors: list[Exception] = []

    def add(i: int) -> None:
        try:
            with Workspace.from_settings(tmp_path / "p", store_uri=postgres_uri) as ws:
                v = cv.data.add("d", pd.DataFrame({"x": [i]}), workspace=ws)
                made.append(v.version)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(made) == [1, 2, 3, 4, 5, 6]


@pytest.mark.s3
def test_a_push_to_a_bucket_that_does_not_exist_says_so(tmp_path: Path, s3_bucket: str) -> None:
    import conveyor as cv
    from conveyor.core.errors import NotFoundError

    src = tmp_path / "d"
    src.mkdir()
    (src / "a.bin").write_bytes(b"a" * 5000)
    with cv.init(tmp_path / "p", project="p"):
        cv.data.add("d", src)
        with pytest.raises(NotFoundError) as caught:
            cv.data.push(None, f"s3://{s3_bucket}-missing/remote")
    # Not "the object is in neither store": this project holds it, the bucket is missing.
    assert "Create the bucket first" in str(caught.value)
    assert f"{s3_bucket}-missing" in str(caught.value)
