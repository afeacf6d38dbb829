"""What a pipeline run and its step runs look like once recorded."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["PipelineRun", "PipelineStatus", "StepRun", "StepStatus"]


class PipelineStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class StepStatus(enum.StrEnum):
    PENDING = "PENDING"  # waiting for its inputs
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    CACHED = "CACHED"  # skipped: a succeeded run with the same cache key gave its outputs
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"  # never ran: an upstream step failed or the run was stopped
    KILLED = "KILLED"


#: Step statuses whose outputs are there to use.
DONE = frozenset({StepStatus.SUCCEEDED, StepStatus.CACHED})
FINAL = frozenset(StepStatus) - {StepStatus.PENDING, StepStatus.RUNNING}


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


@dataclass(frozen=True, slots=True)
class StepRun:
    """One call of a step within a pipeline run; ``id`` is also its tracked run's id."""

    id: str
    pipeline_run_id: str
    name: str
    step: str
    status: StepStatus
    cache_key: str | None
    cached_from: str | None
    attempts: int
    upstream: list[str]
    outputs: list[dict[str, Any]]
    reads: list[dict[str, str]]
    error: str
    started_at: datetime | None
    ended_at: datetime | None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None while it runs or if it never started)."""
        return _seconds(self.started_at, self.ended_at)


class Outputs(Mapping[str, Any]):
    """The step outputs of a pipeline run, by call name, each loaded when first read."""

    def __init__(self, steps: list[StepRun], loader: Callable[[StepRun], Any]) -> None:
        self._steps = {s.name: s for s in steps if s.outputs}
        self._loader = loader
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            step = self._steps.get(name)
            if step is None:
                from conveyor.core.errors import NotFoundError

                raise NotFoundError(
                    f"No step called {name!r} has outputs in this run; "
                    f"steps with outputs: {', '.join(self._steps) or '(none)'}."
                )
            self._loaded[name] = self._loader(step)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __repr__(self) -> str:
        return f"Outputs({list(self._steps)})"


@dataclass(frozen=True)
class PipelineRun:
    """A run of a pipeline: its status, its steps, and their outputs (loaded lazily)."""

    id: str
    pipeline: str
    status: PipelineStatus
    params: dict[str, Any]
    entrypoint: str
    executor: str
    resumed_from: str | None
    cancel_requested: bool
    coordinator: str  # host:pid of the process that runs it
    heartbeat_at: datetime | None  # the coordinator's last sign of life
    error: str
    started_at: datetime
    ended_at: datetime | None
    created_by: str
    steps: list[StepRun]
    outputs: Outputs = field(repr=False, compare=False)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None while it runs)."""
        return _seconds(self.started_at, self.ended_at)

    def step(self, name: str) -> StepRun:
        """Return the step run called ``name`` (the call's name: ``train``, ``train_2``)."""
        for s in self.steps:
            if s.name == name:
                return s
        from conveyor.core.errors import NotFoundError

        raise NotFoundError(
            f"Run {self.id} of {self.pipeline!r} has no step called {name!r}; "
            f"its steps: {', '.join(s.name for s in self.steps)}."
        )
