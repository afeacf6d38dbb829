"""The closed loop on the real backends: PostgreSQL metadata, and S3 for artifacts and logs."""

from __future__ import annotations

import pytest

from tests.suites.backends import OnPostgres, OnS3
from tests.suites.loop import LoopSuite


@pytest.mark.postgres
class TestLoopOnPostgres(OnPostgres, LoopSuite):
    pass


@pytest.mark.s3
class TestLoopOnS3(OnS3, LoopSuite):
    pass
