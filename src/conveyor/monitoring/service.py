"""Monitors: a deployment's prediction log checked against a reference, one window at a time.

A monitor names a deployment, a reference dataset version (the data the model was trained
on, usually) and a window. Each run reads the window's predictions from the log (only the
columns needed, hour partitions in the window only), compares their inputs with the
reference (drift, data quality), joins the labels that arrived for them (performance), sums up
latency per model version (service), and stores the result with the monitor.
"""

from __future__ import annotations

import json
import numbers
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.durations import parse_duration
from conveyor.core.errors import (
    AlreadyExistsError,
    ConveyorError,
    InvalidArgumentError,
    NotFoundError,
)
from conveyor.store.metadata.schema import monitor_results, monitors
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace, current_workspace

__all__ = ["MonitorResult", "MonitorService", "monitoring_service"]

MONITOR_KIND = "monitor"
RESULT_KIND = "monitor_result"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
#: The longest window a monitor checks at once (a run reads the log hour by hour).
_MAX_WINDOW = timedelta(days=366)
_list = list
_VOLUME_WINDOWS = 24  # earlier results the usual volume is taken from
_REFERENCE_SAMPLE = 50_000  # reference rows scored for prediction drift
_MAX_CLASSES = 20  # whole-number predictions with at most this many values are classes


def monitoring_service(ws: Workspace | None = None) -> MonitorService:
    """The monitoring service of ``ws`` (default: the workspace in use)."""
    ws = ws or current_workspace()
    if ws.remote is not None:
        from conveyor.monitoring.remote import RemoteMonitorService

        return ws.service("monitoring", RemoteMonitorService)
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

    def to_html(
        self, path: str | None = None, *, history: _list[MonitorResult] | None = None
    ) -> str:
        """A self-contained HTML report (inline SVG charts; no scripts, no network): the
        verdict first, then each column's reference and current distributions, and drift
        over time from ``history`` (earlier results of the monitor, any order)."""
        from conveyor.monitoring.html_report import render

        page = render(self, history or [])
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
        max_feature_age: str | timedelta | None = None,
    ) -> dict[str, Any]:
        """Create monitor ``name`` of ``deployment`` against the dataset version ``reference``.

        Without ``reference``, the training data of the model version the deployment serves
        (the dataset version its training run used, from the lineage graph).
        ``max_feature_age``: online features older than this count as stale.
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidArgumentError(
                f"The monitor name {name!r} is not valid: use 1 to 100 lowercase letters, "
                "digits, '.', '_' or '-', starting with a letter or digit."
            )
        span = window if isinstance(window, timedelta) else parse_duration(window)
        if not 1 <= span.total_seconds() <= _MAX_WINDOW.total_seconds():
            raise InvalidArgumentError(
                f"A monitor's window must be from 1 s to 366 days; got {window!r}."
            )
        if schedule is not None:
            from croniter import croniter

            try:
                valid = croniter.is_valid(schedule)
                if valid:
                    _next_fire(schedule, datetime.now(UTC))  # "31 Feb" parses, never fires
            except (ValueError, KeyError):
                valid = False
            if not valid:
                raise InvalidArgumentError(
                    f"{schedule!r} is not a cron expression that ever fires.",
                    hint="e.g. '*/15 * * * *'",
                )
        if not _NAME.fullmatch(deployment or ""):
            raise InvalidArgumentError(f"The deployment name {deployment!r} is not valid.")
        if task not in ("auto", "classification", "regression"):
            raise InvalidArgumentError(
                f"task must be auto, classification or regression; got {task!r}."
            )
        from conveyor.monitoring.stats import check_tests

        check_tests(tests, thresholds)
        stale_after = None
        if max_feature_age is not None:
            age = (
                max_feature_age
                if isinstance(max_feature_age, timedelta)
                else parse_duration(max_feature_age)
            )
            stale_after = age.total_seconds()
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
            "max_feature_age": stale_after,
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
                "created_by": uow.actor,  # the caller, on a server
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
        from conveyor.store.metadata.schema import model_versions
        from conveyor.store.metadata.schema import models as model_table

        now = datetime.now(UTC)
        logged = read_log(
            self.ws.log_uri,
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
        with self.ws.metadata.read() as conn:
            made = conn.execute(
                sa.select(model_versions.c.run_id, model_versions.c.signature)
                .join(model_table, model_table.c.id == model_versions.c.model_id)
                .where(
                    model_table.c.project_id == self.project_id,
                    model_table.c.name == model,
                    model_versions.c.version == number,
                )
            ).first()
        found = self._trained_on(made.run_id, made.signature) if made and made.run_id else []
        if len(found) != 1:
            what = "no dataset version" if not found else f"several ({', '.join(found)})"
            raise InvalidArgumentError(
                f"{model}/{number}, which {deployment!r} serves, was trained on {what} that "
                "the lineage graph records.",
                hint=hint,
            )
        return found[0]

    def _trained_on(self, run_id: str, signature: dict[str, Any] | None) -> _list[str]:
        """The dataset versions (``name@N``) that best stand for what the run that logged a
        model trained on: among the versions upstream of the run (through pipeline steps'
        outputs) and the tables those runs wrote, the ones holding every input column of the
        model's signature, nearest to the run first; several only when they tie."""
        from conveyor.store.metadata.schema import dataset_versions, datasets, lineage_edges

        graph = self.ws.lineage(ObjectRef("run", run_id), direction="upstream")
        runs = {run_id: 0}
        depth: dict[str, int] = {}
        for x in graph.edges:
            if x.src.kind in ("run", "dataset_version"):
                near = runs if x.src.kind == "run" else depth
                near[x.src.id] = min(near.get(x.src.id, x.depth), x.depth)
        e = lineage_edges
        with self.ws.metadata.read() as conn:
            for run, version_id in conn.execute(
                sa.select(e.c.src_id, e.c.dst_id).where(
                    e.c.src_kind == "run",
                    e.c.src_id.in_(list(runs)),
                    e.c.dst_kind == "dataset_version",
                    e.c.relation == "produced",
                )
            ):
                # a table a step wrote is nearer to what was trained on than what it read
                depth[version_id] = min(depth.get(version_id, runs[run]), runs[run])
            rows = conn.execute(
                sa.select(
                    dataset_versions.c.id,
                    datasets.c.name,
                    dataset_versions.c.version,
                    dataset_versions.c.columns,
                )
                .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
                .where(dataset_versions.c.id.in_(list(depth)))
            ).all()
        inputs = {c["name"] for c in (signature or {}).get("inputs", []) if c.get("name")}
        ranked = sorted(
            (not inputs <= set(r.columns or {}), depth[r.id], f"{r.name}@{r.version}") for r in rows
        )
        return [ref for *rank, ref in ranked if rank == list(ranked[0][:2])]

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
        from conveyor.monitoring.stats import drift, drift_from_profile, profiled
        from conveyor.store.logs import LogInputs, read_log

        monitor = self.get(name)
        config = monitor["config"]
        try:
            end = _utc(end) if end is not None else datetime.now(UTC)
            start = _utc(start) if start is not None else end - timedelta(seconds=monitor["window"])
        except OverflowError:
            raise InvalidArgumentError(f"The window {start} to {end} is out of range.") from None
        if start >= end:
            raise InvalidArgumentError(f"The window is empty: start {start} is not before {end}.")
        if end - start > _MAX_WINDOW:
            raise InvalidArgumentError(
                f"The window from {start} to {end} is longer than 366 days; check it in parts."
            )
        data = data_service(self.ws)
        version = data.get(monitor["reference"])
        profile = version.profile or {}
        loaded: _list[Any] = []

        def reference_data() -> Any:  # read at most once, and only when needed
            if not loaded:
                loaded.append(data.load(version.ref))
            return loaded[0]

        known = list((profile.get("columns") or {}).keys()) or list(reference_data().columns)
        wanted = config.get("columns") or known
        uri = self.ws.log_uri
        at = {"deployment": monitor["deployment"], "start": start, "end": end}
        window = read_log(uri, "predictions", inputs=[], **at)  # outputs, versions, timings
        # The inputs are read a column at a time, only those judged: memory holds one
        # column of the window, however wide the log.
        logged = LogInputs(uri, "predictions", **at)
        notes: _list[str] = []
        if window.empty:
            notes.append("no predictions in the window")
            window = pd.DataFrame(columns=["prediction_id", "prediction", "model", "model_version"])
        served = window
        if "role" in window.columns:  # shadow copies share ids with the answers: not served
            served = window[window["role"] != "shadow"]
        inputs = set(logged.columns)
        shared = [c for c in wanted if c in inputs and c in known]
        if not window.empty and not shared:
            notes.append("the logged inputs share no column with the reference")
        options = {
            "tests": config.get("tests", "auto"),
            "thresholds": config.get("thresholds") or None,
        }
        if profile and all(profiled(profile, c) for c in shared):
            # the stored profile of the reference: its data is not read again
            report = drift_from_profile(profile, logged, columns=shared, **options)
            quality = checks.quality_from_profile(profile, logged, shared)
        else:
            current = pd.DataFrame({c: logged[c] for c in shared}, index=range(len(logged)))
            reference = reference_data()
            report = drift(reference[shared], current, **options)
            quality = checks.quality(reference[shared], current, shared)
        labels = read_log(
            uri, "feedback", deployment=monitor["deployment"], start=start, end=datetime.now(UTC)
        )
        quality["missing_columns"] = sorted(c for c in wanted if c not in inputs)
        seconds = (end - start).total_seconds()
        earlier = [
            (r.rows, (r.end - r.start).total_seconds())
            for r in self.results(name, limit=_VOLUME_WINDOWS)
            if r.end <= end and (r.start, r.end) != (start, end)  # not a rerun of this one
        ]
        quality["volume"] = checks.volume(len(served), seconds, earlier)
        drifted = report.to_dict()
        drifted["predictions"] = self._prediction_drift(monitor, served, reference_data)
        verdicts = [p.get("drifted") for p in drifted["predictions"].values()]
        judged = [v for v in verdicts if v is not None]
        drifted["prediction_drifted"] = any(judged) if judged else None
        service = checks.service(window, seconds)
        fresh = checks.freshness(served, config.get("max_feature_age"))
        if fresh is not None:
            service["feature_freshness"] = fresh
        result = MonitorResult(
            monitor=name,
            deployment=monitor["deployment"],
            start=start,
            end=end,
            rows=len(served),
            drift=drifted,
            quality=quality,
            performance=checks.performance(
                served,
                labels,
                min_labels=int(config.get("min_labels", 30)),
                task=str(config.get("task", "auto")),
            ),
            service=service,
            notes=notes,
        )
        stored = self._store(monitor, result)
        from conveyor.monitoring.alerting import evaluate_rules

        changed = evaluate_rules(self.ws, monitor, stored.to_dict(), stored.id)
        return replace(stored, alerts=changed) if changed else stored

    def _prediction_drift(
        self, monitor: dict[str, Any], served: Any, reference_data: Any
    ) -> dict[str, dict[str, Any]]:
        """Per model version in the window: its predictions against what it predicts on the
        reference data (so a shift in outputs shows even before any label arrives)."""
        import pandas as pd

        from conveyor.monitoring.checks import _unwrap
        from conveyor.monitoring.stats import drift_from_profile, profiled

        if served.empty or "prediction" not in served.columns:
            return {}
        config = monitor["config"]
        tests = config.get("tests", "auto")
        test = tests if isinstance(tests, str) else tests.get("prediction", "auto")
        out: dict[str, dict[str, Any]] = {}
        for (model, number), rows in served.groupby(["model", "model_version"], sort=True):
            ref = f"{model}/{int(number)}"
            current = rows["prediction"].map(_unwrap)
            if current.map(lambda v: isinstance(v, list | tuple)).any():
                out[ref] = {"column": "prediction", "drifted": None, "note": "several outputs"}
                continue
            try:
                expected = self._reference_predictions(monitor, ref, reference_data)
            except ConveyorError as e:
                note = f"cannot score the reference with {ref}: {e}"
                out[ref] = {"column": "prediction", "drifted": None, "note": note}
                continue
            if not profiled(expected, "prediction"):
                note = f"{ref}'s predictions on the reference have too many values to compare"
                out[ref] = {"column": "prediction", "drifted": None, "note": note}
                continue
            if expected.get("classes"):  # labels 1 and 1.0 and True are one class
                current = current.map(_class_key)
            report = drift_from_profile(
                expected,
                pd.DataFrame({"prediction": current.reset_index(drop=True)}),
                columns=["prediction"],
                tests=test,
                thresholds=config.get("thresholds") or None,
            )
            out[ref] = report.to_dict()["columns"][0]
        return out

    def _reference_predictions(
        self, monitor: dict[str, Any], ref: str, reference_data: Any
    ) -> dict[str, Any]:
        """The profile of what model version ``ref`` predicts on (a sample of) the monitor's
        reference data: computed once, then kept with the monitor, so later runs read
        neither the reference data nor the model."""
        import pandas as pd
        import pyarrow as pa

        from conveyor.data.tables import profile_table
        from conveyor.models.service import model_service
        from conveyor.monitoring.checks import _fractional

        cached = monitor["config"].get("prediction_profiles", {}).get(ref)
        if cached is not None:
            return dict(cached)
        sample = reference_data()
        if len(sample) > _REFERENCE_SAMPLE:
            sample = sample.sample(n=_REFERENCE_SAMPLE, random_state=0)
        loaded = model_service(self.ws).load(ref)
        try:
            predicted = loaded.predict(sample)
        except ConveyorError:
            raise
        except Exception as e:  # the model's own failure, reported as a note
            raise InvalidArgumentError(f"{type(e).__name__}: {e}") from e
        series = pd.Series(list(predicted) if getattr(predicted, "ndim", 1) > 1 else predicted)
        series = series.map(_unwrap_value).reset_index(drop=True)
        classes = str(monitor["config"].get("task", "auto")) == "classification" or (
            not _fractional(series) and series.nunique() <= _MAX_CLASSES
        )
        column = (
            pa.array(series.map(_class_key), pa.string())
            if classes
            else pa.array(pd.to_numeric(series, errors="coerce"), pa.float64())
        )
        found = {**profile_table(pa.table({"prediction": column})), "classes": classes}
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            row = uow.conn.execute(
                sa.select(monitors.c.config).where(monitors.c.id == monitor["id"])
            ).scalar_one()
            kept = {**row.get("prediction_profiles", {}), ref: found}
            uow.conn.execute(
                monitors.update()
                .where(monitors.c.id == monitor["id"])
                .values(config={**row, "prediction_profiles": kept})
            )
        return found

    def report(self, name: str, path: str | None = None, *, history: int = 50) -> str:
        """The HTML report of the monitor's latest result, with drift over its last
        ``history`` results; written to ``path`` when given."""
        results = self.results(name, limit=history)
        if not results:
            raise NotFoundError(
                f"Monitor {name!r} has no results yet.", hint=f"conveyor monitor run {name}"
            )
        return results[0].to_html(path, history=results)

    def run_due(self, now: datetime | None = None, *, on_error: Any = None) -> _list[MonitorResult]:
        """Run every scheduled monitor whose time has come (the scheduler calls this).

        Each due monitor is claimed first (its next time moved past now, only if no one else
        moved it), so two schedulers never run one window twice. A monitor that fails does
        not keep the others from running: ``on_error(name, error)`` is told, else the first
        failure is raised once all have run.
        """
        now = _utc(now) if now is not None else datetime.now(UTC)
        done: _list[MonitorResult] = []
        failed: _list[tuple[str, Exception]] = []
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
            if claimed.rowcount != 1:
                continue
            try:
                done.append(self.run(found["name"], end=now))
            except Exception as e:  # noqa: BLE001 - one monitor must not stop the others
                if on_error is None:
                    failed.append((found["name"], e))
                else:
                    on_error(found["name"], e)
        if failed:
            name, error = failed[0]
            raise InvalidArgumentError(
                f"Scheduled monitor {name!r} failed: {error}"
                + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
            ) from error
        return done

    def alert_rule(
        self,
        name: str,
        expression: str,
        *,
        cooldown: str | timedelta = "6h",
        notify: _list[str] | None = None,
    ) -> dict[str, Any]:
        """Add a rule to monitor ``name``: e.g. ``drift.share_drifted > 0.3``.

        When the monitor has run and its last result has no number at the rule's field (a
        misspelt field, most often), the rule is still added, with a ``warning`` that says
        so and lists the fields that result has.
        """
        from conveyor.monitoring.alerting import add_rule, lookup, number_fields, parse_rule

        rule = add_rule(self.ws, self.get(name)["id"], expression, cooldown=cooldown, notify=notify)
        last = self.results(name, limit=1)
        if last:
            result = last[0].to_dict()
            path = parse_rule(expression)[0]
            if lookup(result, path) is None:
                import difflib

                field = ".".join(path)
                fields = sorted(number_fields(result))
                close = difflib.get_close_matches(field, fields, n=3, cutoff=0.6)
                listed = close or fields[:12]
                rule["warning"] = (
                    f"The last result of {name} has no number at {field}: the rule holds only "
                    "once a result has one. "
                    + ("Did you mean " if close else "Fields it has: ")
                    + ", ".join(listed)
                    + ("?" if close else " ..." if len(fields) > 12 else ".")
                )
        return rule

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
        import pyarrow as pa

        from conveyor.store.logs import write_rows

        if not isinstance(deployment, str) or not _NAME.fullmatch(deployment):
            raise InvalidArgumentError(f"The deployment name {deployment!r} is not valid.")
        frame = labels_frame(labels)
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
        write_rows(self.ws.log_uri, "feedback", deployment, table, at=now)
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            uow.audit("labels.add", ObjectRef("deployment", deployment), after={"rows": len(frame)})
        return len(frame)


def labels_frame(labels: Any) -> Any:
    """``labels`` as a DataFrame with the prediction_id and label columns (refused without)."""
    import pandas as pd

    frame = pd.DataFrame(labels)
    missing = [c for c in ("prediction_id", "label") if c not in frame.columns]
    if missing:
        raise InvalidArgumentError(
            f"Labels need the column(s) {', '.join(missing)}; got {list(frame.columns)[:10]}."
        )
    return frame


def _label_array(labels: Any) -> Any:
    """Labels as one Arrow column: numbers stay numbers; anything mixed becomes text."""
    import pyarrow as pa

    try:
        return pa.array(labels, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v != v or v is None else str(v) for v in labels], pa.string())


def _unwrap_value(value: Any) -> Any:
    """A NumPy scalar or a one-element row as a plain Python value."""
    if isinstance(value, list | tuple) or getattr(value, "ndim", 0) == 1:
        return value[0] if len(value) == 1 else list(value)
    return value.item() if hasattr(value, "item") else value


def _class_key(value: Any) -> Any:
    """One key per class label: 1, 1.0 and True alike (text stays text)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return str(int(float(value)))
    return str(value)


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
