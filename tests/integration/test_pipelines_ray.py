"""Pipelines on Ray: the same outputs as the other executors; a clear error for a bad address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import conveyor as cv
from tests.fixtures import flows


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
