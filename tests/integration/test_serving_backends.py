"""Serving on the real backends: PostgreSQL metadata, and S3 for artifacts and logs."""

from __future__ import annotations

import pytest

from tests.suites.backends import OnPostgres, OnS3
from tests.suites.serving import ServingSuite


@pytest.mark.postgres
class TestServingOnPostgres(OnPostgres, ServingSuite):
    pass


@pytest.mark.s3
class TestServingOnS3(OnS3, ServingSuite):
    pass
