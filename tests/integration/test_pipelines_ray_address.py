"""An unreachable Ray address fails before anything is recorded (a module without a running
Ray, so the executor really tries to connect)."""

from __future__ import annotations

from pathlib import Path

import pytest

import conveyor as cv
from conveyor.core.errors import BackendUnavailableError
from tests.fixtures import flows


def test_an_unreachable_ray_address_names_it(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    cv.init(tmp_path, project="ray")
    with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1:1"):
        flows.chain.run(executor="ray://127.0.0.1:1")
    assert cv.pipelines.list_runs() == []
