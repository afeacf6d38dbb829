"""Pipelines: steps and DAGs in plain Python, cached, resumable, on processes or Ray.

>>> import conveyor as cv
>>> @cv.step
... def double(x: int) -> int:
...     return 2 * x
>>> @cv.pipeline
... def twice(x: int = 1):
...     return double(double(x))
>>> run = twice.run(x=3, executor="inline")     # doctest: +SKIP
>>> run.status, run.outputs["double_2"]         # doctest: +SKIP
('SUCCEEDED', 12)

Each step call is a tracked run (a child of the pipeline's run) whose outputs go to the
artifact store; a call whose code, arguments, inputs and declared package versions match an
earlier successful one is skipped and its outputs reused. See docs/pipelines.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.pipelines.dsl import Pipeline, Step, StepOutput, pipeline, step
from conveyor.pipelines.materializers import Materializer, register_materializer
from conveyor.pipelines.records import PipelineRun, PipelineStatus, StepRun, StepStatus

if TYPE_CHECKING:
    from conveyor.pipelines.engine import PipelineFailed
    from conveyor.pipelines.loader import load_pipeline
    from conveyor.pipelines.schedules import Schedule, delete_schedule, list_schedules, schedule
    from conveyor.pipelines.service import cancel, get_run, list_runs, resume, step_log

__all__ = [
    "Materializer",
    "Pipeline",
    "PipelineFailed",
    "PipelineRun",
    "PipelineStatus",
    "Schedule",
    "Step",
    "StepOutput",
    "StepRun",
    "StepStatus",
    "cancel",
    "delete_schedule",
    "get_run",
    "list_runs",
    "list_schedules",
    "load_pipeline",
    "pipeline",
    "register_materializer",
    "resume",
    "schedule",
    "step",
    "step_log",
]

_LAZY = {
    "PipelineFailed": "conveyor.pipelines.engine",
    "load_pipeline": "conveyor.pipelines.loader",
    "Schedule": "conveyor.pipelines.schedules",
    "schedule": "conveyor.pipelines.schedules",
    "list_schedules": "conveyor.pipelines.schedules",
    "delete_schedule": "conveyor.pipelines.schedules",
    "cancel": "conveyor.pipelines.service",
    "get_run": "conveyor.pipelines.service",
    "list_runs": "conveyor.pipelines.service",
    "resume": "conveyor.pipelines.service",
    "step_log": "conveyor.pipelines.service",
}


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'conveyor.pipelines' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
