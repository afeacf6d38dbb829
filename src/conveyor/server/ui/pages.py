"""The pages of the web UI, one route each, over the services the REST API calls.

Every route declares its rule with ``need(...)`` like the API's, so a page shows a project
only to its members and a button only to a role that may press it (the API refuses the
others anyway). Changes are never made by a page: its buttons call the REST API.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from conveyor.core.errors import InvalidArgumentError, NotFoundError
from conveyor.server.rules import PUBLIC, USER, Call, need
from conveyor.server.ui import charts
from conveyor.store.records import ObjectRef

__all__ = ["STATIC", "router"]

HERE = Path(__file__).parent
STATIC = HERE / "static"
RUNS_PER_PAGE = 100  # as many as MLflow's runs page asks for
CHART_POINTS = 1000  # the most points a metric chart carries: the store downsamples to this
MAX_COMPARED = 20
MAX_CHARTS = 30  # metric charts on a run page (the rest are in the metrics table)

router = APIRouter(prefix="/ui", include_in_schema=False)
_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: Any) -> str:
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


_env.filters["when"] = _when
_env.filters["number"] = _number


def _can(call: Call, role: str) -> bool:
    """True when the caller holds ``role`` in the call's project (everyone without auth)."""
    if call.principal is None:
        return True
    return call.project is not None and call.principal.can(call.project.id, role)


def page(request: Request, call: Call, template: str, **context: Any) -> HTMLResponse:
    """Render ``template`` in the frame every page shares; the render time goes out in a
    Server-Timing header."""
    started = time.perf_counter()
    html = _env.get_template(template).render(
        project=call.project.name if call.project else None,
        user=call.actor if (call.principal is not None or not call.state.auth) else None,
        auth=call.principal is not None,
        can={r: _can(call, r) for r in ("editor", "approver", "admin")},
        path=request.url.path,
        **context,
    )
    elapsed = (time.perf_counter() - started) * 1000
    return HTMLResponse(html, headers={"Server-Timing": f"render;dur={elapsed:.1f}"})


def error_page(status: int, message: str, hint: str | None) -> HTMLResponse:
    """The page of an error on a UI route (the API's JSON errors are for machines)."""
    html = _env.get_template("error.html").render(
        project=None,
        user=None,
        auth=False,
        can={},
        path="",
        status=status,
        message=message,
        hint=hint,
    )
    return HTMLResponse(html, status_code=status)


# -- entry ---------------------------------------------------------------------------------


@router.get("/login")
def login(request: Request, next: str = "/ui/", call: Call = need(PUBLIC)) -> HTMLResponse:
    safe_next = next if next.startswith("/ui/") and not next.startswith("//") else "/ui/"
    return page(request, call, "login.html", next=safe_next)


@router.get("/")
def projects(request: Request, call: Call = need(USER)) -> Any:
    found = call.state.root.metadata.list_projects()
    if call.principal is not None:
        found = [p for p in found if call.principal.role_in(p.id) is not None]
    if len(found) == 1:
        return RedirectResponse(f"/ui/p/{found[0].name}", status_code=303)
    return page(request, call, "projects.html", projects=found)


# -- home ----------------------------------------------------------------------------------


def _services(call: Call) -> Any:
    from conveyor.models.service import model_service
    from conveyor.monitoring.service import monitoring_service
    from conveyor.serving.deployment import deployment_service

    ws = call.workspace
    return model_service(ws), deployment_service(ws), monitoring_service(ws)


def _tracking(call: Call) -> Any:
    from conveyor.tracking.store import TrackingStore

    return call.workspace.service("tracking-store", TrackingStore)


@router.get("/p/{project}")
def home(request: Request, project: str, call: Call = need("viewer")) -> HTMLResponse:
    from conveyor.loop.service import loop_service
    from conveyor.tracking.search import search

    models, deployments, monitoring = _services(call)
    recent = search(_tracking(call), limit=10).runs()
    return page(
        request,
        call,
        "home.html",
        deployments=deployments.list(),
        alerts=monitoring.alerts(status="open"),
        policies=loop_service(call.workspace).list(),
        runs=recent,
        models=models.list_models(),
        pending=models.requests(status="pending"),
    )


# -- runs ----------------------------------------------------------------------------------


def _keys(runs: Iterable[Any]) -> tuple[list[str], list[str]]:
    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for run in runs:
        params.update(dict.fromkeys(run.params))
        metrics.update(dict.fromkeys(run.metrics))
    return sorted(params), sorted(metrics)


@router.get("/p/{project}/runs")
def runs(
    request: Request,
    project: str,
    filter: str = Query(default="", max_length=10_000),
    order: str = Query(default="", max_length=500),
    experiment: str = Query(default="", max_length=500),
    columns: str = Query(default="", max_length=2_000),
    page_token: str | None = Query(default=None, max_length=10_000),
    call: Call = need("viewer"),
) -> HTMLResponse:
    """A page of runs: the API's filter language and order, keyset pages (a deep page costs
    what the first does), columns for chosen params and metrics."""
    from conveyor.tracking.search import search

    store = _tracking(call)
    error = None
    listed: list[Any] = []
    next_token = None
    try:
        found = search(
            store,
            experiment=experiment or None,
            filter=filter or None,
            order_by=[o.strip() for o in order.split(",") if o.strip()] or None,
            limit=RUNS_PER_PAGE,
            page_token=page_token,
        )
        listed = list(found.runs())
        next_token = found.next_page_token
    except (InvalidArgumentError, NotFoundError) as e:
        error = e
    params, metrics = _keys(listed)
    chosen = [c.strip() for c in columns.split(",") if c.strip()]
    if not chosen:
        chosen = [f"metrics.{m}" for m in metrics[:6]] + [f"params.{p}" for p in params[:4]]
    experiments = _experiment_names(call)
    return page(
        request,
        call,
        "runs.html",
        runs=listed,
        columns=chosen,
        keys=[f"params.{p}" for p in params] + [f"metrics.{m}" for m in metrics],
        experiments=experiments,
        filter=filter,
        order=order,
        experiment=experiment,
        column_text=columns,
        next_token=next_token,
        error=error,
    )


@router.get("/p/{project}/runs/{run_id}")
def run_page(
    request: Request,
    project: str,
    run_id: str,
    x: str = Query(default="step", pattern="^(step|time)$"),
    log: bool = False,
    smoothing: float = Query(default=0.0, ge=0.0, lt=1.0),
    call: Call = need("viewer"),
) -> HTMLResponse:
    store = _tracking(call)
    run = store.get_run(run_id)
    plots = []
    keys = sorted(run.metrics)
    for key in keys[:MAX_CHARTS]:
        rows = store.metric_rows(run_id, key, max_points=CHART_POINTS)
        points = [
            (r[2] / 1000 if x == "time" else r[0], r[1])
            for r in rows
            if r[1] is not None and math.isfinite(r[1])
        ]
        points = charts.smooth(points, smoothing)
        label = "time (UTC)" if x == "time" else "step"
        chart = charts.lines([(key, points)], log_y=log, x_label=label, x_time=x == "time")
        plots.append((key, len(rows), chart))
    artifacts = [
        (a, _preview(call, run_id, a))
        for a in call.workspace.list_artifacts(ObjectRef("run", run_id))
    ]
    lineage = _neighbours(call, ObjectRef("run", run_id))
    return page(
        request,
        call,
        "run.html",
        run=run,
        plots=plots,
        artifacts=artifacts,
        lineage=lineage,
        x=x,
        log=log,
        smoothing=smoothing,
    )


IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp")  # never SVG: it can script
PREVIEW_TEXT_BYTES = 64 * 1024
PREVIEW_IMAGE_BYTES = 8 * 1024 * 1024
PREVIEW_TABLE_BYTES = 16 * 1024 * 1024  # read whole (the stores' streams do not seek)
PREVIEW_ROWS = 20


def _preview(call: Call, run_id: str, artifact: Any) -> dict[str, Any] | None:
    """What the run page shows of an artifact: an image (served by ``run_artifact``), the
    start of a text or JSON file, or the first rows of a Parquet table; None for the rest."""
    name, media, size = artifact.name, artifact.media_type or "", artifact.size
    try:
        if media in IMAGES and size <= PREVIEW_IMAGE_BYTES:
            return {"kind": "image", "src": f"runs/{run_id}/artifacts/{name}"}
        if name.endswith(".parquet") and size <= PREVIEW_TABLE_BYTES:
            import pyarrow as pa
            import pyarrow.parquet as pq

            from conveyor.core.parquet import arrow_owned

            with call.workspace.artifacts.open(artifact.digest) as f:
                parquet = pq.ParquetFile(pa.BufferReader(arrow_owned(f.read())))
            rows = next(parquet.iter_batches(batch_size=PREVIEW_ROWS), None)
            table = None if rows is None else rows.to_pylist()
            columns = parquet.schema_arrow.names
            total = parquet.metadata.num_rows
            return {"kind": "table", "columns": columns, "rows": table or [], "total": total}
        textual = media.startswith("text/") or media in ("application/json", "application/x-yaml")
        if textual or name.endswith((".txt", ".json", ".yaml", ".yml", ".md", ".csv", ".log")):
            with call.workspace.artifacts.open(artifact.digest) as f:
                head = f.read(PREVIEW_TEXT_BYTES)
            text = head.decode("utf-8", errors="replace")
            if name.endswith(".json") and size <= PREVIEW_TEXT_BYTES:
                import json
                from contextlib import suppress

                with suppress(ValueError):  # not JSON after all: shown as it is
                    text = json.dumps(json.loads(text), indent=2)
            return {"kind": "text", "text": text, "cut": size > PREVIEW_TEXT_BYTES}
    except (OSError, ValueError) as e:  # unreadable as what it claims: say so, keep the page
        return {"kind": "error", "text": f"no preview: {e}"}
    return None


@router.get("/p/{project}/runs/{run_id}/artifacts/{name:path}")
def run_artifact(project: str, run_id: str, name: str, call: Call = need("viewer")) -> Response:
    """An image artifact of a run, as an image (the run page shows it). Other kinds download
    through the API; SVG never (it can carry script)."""
    from conveyor.core.names import validate_artifact_path

    validate_artifact_path(name)
    _tracking(call).get_run(run_id)  # a run of this project, or 404
    links = {a.name: a for a in call.workspace.list_artifacts(ObjectRef("run", run_id))}
    link = links.get(name)
    if link is None or link.media_type not in IMAGES or link.size > PREVIEW_IMAGE_BYTES:
        raise NotFoundError(f"Run {run_id} has no image artifact {name!r} to show.")
    with call.workspace.artifacts.open(link.digest) as f:
        data = f.read()
    return Response(data, media_type=link.media_type, headers={"Content-Disposition": "inline"})


@router.get("/p/{project}/compare")
def compare(
    request: Request,
    project: str,
    run: list[str] = Query(default=[]),
    metric: str = Query(default="", max_length=500),
    call: Call = need("viewer"),
) -> HTMLResponse:
    """2-20 runs side by side: differing params highlighted, metric histories overlaid, a
    parallel-coordinates plot of numeric params against a metric."""
    run = list(dict.fromkeys(run))
    if not 2 <= len(run) <= MAX_COMPARED:
        raise InvalidArgumentError(
            f"Compare takes 2 to {MAX_COMPARED} runs; got {len(run)}.",
            hint="Tick the runs to compare in the runs table.",
        )
    store = _tracking(call)
    chosen = [store.get_run(r) for r in dict.fromkeys(run)]
    params, metrics = _keys(chosen)
    differs = {p for p in params if len({r.params.get(p) for r in chosen}) > 1}
    metric = metric or (metrics[0] if metrics else "")
    overlay = (
        charts.lines(
            [
                (
                    r.name or r.id[-8:],
                    [
                        (s, v)
                        for s, v, _ in store.metric_rows(r.id, metric, max_points=CHART_POINTS)
                        if v is not None
                    ],
                )
                for r in chosen
                if metric in r.metrics
            ],
            title=metric,
        )
        if metric
        else None
    )
    numeric = [p for p in params if all(_float(r.params.get(p)) is not None for r in chosen)]
    axes = [*numeric[:8], *([metric] if metric else [])]
    rows = [
        (
            r.name or r.id[-8:],
            [
                *(_float(r.params.get(p)) for p in numeric[:8]),
                *([r.metrics.get(metric)] if metric else []),
            ],
        )
        for r in chosen
    ]
    return page(
        request,
        call,
        "compare.html",
        runs=chosen,
        params=params,
        metrics=metrics,
        differs=differs,
        metric=metric,
        overlay=overlay,
        coordinates=charts.parallel(axes, rows),
    )


def _experiment_names(call: Call) -> list[str]:
    import sqlalchemy as sa

    from conveyor.store.metadata.schema import experiments

    assert call.project is not None
    with call.workspace.metadata.read() as conn:
        return list(
            conn.execute(
                sa.select(experiments.c.name)
                .where(experiments.c.project_id == call.project.id)
                .order_by(experiments.c.name)
            ).scalars()
        )


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# -- models --------------------------------------------------------------------------------


@router.get("/p/{project}/models")
def models(request: Request, project: str, call: Call = need("viewer")) -> HTMLResponse:
    service, _, _ = _services(call)
    return page(
        request,
        call,
        "models.html",
        models=service.list_models(),
        requests=service.requests(status="pending"),
    )


@router.get("/p/{project}/models/{name}")
def model(request: Request, project: str, name: str, call: Call = need("viewer")) -> HTMLResponse:
    service, _, _ = _services(call)
    registered = service.model(name)
    return page(
        request,
        call,
        "model.html",
        model=registered,
        versions=service.versions(name),
        moves=service.alias_history(name),
        requests=service.requests(name),
    )


@router.get("/p/{project}/models/{name}/compare")
def model_compare(
    request: Request,
    project: str,
    name: str,
    a: int = Query(ge=1),
    b: int = Query(ge=1),
    call: Call = need("viewer"),
) -> HTMLResponse:
    """Two versions side by side: what their runs were given and measured, the data they
    were trained on, their signatures and requirements; only the differences."""
    service, _, _ = _services(call)
    return page(
        request,
        call,
        "model_compare.html",
        name=name,
        diff=service.compare(f"{name}/{a}", f"{name}/{b}"),
        evaluations={v: service.evaluations(f"{name}/{v}") for v in (a, b)},
        a=a,
        b=b,
    )


@router.get("/p/{project}/models/{name}/versions/{version}")
def model_version(
    request: Request, project: str, name: str, version: int, call: Call = need("viewer")
) -> HTMLResponse:
    service, _, _ = _services(call)
    found = service.get(f"{name}/{version}")
    return page(
        request,
        call,
        "model_version.html",
        version=found,
        evaluations=service.evaluations(found.ref),
        card=service.card(found.ref, format="markdown"),
        lineage=_neighbours(call, ObjectRef("model_version", found.id)),
    )


# -- datasets ------------------------------------------------------------------------------


def _data(call: Call) -> Any:
    from conveyor.data.service import data_service

    return data_service(call.workspace)


@router.get("/p/{project}/datasets")
def datasets(request: Request, project: str, call: Call = need("viewer")) -> HTMLResponse:
    return page(request, call, "datasets.html", datasets=_data(call).datasets())


@router.get("/p/{project}/datasets/{name:path}")
def dataset(
    request: Request,
    project: str,
    name: str,
    version: int | None = None,
    against: int | None = None,
    validate: bool = False,
    call: Call = need("viewer"),
) -> HTMLResponse:
    """A version's profile, saved schema, the diff from another version and, on request,
    its validation against the schema saved with it (or with the nearest earlier version)."""
    service = _data(call)
    versions = service.versions(name)
    if not versions:
        raise NotFoundError(f"No dataset called {name!r}.")
    if version is not None and all(v.version != version for v in versions):
        raise NotFoundError(f"Dataset {name!r} has no version {version}.")
    shown = next((v for v in versions if v.version == version), versions[0])
    profile = (shown.profile or {}).get("columns", {})
    plots = [(column, _profile_chart(column, stats)) for column, stats in profile.items()]
    diff = None
    if against is not None:
        diff = service.diff(f"{name}@{against}", shown.ref)
    schema_text = None
    if shown.has_schema:
        from conveyor.data.validation import schema_to_yaml

        found = service.schema(shown.ref)
        schema_text = schema_to_yaml(found) if found is not None else None
    report, problem = None, None
    if validate and shown.kind == "table":
        try:  # reads the version's data: only when asked
            report = service.validate(shown.ref)
        except (NotFoundError, InvalidArgumentError) as e:
            problem = e
    return page(
        request,
        call,
        "dataset.html",
        name=name,
        versions=versions,
        shown=shown,
        profile=profile,
        plots=plots,
        diff=diff,
        against=against,
        schema_text=schema_text,
        report=report,
        problem=problem,
        lineage=_neighbours(call, ObjectRef("dataset_version", shown.id)),
    )


def _profile_chart(column: str, stats: dict[str, Any]) -> Any:
    histogram = stats.get("histogram") or {}
    if histogram.get("counts"):
        edges = histogram.get("edges") or []
        labels = [_number(e) for e in edges[:-1]] or [
            str(i) for i in range(len(histogram["counts"]))
        ]
        return charts.bars(labels, histogram["counts"], title=column)
    top = stats.get("top") or []
    if top:
        labels = [str(t[0]) if isinstance(t, (list, tuple)) else str(t.get("value")) for t in top]
        counts = [t[1] if isinstance(t, (list, tuple)) else t.get("count", 0) for t in top]
        return charts.bars(labels, counts, title=column)
    return None


# -- features, pipelines -------------------------------------------------------------------


def _features(call: Call) -> Any:
    from conveyor.features.service import feature_service

    return feature_service(call.workspace)


@router.get("/p/{project}/features")
def features(request: Request, project: str, call: Call = need("viewer")) -> HTMLResponse:
    return page(request, call, "features.html", views=_features(call).list_views())


@router.get("/p/{project}/features/{name}")
def feature_view(
    request: Request, project: str, name: str, call: Call = need("viewer")
) -> HTMLResponse:
    """A view's definition, versions, materializations, freshness and the runs (and so
    models) that used its versions."""
    service = _features(call)
    shown = service.show(name)
    used = {}
    for version in shown["versions"]:
        ref = ObjectRef("feature_view_version", version["id"])
        used[version["version"]] = _neighbours(call, ref, depth=2)
    return page(request, call, "feature_view.html", view=shown, used=used)


@router.get("/p/{project}/pipelines")
def pipelines(request: Request, project: str, call: Call = need("viewer")) -> HTMLResponse:
    from conveyor.pipelines.schedules import list_schedules
    from conveyor.pipelines.service import list_runs

    return page(
        request,
        call,
        "pipelines.html",
        runs=list_runs(limit=100, workspace=call.workspace),
        schedules=list_schedules(workspace=call.workspace),
    )


@router.get("/p/{project}/pipelines/{run_id}")
def pipeline_run(
    request: Request,
    project: str,
    run_id: str,
    log: str | None = Query(default=None, max_length=200),
    call: Call = need("viewer"),
) -> HTMLResponse:
    """A pipeline run: its DAG with each step's status, duration and cache hit; the steps'
    outputs and errors; with ``?log=STEP``, what that step printed."""
    from conveyor.pipelines.schedules import list_schedules
    from conveyor.pipelines.service import get_run, step_log

    try:
        run = get_run(run_id, workspace=call.workspace)
    except NotFoundError:
        # A schedule names its run as its process starts, a moment before the run records
        # itself: the schedule's link shows it starting, then the run once it is recorded.
        named = [s for s in list_schedules(workspace=call.workspace) if s.last_run_id == run_id]
        if not named:
            raise
        return page(request, call, "pipeline_starting.html", schedule=named[0], run_id=run_id)
    text = None
    if log is not None:
        text = step_log(run.id, log, workspace=call.workspace)
        if len(text) > _LOG_SHOWN:
            text = (
                f"[the first {len(text) - _LOG_SHOWN:,} characters are left out here]\n"
                + (text[-_LOG_SHOWN:])
            )
    return page(
        request, call, "pipeline_run.html", run=run, dag=_dag(run.steps), log=log, log_text=text
    )


#: How much of a step's log the pipeline run page shows (its newest part); the CLI prints all.
_LOG_SHOWN = 200_000


def _dag(steps: list[Any]) -> Any:
    """The steps as boxes in columns by depth (a step right of everything it reads), with
    arrows from each step to those that use its outputs."""
    level: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in level:
            step = by_name.get(name)
            ups = [u for u in (step.upstream if step else []) if u in by_name and u not in seen]
            level[name] = 1 + max((depth(u, seen | {name}) for u in ups), default=-1)
        return level[name]

    by_name = {s.name: s for s in steps}
    for s in steps:
        depth(s.name)
    columns: dict[int, list[Any]] = {}
    for s in steps:
        columns.setdefault(level[s.name], []).append(s)
    boxes: dict[str, tuple[float, float, Any]] = {}
    for col, members in columns.items():
        for row, s in enumerate(members):
            boxes[s.name] = (20 + col * 190, 20 + row * 70, s)
    return charts.dag(boxes, [(u, s.name) for s in steps for u in s.upstream if u in boxes])


# -- deployments, monitoring ---------------------------------------------------------------


@router.get("/p/{project}/deployments")
def deployments(request: Request, project: str, call: Call = need("viewer")) -> HTMLResponse:
    _, service, monitoring = _services(call)
    return page(
        request,
        call,
        "deployments.html",
        deployments=service.list(),
        monitors=monitoring.list(),
    )


@router.get("/p/{project}/deployments/{name}")
def deployment(
    request: Request,
    project: str,
    name: str,
    hours: int = Query(default=24, ge=1, le=24 * 7),
    call: Call = need("viewer"),
) -> HTMLResponse:
    """A deployment's revisions (what it served, who changed it, why), its traffic per model
    version over the last ``hours`` from the prediction log, and its monitors."""
    _, service, monitoring = _services(call)
    rate, latency = _traffic(call, name, hours)
    failures = _failures(call, name, hours)
    revisions = service.history(name)
    canary = [
        (r.created_at.timestamp(), sum(x["weight"] for x in r.routes if x.get("role") == "canary"))
        for r in reversed(revisions)
    ]
    return page(
        request,
        call,
        "deployment.html",
        name=name,
        hours=hours,
        revisions=revisions,
        canary_chart=charts.lines(
            [("canary share %", canary)], x_label="revision time", x_time=True
        )
        if any(w for _, w in canary)
        else None,
        monitors=[m for m in monitoring.list() if m["deployment"] == name],
        rate_chart=charts.lines(
            rate, x_label="minutes ago", title="rows per second", x_range=(-hours * 60, 0)
        ),
        error_chart=charts.lines(
            failures,
            x_label="minutes ago",
            title="failed requests per minute",
            x_range=(-hours * 60, 0),
        )
        if failures
        else None,
        latency_chart=charts.lines(
            latency, x_label="minutes ago", title="p95 latency (ms)", x_range=(-hours * 60, 0)
        ),
    )


def _buckets(log: Any, end: datetime, hours: int) -> tuple[Any, list[float], int]:
    """``log`` with a ``minutes`` column (its bucket's centre, minutes ago) and a ``version``
    column (model/version, shadows marked); the 60 bucket centres; seconds per bucket."""
    import pandas as pd

    bucket = hours * 60  # seconds per bucket: 60 buckets
    ago = (pd.Timestamp(end) - log["ts"]).dt.total_seconds()
    version = log["model"].astype(str) + "/" + log["model_version"].astype(str)
    if "role" in log.columns:
        version = version.where(log["role"] != "shadow", version + " (shadow)")
    slot = (ago // bucket).clip(upper=59).astype(int)
    centres = [-(k * bucket + bucket / 2) / 60 for k in range(60)]
    return log.assign(minutes=-(slot * bucket + bucket / 2) / 60, version=version), centres, bucket


def _failures(call: Call, name: str, hours: int) -> list[Any]:
    """Failed requests per minute per model version in 60 buckets of the last ``hours``, from
    the failures log: server errors (5xx) and refused payloads (4xx) as separate lines."""
    from datetime import timedelta

    from conveyor.store.logs import read_log

    end = datetime.now(UTC)
    log = read_log(
        call.workspace.log_uri,
        "failures",
        deployment=name,
        start=end - timedelta(hours=hours),
        end=end,
        columns=["ts", "model", "model_version", "role", "status"],
    )
    if log.empty:
        return []
    log, centres, bucket = _buckets(log, end, hours)
    kind = log["status"].map(lambda s: " 5xx" if s >= 500 else " 4xx refused")
    series = []
    for label, rows in log.assign(label=log["version"] + kind).groupby("label"):
        counts = rows.groupby("minutes").size().reindex(centres, fill_value=0).sort_index()
        series.append((str(label), [(m, c * 60 / bucket) for m, c in counts.items()]))
    return series


def _traffic(call: Call, name: str, hours: int) -> tuple[list[Any], list[Any]]:
    """Rows per second and p95 latency per model version in 60 buckets of the last ``hours``
    (shadow copies apart), read from the prediction log's partitions of that span only."""
    from datetime import timedelta

    from conveyor.store.logs import read_log

    end = datetime.now(UTC)
    start = end - timedelta(hours=hours)
    log = read_log(
        call.workspace.log_uri,
        "predictions",
        deployment=name,
        start=start,
        end=end,
        columns=["ts", "model", "model_version", "role", "latency_ms"],
    )
    if log.empty or "latency_ms" not in log.columns:
        return [], []
    log, centres, bucket = _buckets(log, end, hours)
    rate, latency = [], []
    for version, rows in log.groupby("version"):
        grouped = rows.groupby("minutes")["latency_ms"]
        counts = grouped.size().reindex(centres, fill_value=0).sort_index()  # idle: 0 req/s
        p95 = grouped.quantile(0.95)
        rate.append((str(version), [(m, c / bucket) for m, c in counts.items()]))
        latency.append((str(version), list(p95.items())))
    return rate, latency


@router.get("/p/{project}/monitors/{name}")
def monitor(request: Request, project: str, name: str, call: Call = need("viewer")) -> HTMLResponse:
    _, _, service = _services(call)
    found = service.get(name)
    results = service.results(name, limit=100)
    ordered = list(reversed(results))
    share = [
        (r.end.timestamp(), float(value))
        for r in ordered
        if (value := (r.drift or {}).get("share_drifted")) is not None
    ]
    columns: dict[str, list[tuple[float, float]]] = {}
    for r in ordered:
        for c in (r.drift or {}).get("columns", []):
            value = c.get("statistic")
            if isinstance(value, (int, float)):
                columns.setdefault(c["column"], []).append((r.end.timestamp(), float(value)))
    alerts = [a for a in service.alerts() if a.get("monitor") == name]
    return page(
        request,
        call,
        "monitor.html",
        monitor=found,
        results=results,
        share_chart=charts.lines([("share drifted", share)], x_label="window end", x_time=True),
        column_chart=charts.lines(
            sorted(columns.items())[:7],
            x_label="window end",
            x_time=True,
            title="drift statistic per column",
        ),
        alerts=alerts,
    )


@router.get("/p/{project}/monitors/{name}/report")
def monitor_report(
    request: Request,
    project: str,
    name: str,
    result: str | None = Query(default=None, max_length=40),
    call: Call = need("viewer"),
) -> HTMLResponse:
    """A window's report (the latest, or ``result``'s) as the self-contained HTML page
    `conveyor monitor report` writes: verdict, per-column reference-vs-window
    distributions, drift over time."""
    _, _, service = _services(call)
    if result is None:
        return HTMLResponse(service.report(name))
    results = service.results(name, limit=100)
    chosen = next((r for r in results if r.id == result), None)
    if chosen is None:
        raise NotFoundError(f"Monitor {name!r} has no result {result!r} among its last 100.")
    return HTMLResponse(chosen.to_html(None, history=results))


# -- lineage, audit --------------------------------------------------------------------------


def _neighbours(call: Call, ref: ObjectRef, depth: int = 1) -> dict[str, Any]:
    """The edges ``depth`` steps up and down from ``ref``, and a readable name for each node
    (``customers@3``, ``churn/2``, a run's name) under ``labels["kind:id"]``."""
    assert call.project is not None
    store, project_id = call.state.root.metadata, call.project.id
    up = store.lineage(ref, direction="upstream", depth=depth, project_id=project_id).edges
    down = store.lineage(ref, direction="downstream", depth=depth, project_id=project_id).edges
    nodes = {ref, *(e.src for e in [*up, *down]), *(e.dst for e in [*up, *down])}
    return {"upstream": up, "downstream": down, "labels": _labels(call, nodes)}


def _labels(call: Call, nodes: Iterable[ObjectRef]) -> dict[str, str]:
    import sqlalchemy as sa

    from conveyor.store.metadata.schema import (
        dataset_versions,
        datasets,
        deployment_revisions,
        deployments,
        model_versions,
        runs,
    )
    from conveyor.store.metadata.schema import models as model_table

    assert call.project is not None
    project_id = call.project.id
    wanted: dict[str, list[str]] = {}
    for n in nodes:
        wanted.setdefault(n.kind, []).append(n.id)
    labels: dict[str, str] = {}
    with call.workspace.metadata.read() as conn:
        if ids := wanted.get("dataset_version"):
            for i, name, v in conn.execute(
                sa.select(dataset_versions.c.id, datasets.c.name, dataset_versions.c.version)
                .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
                .where(dataset_versions.c.id.in_(ids), datasets.c.project_id == project_id)
            ):
                labels[f"dataset_version:{i}"] = f"{name}@{v}"
        if ids := wanted.get("model_version"):
            for i, name, v in conn.execute(
                sa.select(model_versions.c.id, model_table.c.name, model_versions.c.version)
                .join(model_table, model_table.c.id == model_versions.c.model_id)
                .where(model_versions.c.id.in_(ids), model_table.c.project_id == project_id)
            ):
                labels[f"model_version:{i}"] = f"{name}/{v}"
        if ids := wanted.get("deployment_revision"):
            for i, name, number in conn.execute(
                sa.select(
                    deployment_revisions.c.id, deployments.c.name, deployment_revisions.c.revision
                )
                .join(deployments, deployments.c.id == deployment_revisions.c.deployment_id)
                .where(deployment_revisions.c.id.in_(ids), deployments.c.project_id == project_id)
            ):
                labels[f"deployment_revision:{i}"] = f"{name} revision {number}"
        if ids := wanted.get("run"):
            for i, name in conn.execute(
                sa.select(runs.c.id, runs.c.name).where(
                    runs.c.id.in_(ids), runs.c.project_id == project_id
                )
            ):
                labels[f"run:{i}"] = f"run {name or i[-8:]}"
    return labels


@router.get("/p/{project}/lineage/{kind}/{object_id}")
def lineage(
    request: Request,
    project: str,
    kind: str,
    object_id: str,
    depth: int = Query(default=2, ge=1, le=10),
    call: Call = need("viewer"),
) -> HTMLResponse:
    """The graph around an object, ``depth`` steps each way; a node's link opens the graph
    around it (expand on click)."""
    ref = ObjectRef(kind, object_id)
    found = _neighbours(call, ref, depth)
    return page(
        request,
        call,
        "lineage.html",
        ref=ref,
        depth=depth,
        graph=found,
        picture=_picture(project, ref, found),
    )


def _picture(project: str, ref: ObjectRef, found: dict[str, Any]) -> Any:
    """The graph as a picture: upstream objects to the left by distance, downstream to the
    right; a box opens the graph around it (a run opens its page)."""
    labels = found["labels"]

    def key(r: ObjectRef) -> str:
        return f"{r.kind}:{r.id}"

    def node(r: ObjectRef, column: int) -> tuple[int, str, str]:
        label = labels.get(key(r)) or f"{r.kind.replace('_', ' ')} {r.id[-8:]}"
        href = (
            f"/ui/p/{project}/runs/{r.id}"
            if r.kind == "run" and r != ref
            else f"/ui/p/{project}/lineage/{r.kind}/{r.id}"
        )
        return (column, label, href)

    nodes = {key(ref): node(ref, 0)}
    for e in found["upstream"]:
        nodes.setdefault(key(e.src), node(e.src, -e.depth))
    for e in found["downstream"]:
        nodes.setdefault(key(e.dst), node(e.dst, e.depth))
    edges = [
        (key(e.src), key(e.dst), e.relation) for e in [*found["upstream"], *found["downstream"]]
    ]
    return charts.graph(nodes, edges, key(ref))


@router.get("/p/{project}/audit")
def audit(
    request: Request,
    project: str,
    actor: str = Query(default="", max_length=200),
    action: str = Query(default="", max_length=200),
    call: Call = need("admin"),
) -> HTMLResponse:
    assert call.project is not None
    events = call.state.root.metadata.audit_log(
        actor=actor or None, action=action or None, project_id=call.project.id, limit=200
    )
    return page(request, call, "audit.html", events=events, actor=actor, action=action)
