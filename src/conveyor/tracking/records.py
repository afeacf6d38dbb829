"""What tracking hands back: experiments, runs and metric points."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["Experiment", "MetricPoint", "Run", "RunStatus"]


class RunStatus(StrEnum):
    """The life of a run: RUNNING until it ends FINISHED, FAILED or KILLED."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


@dataclass(frozen=True, slots=True)
class Experiment:
    """A named group of runs in a project."""

    id: str
    name: str
    project_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One logged value of a metric."""

    step: int
    value: float
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Run:
    """A tracked run: what was executed, where, with which params, and what it measured."""

    id: str
    name: str
    experiment: str
    status: RunStatus
    start_time: datetime
    end_time: datetime | None
    user: str
    parent_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    git_branch: str | None = None
    git_dirty: bool | None = None
    command: str = ""
    python_version: str = ""
    host: str = ""
    environment_digest: str | None = None
    deleted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the run as plain JSON-ready values."""
        return {
            "run_id": self.id,
            "name": self.name,
            "experiment": self.experiment,
            "status": str(self.status),
            "start_time": self.start_time.isoformat(),
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "user": self.user,
            "parent_id": self.parent_id,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "tags": dict(self.tags),
            "git_commit": self.git_commit,
            "git_branch": self.git_branch,
            "git_dirty": self.git_dirty,
            "command": self.command,
            "python_version": self.python_version,
            "host": self.host,
            "environment_digest": self.environment_digest,
            "deleted": self.deleted,
        }
