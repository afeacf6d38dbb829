"""Pipelines on Ray: the same outputs as the other executors; a clear error for a bad address."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conveyor as cv
from tests.conftest import unavailable
from tests.fixtures import flows


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    try:
        import ray
    except ImportError:
        unavailable("Ray is not installed (pip install 'conveyor-mlops[ray]')")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            _temp_dir=temp,
            num_cpus=2,
            log_to_driver=False,
            configure_logging=False,
        )
        try:
            yield ray
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


def test_one_pipeline_gives_the_same_outputs_inline_local_and_on_ray(
    ray_local: Any, tmp_path: Path
) -> None:
    outputs = {}
    for executor in ("inline", "local", "ray"):
        cv.init(tmp_path / executor, project="ray")
        run = flows.numbers.run(executor=executor, n=5, factor=3)
        assert run.executor == executor
        outputs[executor] = {name: run.outputs[name] for name in ("make", "scale", "total")}
    assert outputs["ray"] == outputs["inline"] == outputs["local"]
    assert outputs["ray"]["total"] == 30


def test_fan_out_runs_as_ray_tasks_and_records_each_step(ray_local: Any, tmp_path: Path) -> None:
    cv.init(tmp_path, project="ray")
    run = flows.fanout.run(executor="ray", width=4)
    assert run.outputs["add_up"] == 12
    assert {str(s.status) for s in run.steps} == {"SUCCEEDED"}
    assert cv.get_run(run.step("double_3").id).parent_id == run.id
