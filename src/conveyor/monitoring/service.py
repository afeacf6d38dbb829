"""Monitors: a deployment's prediction log checked against a reference, one window at a time.

A monitor names a deployment, a reference dataset version (the data the model was trained
on, usually) and a window. Each run reads the window's predictions from the log (only the
columns needed, hour partitions in the window only), compares their inputs with the
reference (drift, data quality), joins the labels that arrived for them (performance), sums up
latency per model version (service), and stores the result with the monitor.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.durations import parse_duration
from conveyor.core.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from conveyor.store.metadata.schema import monitor_results, monitors
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace, current_workspace

__all__ = ["MonitorResult", "MonitorService", "monitoring_service"]

MONITOR_KIND = "monitor"
RESULT_KIND = "monitor_result"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
_list = list


def monitoring_service(ws: Workspace | None = None) -> MonitorService:
    """The monitoring service of ``ws`` (default: the workspace in use)."""
    ws = ws or current_workspace()
    return ws.service("monitoring", MonitorService)


@dataclass(frozen=True, slots=True)
class MonitorResult:
    """One run of a monitor over [start, end)."""

    monitor: str
    deployment: str
    start: datetime
    end: datetime
    rows: int
    drift: dict[str, Any]
    quality: dict[str, Any]
    performance: dict[str, Any]
    service: dict[str, Any]
    id: str = ""
    notes: list[str] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # opened or resolved by this run

    @property
    def dataset_drifted(self) -> bool | None:
        value = self.drift.get("dataset_drifted")
        return None if value is None else bool(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "monitor": self.monitor,
            "deployment": self.deployment,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": self.rows,
            "drift": self.drift,
            "quality": self.quality,
            "performance": self.performance,
            "service": self.service,
            "notes": self.notes,
            "alerts": self.alerts,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_html(self, path: str | None = None) -> str:
        """A self-contained HTML report (no scripts, no network): verdict first."""
        page = _render_html(self)
        if path is not None:
            from pathlib import Path

            target = Path(path)
            temp = target.with_name(f".{target.name}.tmp")
            temp.write_text(page, encoding="utf-8")
            temp.replace(target)
        return page


class MonitorService:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    @property
    def project_id(self) -> str:
        return str(self.ws.project.id)

    # -- definitions -----------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        deployment: str,
        reference: str | None = None,
        window: str | timedelta = "1h",
        schedule: str | None = None,
        tests: str | dict[str, str] = "auto",
        thresholds: dict[str, float] | None = None,
        min_labels: int = 30,
        columns: _list[str] | None = None,
        task: str = "auto",
    ) -> dict[str, Any]:
        """Create monitor ``name`` of ``deployment`` against the dataset version ``reference``.

        Without ``reference``, the training data of the model version the deployment serves
        (the dataset version its training run used, from the lineage graph).
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidArgumentError(
                f"The monitor name {name!r} is not valid: use 1 to 100 lowercase letters, "
                "digits, '.', '_' or '-', starting with a letter or digit."
            )
        span = window if isinstance(window, timedelta) else parse_duration(window)
        if span.total_seconds() < 1:
            raise InvalidArgumentError(f"A monitor's window must be at least 1 s; got {window!r}.")
        if schedule is not None:
            from croniter import croniter

            if not croniter.is_valid(schedule):
                raise InvalidArgumentError(
                    f"{schedule!r} is not a cron expression.", hint="e.g. '*/15 * * * *'"
                )
        if not _NAME.fullmatch(deployment or ""):
            raise InvalidArgumentError(f"The deployment name {deployment!r} is not valid.")
        if task not in ("auto", "classification", "regression"):
            raise InvalidArgumentError(
                f"task must be auto, classification or regression; got {task!r}."
            )
        from conveyor.monitoring.stats import check_tests

        check_tests(tests, thresholds)
        from conveyor.data.service import data_service

        if reference is None:
            reference = self._training_data(deployment)
        version = data_service(self.ws).get(reference)  # it must exist: fail now, not at run
        config = {
            "tests": tests,
            "thresholds": thresholds or {},
            "min_labels": int(min_labels),
            "columns": columns,
            "task": task,
            "reference_version_id": version.id,
        }
        monitor_id = ids.new_id()
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            exists = uow.conn.execute(
                sa.select(monitors.c.id).where(
                    monitors.c.project_id == self.project_id, monitors.c.name == name
                )
            ).first()
            if exists is not None:
                raise AlreadyExistsError(f"A monitor named {name!r} exists already.")
            row = {
                "id": monitor_id,
                "project_id": self.project_id,
                "name": name,
                "deployment": deployment,
                "reference": version.ref,
                "window_seconds": int(span.total_seconds()),
                "schedule": schedule,
                "next_run_at": _next_fire(schedule, uow.now) if schedule else None,
                "config": config,
                "created_at": uow.now,
                "created_by": self.ws.settings.actor,
            }
            uow.conn.execute(monitors.insert(), [row])
            ref = ObjectRef(MONITOR_KIND, monitor_id)
            shown = ("name", "deployment", "reference", "window_seconds", "schedule", "config")
            uow.audit("monitor.create", ref, after={k: row[k] for k in shown})
            uow.link(ObjectRef("dataset_version", version.id), ref, "reference_of")
        return self.get(name)

    def _training_data(self, deployment: str) -> str:
        """The dataset version that trained the model the deployment answers with (newest
        logged prediction), as ``name@N``."""
        from conveyor.store.logs import read_log
        from conveyor.store.metadata.schema import (
            dataset_versions,
            datasets,
            lineage_edges,
            model_versions,
        )
        from conveyor.store.metadata.schema import models as model_table

        now = datetime.now(UTC)
        logged = read_log(
            self.ws.settings.log_uri,
            "predictions",
            deployment=deployment,
            start=now - timedelta(days=7),
            end=now,
            columns=["model", "model_version", "role"],
        )
        if "role" in logged.columns:
            logged = logged[logged["role"] != "shadow"]
        hint = "Name it: --reference DATASET@VERSION (the data the model was trained on)."
        if logged.empty:
            raise InvalidArgumentError(
                f"Deployment {deployment!r} has logged no predictions in the last 7 days, so "
                "its model (and the data that trained it) cannot be told.",
                hint=hint,
            )
        newest = logged.sort_values("ts").iloc[-1]
        model, number = str(newest["model"]), int(newest["model_version"])
        e = lineage_edges
        query = (
            sa.select(datasets.c.name, dataset_versions.c.version)
            .select_from(model_versions)
            .join(model_table, model_table.c.id == model_versions.c.model_id)
            .join(e, (e.c.dst_kind == "run") & (e.c.dst_id == model_versions.c.run_id))
            .join(dataset_versions, dataset_versions.c.id == e.c.src_id)
            .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
            .where(
                model_table.c.project_id == self.project_id,
                model_table.c.name == model,
                model_versions.c.version == number,
                e.c.src_kind == "dataset_version",
            )
            .order_by(datasets.c.name, dataset_versions.c.version)
        )
        with self.ws.metadata.read() as conn:
            found = [f"{n}@{v}" for n, v in conn.execute(query)]
        if len(found) != 1:
            what = "no dataset version" if not found else f"several ({', '.join(found)})"
            raise InvalidArgumentError(
                f"{model}/{number}, which {deployment!r} serves, was trained on {what} that "
                "the lineage graph records.",
                hint=hint,
            )
        return found[0]

    def get(self, name: str) -> dict[str, Any]:
        with self.ws.metadata.read() as conn:
            row = conn.execute(
                sa.select(monitors).where(
                    monitors.c.project_id == self.project_id, monitors.c.name == name
                )
            ).first()
            if row is None:
                known = conn.execute(
                    sa.select(monitors.c.name).where(monitors.c.project_id == self.project_id)
                ).scalars()
                raise NotFoundError(
                    f"No monitor named {name!r} (monitors: {', '.join(sorted(known)) or 'none'}).",
                    hint="conveyor monitor create NAME --deployment D --reference DATASET@V",
                )
        return _monitor(row)

    def list(self) -> _list[dict[str, Any]]:
        with self.ws.metadata.read() as conn:
            rows = conn.execute(
                sa.select(monitors)
                .where(monitors.c.project_id == self.project_id)
                .order_by(monitors.c.name)
            ).all()
        return [_monitor(r) for r in rows]

    def results(self, name: str, *, limit: int = 20) -> _list[MonitorResult]:
        """The monitor's latest results, newest first."""
        monitor = self.get(name)
        with self.ws.metadata.read() as conn:
            rows = conn.execute(
                sa.select(monitor_results)
                .where(monitor_results.c.monitor_id == monitor["id"])
                .order_by(monitor_results.c.end_at.desc(), monitor_results.c.id.desc())
                .limit(limit)
            ).all()
        return [_result(r.result, r.id) for r in rows]

    # -- running ---------------------------------------------------------------------------

    def run(
        self, name: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> MonitorResult:
        """Check the window [start, end) (default: the last window up to now); store it."""
        import pandas as pd

        from conveyor.data.service import data_service
        from conveyor.monitoring import checks
        from conveyor.monitoring.stats import drift
        from conveyor.store.logs import read_log

        monitor = self.get(name)
        config = monitor["config"]
        end = _utc(end) if end is not None else datetime.now(UTC)
        start = _utc(start) if start is not None else end - timedelta(seconds=monitor["window"])
        if start >= end:
            raise InvalidArgumentError(f"The window is empty: start {start} is not before {end}.")
        uri = self.ws.settings.log_uri
        window = read_log(
            uri, "predictions", deployment=monitor["deployment"], start=start, end=end
        )
        notes: _list[str] = []
        if window.empty:
            notes.append("no predictions in the window")
            window = pd.DataFrame(columns=["prediction_id", "prediction", "model", "model_version"])
        reference = data_service(self.ws).load(monitor["reference"])
        served = window
        if "role" in window.columns:  # shadow copies share ids with the answers: not served
            served = window[window["role"] != "shadow"]
        inputs = {c[len("inputs.") :]: c for c in window.columns if c.startswith("inputs.")}
        wanted = config.get("columns") or list(reference.columns)
        shared = [c for c in wanted if c in inputs and c in reference.columns]
        if not window.empty and not shared:
            notes.append("the logged inputs share no column with the reference")
        current = served[[inputs[c] for c in shared]].set_axis(shared, axis=1)
        report = drift(
            reference[shared],
            current,
            tests=config.get("tests", "auto"),
            thresholds=config.get("thresholds") or None,
        )
        labels = read_log(
            uri, "feedback", deployment=monitor["deployment"], start=start, end=datetime.now(UTC)
        )
        quality = checks.quality(reference[shared], current, shared)
        quality["missing_columns"] = sorted(c for c in wanted if c not in inputs)
        seconds = (end - start).total_seconds()
        result = MonitorResult(
            monitor=name,
            deployment=monitor["deployment"],
            start=start,
            end=end,
            rows=len(served),
            drift=report.to_dict(),
            quality=quality,
            performance=checks.performance(
                served,
                labels,
                min_labels=int(config.get("min_labels", 30)),
                task=str(config.get("task", "auto")),
            ),
            service=checks.service(window, seconds),
            notes=notes,
        )
        stored = self._store(monitor, result)
        from conveyor.monitoring.alerting import evaluate_rules

        changed = evaluate_rules(self.ws, monitor, stored.to_dict(), stored.id)
        return replace(stored, alerts=changed) if changed else stored

    def run_due(self, now: datetime | None = None) -> _list[MonitorResult]:
        """Run every scheduled monitor whose time has come (the scheduler calls this).

        Each due monitor is claimed first (its next time moved past now, only if no one else
        moved it), so two schedulers never run one window twice.
        """
        now = _utc(now) if now is not None else datetime.now(UTC)
        done: _list[MonitorResult] = []
        for found in self.list():
            due = found["next_run_at"]
            if not found["schedule"] or due is None or _utc(due) > now:
                continue
            with self.ws.metadata.transaction(project_id=self.project_id) as uow:
                claimed = uow.conn.execute(
                    monitors.update()
                    .where(monitors.c.id == found["id"], monitors.c.next_run_at == due)
                    .values(next_run_at=_next_fire(found["schedule"], now))
                )
            if claimed.rowcount == 1:
                done.append(self.run(found["name"], end=now))
        return done

    def alert_rule(
        self,
        name: str,
        expression: str,
        *,
        cooldown: str | timedelta = "6h",
        notify: _list[str] | None = None,
    ) -> dict[str, Any]:
        """Add a rule to monitor ``name``: e.g. ``drift.share_drifted > 0.3``."""
        from conveyor.monitoring.alerting import add_rule

        return add_rule(self.ws, self.get(name)["id"], expression, cooldown=cooldown, notify=notify)

    def alerts(self, *, status: str | None = None) -> _list[dict[str, Any]]:
        """Alerts of the project's monitors, newest first (``status``: open, acknowledged,
        resolved)."""
        from conveyor.monitoring.alerting import list_alerts

        return list_alerts(self.ws, status=status)

    def close_alert(self, alert_id: str, status: str) -> dict[str, Any]:
        from conveyor.monitoring.alerting import close_alert

        return close_alert(self.ws, alert_id, status)

    def _store(self, monitor: dict[str, Any], result: MonitorResult) -> MonitorResult:
        result_id = ids.new_id()
        stored = MonitorResult(**{**_fields(result), "id": result_id})
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            uow.conn.execute(
                monitor_results.insert(),
                [
                    {
                        "id": result_id,
                        "monitor_id": monitor["id"],
                        "start_at": result.start,
                        "end_at": result.end,
                        "rows": result.rows,
                        "labelled_rows": int(result.performance.get("labelled_rows", 0)),
                        "dataset_drifted": result.dataset_drifted,
                        "share_drifted": result.drift.get("share_drifted"),
                        "result": stored.to_dict(),
                        "created_at": uow.now,
                    }
                ],
            )
            uow.link(
                ObjectRef(MONITOR_KIND, monitor["id"]),
                ObjectRef(RESULT_KIND, result_id),
                "produced",
            )
        return stored

    # -- labels ----------------------------------------------------------------------------

    def log_labels(self, labels: Any, *, deployment: str) -> int:
        """Record ground truth in bulk: a table of ``prediction_id`` and ``label``."""
        import pandas as pd
        import pyarrow as pa

        from conveyor.store.logs import write_rows

        frame = pd.DataFrame(labels)
        missing = [c for c in ("prediction_id", "label") if c not in frame.columns]
        if missing:
            raise InvalidArgumentError(
                f"Labels need the column(s) {', '.join(missing)}; got {list(frame.columns)[:10]}."
            )
        if frame.empty:
            return 0
        now = datetime.now(UTC)
        table = pa.table(
            {
                "prediction_id": pa.array(frame["prediction_id"].astype(str)),
                "label": _label_array(frame["label"]),
                "ts": pa.array([now] * len(frame), pa.timestamp("us", tz="UTC")),
                "deployment": pa.array([deployment] * len(frame), pa.string()),
            }
        )
        write_rows(self.ws.settings.log_uri, "feedback", deployment, table, at=now)
        return len(frame)


def _label_array(labels: Any) -> Any:
    """Labels as one Arrow column: numbers stay numbers; anything mixed becomes text."""
    import pyarrow as pa

    try:
        return pa.array(labels, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v != v or v is None else str(v) for v in labels], pa.string())


def _next_fire(cron: str, after: datetime) -> datetime:
    from croniter import croniter

    fire: datetime = croniter(cron, after).get_next(datetime)
    return _utc(fire)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _monitor(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "deployment": row.deployment,
        "reference": row.reference,
        "window": row.window_seconds,
        "schedule": row.schedule,
        "next_run_at": row.next_run_at,
        "config": row.config,
        "created_at": row.created_at,
        "created_by": row.created_by,
    }


def _fields(result: MonitorResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in MonitorResult.__dataclass_fields__}


def _result(data: dict[str, Any], result_id: str) -> MonitorResult:
    return MonitorResult(
        monitor=data["monitor"],
        deployment=data["deployment"],
        start=datetime.fromisoformat(data["start"]),
        end=datetime.fromisoformat(data["end"]),
        rows=int(data["rows"]),
        drift=data["drift"],
        quality=data["quality"],
        performance=data["performance"],
        service=data["service"],
        id=result_id,
        notes=list(data.get("notes", [])),
        alerts=list(data.get("alerts", [])),
    )


# -- the HTML report ---------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _render_html(result: MonitorResult) -> str:
    drifted = result.dataset_drifted
    verdict = {True: "DATA DRIFTED", False: "no data drift", None: "not judged"}[drifted]
    colour = {True: "#b00020", False: "#1b5e20", None: "#555"}[drifted]
    columns = result.drift.get("columns", [])
    drift_rows = "".join(
        "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td></tr>".format(
            ' class="bad"' if c.get("drifted") else "",
            _cell(c["column"]),
            _cell(c["kind"]),
            _cell(c["test"]),
            _cell(c.get("statistic")),
            _cell(c.get("p_value")),
            _cell(c.get("threshold")),
            {True: "yes", False: "no", None: "n/a"}[c.get("drifted")],
            _cell(c.get("note")),
        )
        for c in columns
    )
    perf = result.performance
    perf_rows = "".join(f"<tr><td>{_cell(k)}</td><td>{_cell(v)}</td></tr>" for k, v in perf.items())
    service_rows = "".join(
        f"<tr><td>{_cell(ref)}</td><td>{_cell(v['rows'])}</td><td>{_cell(v['p50_ms'])}</td>"
        f"<td>{_cell(v['p95_ms'])}</td><td>{_cell(v['p99_ms'])}</td></tr>"
        for ref, v in result.service.get("versions", {}).items()
    )
    quality_rows = "".join(
        f"<tr><td>{_cell(name)}</td><td>{_cell(q.get('reference_missing'))}</td>"
        f"<td>{_cell(q.get('current_missing'))}</td><td>{_cell(q.get('out_of_range'))}</td>"
        f"<td>{_cell(', '.join(q.get('unseen_values', [])))}</td></tr>"
        for name, q in result.quality.get("columns", {}).items()
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(result.monitor)}: {html.escape(verdict)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
h1 {{ color: {colour}; }} table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
tr.bad td {{ background: #fde7e9; }}
</style></head><body>
<h1>{html.escape(verdict)}</h1>
<p>Monitor <b>{html.escape(result.monitor)}</b> of deployment
<b>{html.escape(result.deployment)}</b>, window {result.start:%Y-%m-%d %H:%M} to
{result.end:%Y-%m-%d %H:%M} UTC: {result.rows:,} predictions;
{len(result.drift.get("drifted_columns", []))} of {len(columns)} columns drifted.</p>
<ul>{notes}</ul>
<h2>Drift</h2>
<table><tr><th>column</th><th>kind</th><th>test</th><th>statistic</th><th>p-value</th>
<th>threshold</th><th>drifted</th><th>note</th></tr>{drift_rows}</table>
<h2>Performance</h2><table>{perf_rows}</table>
<h2>Data quality</h2>
<table><tr><th>column</th><th>missing (reference)</th><th>missing (window)</th>
<th>out of range</th><th>unseen values</th></tr>{quality_rows}</table>
<h2>Service</h2>
<table><tr><th>model version</th><th>rows</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>
{service_rows}</table>
</body></html>
"""
