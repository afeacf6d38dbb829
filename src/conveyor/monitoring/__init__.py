"""Monitoring: data and prediction drift, data quality, performance with late labels, service
health, alerts and reports.

>>> import conveyor as cv
>>> report = cv.monitoring.drift(reference_df, current_df)      # doctest: +SKIP
>>> report.drifted_columns, report.dataset_drifted               # doctest: +SKIP
>>> cv.monitoring.create("prod-watch", deployment="prod", reference="customers@3")  # doctest: +SKIP
>>> result = cv.monitoring.run("prod-watch")                     # doctest: +SKIP
>>> result.drift, result.quality, result.performance, result.service  # doctest: +SKIP

See docs/monitoring.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from conveyor.monitoring.service import MonitorResult, MonitorService
    from conveyor.monitoring.stats import ColumnDrift, DriftReport
    from conveyor.store.workspace import Workspace

__all__ = [
    "ColumnDrift",
    "DriftReport",
    "MonitorResult",
    "alert_rule",
    "alerts",
    "close_alert",
    "create",
    "drift",
    "get",
    "list",
    "log_labels",
    "read_table",
    "report",
    "results",
    "run",
]

_list = list


def _svc(workspace: Workspace | None) -> MonitorService:
    from conveyor.monitoring.service import monitoring_service

    return monitoring_service(workspace)


def create(
    name: str,
    *,
    deployment: str,
    reference: str | None = None,
    workspace: Workspace | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Create a monitor of ``deployment`` against the dataset version ``reference``
    (default: the data that trained the model the deployment serves).

    Options: ``window`` ("1h"), ``schedule`` (cron), ``tests``, ``thresholds``,
    ``min_labels`` (30), ``columns``, ``task``, ``max_feature_age`` (e.g. "2h").
    """
    return _svc(workspace).create(name, deployment=deployment, reference=reference, **options)


def get(name: str, *, workspace: Workspace | None = None) -> dict[str, Any]:
    """The monitor ``name``."""
    return _svc(workspace).get(name)


def list(*, workspace: Workspace | None = None) -> _list[dict[str, Any]]:
    """The project's monitors."""
    return _svc(workspace).list()


def run(
    name: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    workspace: Workspace | None = None,
) -> MonitorResult:
    """Check one window (default: the last one up to now) and store the result."""
    return _svc(workspace).run(name, start=start, end=end)


def results(name: str, *, limit: int = 20, workspace: Workspace | None = None) -> _list[Any]:
    """A monitor's latest results, newest first."""
    return _svc(workspace).results(name, limit=limit)


def report(
    name: str,
    path: str | None = None,
    *,
    history: int = 50,
    workspace: Workspace | None = None,
) -> str:
    """The HTML report of the monitor's latest result (drift over its last ``history``
    results); written to ``path`` when given, and returned."""
    return _svc(workspace).report(name, path, history=history)


def alert_rule(
    monitor: str,
    expression: str,
    *,
    cooldown: str = "6h",
    notify: _list[str] | None = None,
    workspace: Workspace | None = None,
) -> dict[str, Any]:
    """Alert when ``expression`` (e.g. ``"drift.share_drifted > 0.3"``) holds after a run.

    ``notify``: ``"log"`` (default), ``"webhook:https://..."``, ``"slack:https://..."``.
    """
    return _svc(workspace).alert_rule(monitor, expression, cooldown=cooldown, notify=notify)


def alerts(*, status: str | None = None, workspace: Workspace | None = None) -> _list[Any]:
    """Alerts, newest first; ``status`` open, acknowledged or resolved."""
    return _svc(workspace).alerts(status=status)


def close_alert(
    alert_id: str, status: str = "resolved", *, workspace: Workspace | None = None
) -> dict[str, Any]:
    """Acknowledge (``status="acknowledged"``) or resolve an alert by hand."""
    return _svc(workspace).close_alert(alert_id, status)


def log_labels(labels: Any, *, deployment: str, workspace: Workspace | None = None) -> int:
    """Record ground truth in bulk (``prediction_id``, ``label``); returns the rows written."""
    return _svc(workspace).log_labels(labels, deployment=deployment)


def drift(reference: Any, current: Any, **options: Any) -> DriftReport:
    """Per-column drift of ``current`` against ``reference`` (DataFrames); see ``stats.drift``."""
    from conveyor.monitoring.stats import drift as _drift

    return _drift(reference, current, **options)


def __getattr__(name: str) -> Any:
    if name in ("ColumnDrift", "DriftReport"):
        from conveyor.monitoring import stats as module

        return getattr(module, name)
    if name == "MonitorResult":
        from conveyor.monitoring import service

        return service.MonitorResult
    raise AttributeError(f"module 'conveyor.monitoring' has no attribute {name!r}")


def read_table(path: Any) -> Any:
    """Read a Parquet file or folder (or a .csv) for drift checks, lean on memory.

    Text columns come as pandas categoricals (dictionary-encoded: one small code per row
    instead of one Python string), and Arrow's buffers are released while converting, so a
    table takes about the memory of its numbers. ``conveyor monitor drift`` reads this way.
    """
    from pathlib import Path

    import pandas as pd
    import pyarrow.parquet as pq

    source = Path(path)
    if source.suffix == ".csv":
        frame = pd.read_csv(source)
        for name in frame.columns:
            if frame[name].dtype == object:
                frame[name] = frame[name].astype("category")
        return frame
    import pyarrow as pa

    first = source
    if source.is_dir():
        files = sorted(source.rglob("*.parquet"))
        if not files:
            from conveyor.core.errors import InvalidArgumentError

            raise InvalidArgumentError(f"{source} holds no Parquet files.")
        first = files[0]
    schema = pq.read_schema(first)
    text = [f.name for f in schema if str(f.type) in ("string", "large_string")]

    table = pq.read_table(source, read_dictionary=text, pre_buffer=False)
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    pa.default_memory_pool().release_unused()  # hand the decoding buffers back to the OS
    return frame
