"""The artifact store contract on an S3-compatible server (moto, started by the tests)."""

from __future__ import annotations

import pytest

from conveyor.store.artifacts.cas import ArtifactStore
from conveyor.testing.contracts import ArtifactStoreContract

pytestmark = pytest.mark.s3


class TestS3ArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self, s3_bucket: str) -> ArtifactStore:
        return ArtifactStore(f"s3://{s3_bucket}/conveyor/objects")


def test_s3_objects_live_under_the_prefix_by_digest(s3_bucket: str, s3_endpoint: str) -> None:
    import boto3

    store = ArtifactStore(f"s3://{s3_bucket}/team/objects")
    put = store.put(b"model bytes")
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=s3_bucket)
    keys = [o["Key"] for o in listed["Contents"]]
    assert keys == [f"team/objects/{put.digest[:2]}/{put.digest[2:]}"]
