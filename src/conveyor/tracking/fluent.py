"""The functions at the top of ``conveyor`` for tracking: they act on the active run."""

from __future__ import annotations

import os
from typing import Any, Literal

from conveyor.core.errors import ConflictError, InvalidArgumentError
from conveyor.store.records import ArtifactLink
from conveyor.tracking.records import MetricPoint, Run, RunStatus
from conveyor.tracking.runs import ActiveRun, active_run, tracker

__all__ = [
    "delete_run",
    "end_run",
    "flush",
    "get_metric_history",
    "get_run",
    "log_artifact",
    "log_dict",
    "log_figure",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "restore_run",
    "search_runs",
    "set_tag",
    "set_tags",
    "start_run",
]


def _run() -> ActiveRun:
    run = active_run()
    if run is None:
        raise ConflictError(
            "There is no active run to log to.",
            hint="Start one first: with conveyor.start_run(experiment='...'): ...",
        )
    return run


def start_run(
    experiment: str | None = None,
    *,
    name: str | None = None,
    tags: dict[str, Any] | None = None,
    parent: ActiveRun | str | None = None,
) -> ActiveRun:
    """Start a run in ``experiment`` (created on first use) and make it the active run.

    Started inside another run, it becomes that run's child unless ``parent`` says otherwise.
    Use it as a context manager so the run ends FINISHED, FAILED or KILLED on its own.

    >>> import conveyor as cv, tempfile
    >>> _ = cv.init(tempfile.mkdtemp())
    >>> with cv.start_run(experiment="churn", name="rf") as run:
    ...     cv.log_metric("auc", 0.91)
    >>> cv.get_run(run.id).metrics
    {'auc': 0.91}
    """
    return tracker().start_run(experiment, name=name, tags=tags, parent=parent)


def end_run(status: RunStatus | str = RunStatus.FINISHED) -> None:
    """End the innermost active run (raising any logging failure already met)."""
    run = _run()
    run.end(status)
    run.tracker.writer.raise_pending()


def log_param(key: str, value: Any) -> None:
    """Log a param of the active run."""
    _run().log_params({key: value})


def log_params(values: dict[str, Any]) -> None:
    """Log params of the active run."""
    _run().log_params(values)


def log_metric(
    key: str, value: float, step: int | None = None, timestamp: float | None = None
) -> None:
    """Log a metric value of the active run (returns at once; stored in the background)."""
    _run().log_metric(key, value, step=step, timestamp=timestamp)


def log_metrics(
    values: dict[str, float], step: int | None = None, timestamp: float | None = None
) -> None:
    """Log several metric values of the active run at one step."""
    _run().log_metrics(values, step=step, timestamp=timestamp)


def set_tag(key: str, value: Any) -> None:
    """Set a tag of the active run."""
    _run().set_tags({key: value})


def set_tags(values: dict[str, Any]) -> None:
    """Set tags of the active run."""
    _run().set_tags(values)


def log_artifact(path: str | os.PathLike[str], name: str | None = None) -> list[ArtifactLink]:
    """Store a file or a directory as artifacts of the active run."""
    return _run().log_artifact(path, name)


def log_text(text: str, name: str) -> ArtifactLink:
    """Store text as an artifact of the active run."""
    return _run().log_text(text, name)


def log_dict(data: Any, name: str) -> ArtifactLink:
    """Store a dict as JSON (or YAML) as an artifact of the active run."""
    return _run().log_dict(data, name)


def log_table(table: Any, name: str) -> ArtifactLink:
    """Store a DataFrame as a Parquet artifact of the active run."""
    return _run().log_table(table, name)


def log_figure(figure: Any, name: str) -> ArtifactLink:
    """Store a matplotlib figure as an image artifact of the active run."""
    return _run().log_figure(figure, name)


def flush() -> None:
    """Wait until every value logged so far is stored; raise if any could not be."""
    tracker().flush()


def search_runs(
    experiment: str | list[str] | None = None,
    filter: str | None = None,
    order_by: list[str] | str | None = None,
    limit: int = 1000,
    *,
    page_token: str | None = None,
    view: Literal["active", "deleted", "all"] = "active",
    output: Literal["frame", "list"] = "frame",
) -> Any:
    """Find runs: a pandas DataFrame (one row per run) or, with ``output="list"``, Runs.

    ``filter`` is the filter language (``metrics.auc > 0.9 and params.depth = '8'``),
    ``order_by`` items like ``"metrics.auc desc"``. The next page's token is in
    ``frame.attrs["next_page_token"]`` (or ``runs.next_page_token``).
    """
    from conveyor.tracking.search import search, to_frame

    if output not in ("frame", "list"):
        raise InvalidArgumentError(f"output must be 'frame' or 'list'; got {output!r}.")
    t = tracker()
    t.flush()
    page = search(
        t.store,
        experiment=experiment,
        filter=filter,
        order_by=order_by,
        limit=limit,
        page_token=page_token,
        view=view,
    )
    return page.runs() if output == "list" else to_frame(page)


def delete_run(run_id: str) -> None:
    """Hide a run from searches (restore it with :func:`restore_run`)."""
    t = tracker()
    t.flush()
    t.store.set_deleted(run_id, True)


def restore_run(run_id: str) -> None:
    """Bring back a deleted run."""
    t = tracker()
    t.flush()
    t.store.set_deleted(run_id, False)


def get_run(run_id: str) -> Run:
    """Return a run with its params, latest metrics and tags (waits for pending logging)."""
    t = tracker()
    t.flush()
    return t.store.get_run(run_id)


def get_metric_history(
    run_id: str, key: str, *, max_points: int | None = None
) -> list[MetricPoint]:
    """Return a metric's points by step; ``max_points`` downsamples long histories for plots."""
    t = tracker()
    t.flush()
    return t.store.metric_history(run_id, key, max_points=max_points)
