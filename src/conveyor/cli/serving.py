"""``conveyor serve | predict | build`` and ``conveyor deploy``: models in production."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.context import workspace_for
from conveyor.cli.output import console, err_console
from conveyor.core.errors import InvalidArgumentError

if TYPE_CHECKING:
    from conveyor.serving.deployment import DeploymentService, Revision

deploy_app = typer.Typer(
    help="Deployments: what model servers run, changed one audited revision at a time.\n\n"
    "Create one, then try a new version on part of the traffic (canary), split users "
    "between two versions (ab), mirror traffic to one (shadow), promote it, or roll back. "
    "Servers started with `conveyor serve --deployment NAME` pick up each change within "
    "seconds, without dropping requests.",
    no_args_is_help=True,
)

MODEL_HELP = "A model version: NAME/N, NAME@ALIAS (followed when the alias moves), or NAME."


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def _limits(max_error_rate: float | None, max_p99_ms: float | None) -> dict[str, float]:
    out: dict[str, float] = {}
    if max_error_rate is not None:
        out["max_error_rate"] = max_error_rate
    if max_p99_ms is not None:
        out["max_p99_ms"] = max_p99_ms
    return out


# -- conveyor serve ---------------------------------------------------------------------------


def serve(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Argument(help=MODEL_HELP + " Omit it with --deployment.")
    ] = None,
    deployment: Annotated[
        str | None, typer.Option("--deployment", "-d", help="Serve this deployment instead.")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(help="Server processes (each loads the model).")] = 1,
    max_batch: Annotated[
        int, typer.Option(help="Most rows one model call takes when requests are batched.")
    ] = 64,
    max_wait_ms: Annotated[
        float,
        typer.Option(help="Longest a batch waits for requests being read (never when alone)."),
    ] = 2.0,
    optimize: Annotated[
        str, typer.Option(help="none, or onnx: convert a scikit-learn model and check it.")
    ] = "none",
    extra_columns: Annotated[
        str, typer.Option(help="Columns the model does not take: reject (422) or drop.")
    ] = "reject",
    max_body_mb: Annotated[float, typer.Option(help="Largest request body (413 above).")] = 10.0,
    reload_interval: Annotated[
        float, typer.Option(help="Seconds between checks for a new revision or alias; 0: never.")
    ] = 2.0,
    no_log: Annotated[
        bool, typer.Option("--no-log", help="Do not log predictions (monitoring needs them).")
    ] = False,
    log_flush_seconds: Annotated[
        float, typer.Option(help="Longest time a logged prediction waits before it is written.")
    ] = 5.0,
    trust: Annotated[
        bool, typer.Option("--trust", help="Load pickle-based models (they run code on load).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "warning",
) -> None:
    """Serve a model (or a deployment) over HTTP: validated, batched, logged.

    Endpoints: POST /v1/models/NAME/predict with {"instances": [{...}]} or {"columns": [...],
    "data": [[...]]}; POST /v1/feedback; the Open Inference Protocol v2 under /v2; /metrics
    (Prometheus), /healthz, /readyz, and the OpenAPI docs at /docs.

    Example: conveyor serve churn@champion --port 8080
    """
    from conveyor.serving import serve as run_server

    if (model is None) == (deployment is None):
        raise typer.BadParameter("give a MODEL or --deployment NAME (one of them)")
    ws = workspace_for(ctx)
    target = f"deployment {deployment}" if deployment else model

    def announce() -> None:  # once the options, the port and the model's trust are checked
        err_console.print(
            f"Serving {escape(str(target))} on http://{host}:{port} "
            f"(docs at /docs, metrics at /metrics). Ctrl+C stops."
        )

    run_server(
        model,
        deployment=deployment,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        workspace=ws,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        optimize=optimize,
        extra_columns=extra_columns,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        reload_interval=reload_interval,
        log_predictions=not no_log,
        flush_seconds=log_flush_seconds,
        trust=trust,
        announce=announce,
    )


# -- conveyor predict -------------------------------------------------------------------------


def predict(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    input: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="A Parquet (or CSV, TSV, JSON lines) file, a folder of them, or a dataset "
            "NAME@VERSION.",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The Parquet file to write.")],
    chunk_rows: Annotated[
        int, typer.Option(help="Rows per chunk (memory stays bounded).")
    ] = 100_000,
    proba: Annotated[bool, typer.Option("--proba", help="Add class probabilities.")] = False,
    executor: Annotated[
        str, typer.Option(help="local (this process), or ray / ray://HOST:PORT (Ray tasks).")
    ] = "local",
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not log the predictions.")] = False,
    trust: Annotated[bool, typer.Option("--trust", help="Load pickle-based models.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Batch inference: stream a table through a model, write Parquet, record lineage.

    The output holds the input columns plus prediction_id and prediction (and proba_<i>).
    Predictions are logged like online ones, so monitoring sees them.

    Example: conveyor predict churn@champion --input customers@3 --output preds.parquet
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from conveyor.serving import predict as run_predict

    ws = workspace_for(ctx)
    with (
        ws,
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=as_json,
        ) as bar,
    ):
        task = bar.add_task("predicting rows", total=None)

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        result = run_predict(
            model,
            input,
            output=output,
            chunk_rows=chunk_rows,
            proba=proba,
            log_predictions=not no_log,
            trust=trust,
            executor=executor,
            workspace=ws,
            progress=report,
        )
    summary = result.to_dict()
    if as_json:
        _print_json(summary)
        return
    console.print(
        f"Predicted {summary['rows']:,} rows with {escape(summary['model'])} in "
        f"{summary['seconds']:.2f} s ({summary['rows_per_second']:,} rows/s) -> "
        f"{escape(str(summary['output']))}"
    )


# -- conveyor build ---------------------------------------------------------------------------


def build(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")] = Path("build"),
    fetch: Annotated[
        bool,
        typer.Option(
            "--fetch",
            help="Do not bake the model in: the container reads it from the team's stores.",
        ),
    ] = False,
    image: Annotated[str | None, typer.Option(help="Image name (default NAME:VERSION).")] = None,
    replicas: Annotated[int, typer.Option(help="Replicas (the autoscaler's minimum).")] = 2,
    cpu: Annotated[str, typer.Option(help="CPU request per replica.")] = "500m",
    memory: Annotated[str, typer.Option(help="Memory request and limit per replica.")] = "512Mi",
    optimize: Annotated[str, typer.Option(help="none or onnx (see conveyor serve).")] = "none",
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    trust: Annotated[bool, typer.Option("--trust", help="Load pickle-based models.")] = False,
) -> None:
    """Write a Dockerfile and Kubernetes manifests that serve a model version.

    Then: docker build -t IMAGE OUT && kubectl apply -f OUT/k8s/
    """
    from conveyor.serving import build as run_build

    ws = workspace_for(ctx)
    with ws:
        result = run_build(
            model,
            out,
            workspace=ws,
            bake=not fetch,
            image=image,
            replicas=replicas,
            cpu=cpu,
            memory=memory,
            optimize=optimize,
            force=force,
            trust=trust,
        )
    console.print(f"Wrote {escape(str(result.out))}/ for {escape(result.model)}:")
    for name in result.files:
        console.print(f"  {escape(name)}")
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    console.print(
        f"Next: docker build -t {escape(result.image)} {escape(str(result.out))} && "
        f"kubectl apply -f {escape(str(result.out))}/k8s/"
    )


# -- conveyor deploy --------------------------------------------------------------------------


def _svc(ctx: typer.Context) -> tuple[Any, DeploymentService]:
    from conveyor.serving.deployment import deployment_service

    ws = workspace_for(ctx)
    return ws, deployment_service(ws)


def _done(revision: Revision, as_json: bool) -> None:
    if as_json:
        _print_json(revision.to_dict())
        return
    console.print(
        f"{escape(revision.deployment)} revision {revision.revision} ({revision.change}): "
        f"{escape(revision.describe())}"
    )


JSON_OPT = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@deploy_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The deployment's name, e.g. prod.")],
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)],
    max_error_rate: Annotated[
        float | None, typer.Option(help="Roll back a canary whose error rate passes this (0-1).")
    ] = None,
    max_p99_ms: Annotated[
        float | None, typer.Option(help="Roll back a canary whose p99 latency passes this.")
    ] = None,
    as_json: JSON_OPT = False,
) -> None:
    """Create a deployment serving MODEL to all traffic (revision 1)."""
    ws, svc = _svc(ctx)
    with ws:
        _done(svc.create(name, model, limits=_limits(max_error_rate, max_p99_ms)), as_json)


@deploy_app.command("canary")
def canary(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The deployment.")],
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)],
    weight: Annotated[float, typer.Option(help="Percent of requests it answers.")] = 10.0,
    max_error_rate: Annotated[
        float | None, typer.Option(help="Roll it back past this error rate (0-1).")
    ] = None,
    max_p99_ms: Annotated[float | None, typer.Option(help="Roll it back past this p99.")] = None,
    as_json: JSON_OPT = False,
) -> None:
    """Send WEIGHT % of requests to MODEL; servers roll it back if it breaks its limits."""
    ws, svc = _svc(ctx)
    with ws:
        revision = svc.canary(name, model, weight, limits=_limits(max_error_rate, max_p99_ms))
        _done(revision, as_json)


@deploy_app.command("ab")
def ab(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The deployment.")],
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)],
    key: Annotated[str, typer.Option(help="Request field that keeps a user on one side.")],
    weight: Annotated[float, typer.Option(help="Percent of keys that get MODEL.")] = 50.0,
    as_json: JSON_OPT = False,
) -> None:
    """A/B test: split requests between the primary and MODEL, sticky by KEY's value."""
    ws, svc = _svc(ctx)
    with ws:
        _done(svc.ab(name, model, weight, key=key), as_json)


@deploy_app.command("shadow")
def shadow(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The deployment.")],
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)],
    as_json: JSON_OPT = False,
) -> None:
    """Mirror every request to MODEL: its predictions are logged, never returned."""
    ws, svc = _svc(ctx)
    with ws:
        _done(svc.shadow(name, model), as_json)


@deploy_app.command("promote")
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The deployment.")],
    as_json: JSON_OPT = False,
) -> None:
    """Make the canary (or A/B challenger, or shadow) the primary, at 100%."""
    ws, svc = _svc(ctx)
    with ws:
        _done(svc.promote(name), as_json)


@deploy_app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The deployment.")],
    to: Annotated[
        int | None, typer.Option("--to", help="Revision to return to (default: the previous).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "",
    as_json: JSON_OPT = False,
) -> None:
    """Serve again what an earlier revision served (as a new revision)."""
    ws, svc = _svc(ctx)
    with ws:
        _done(svc.rollback(name, to=to, reason=reason), as_json)


@deploy_app.command("list")
def list_(ctx: typer.Context, as_json: JSON_OPT = False) -> None:
    """List deployments with their current revision."""
    ws, svc = _svc(ctx)
    with ws:
        found = svc.list()
    if as_json:
        _print_json([r.to_dict() for r in found])
        return
    if not found:
        console.print("No deployments yet: conveyor deploy create prod --model MODEL@ALIAS")
        return
    table = Table("deployment", "revision", "serves", "changed (UTC)", "by")
    for r in found:
        table.add_row(
            escape(r.deployment),
            str(r.revision),
            escape(r.describe()),
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(r.created_by),
        )
    console.print(table)


@deploy_app.command("status")
def status(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The deployment.")],
    as_json: JSON_OPT = False,
) -> None:
    """Show the traffic split, every revision, and live figures per model version."""
    from conveyor.serving import log_uri
    from conveyor.serving.status import live_figures

    ws, svc = _svc(ctx)
    with ws:
        spec = svc.spec(name)
        history = svc.history(name)
        try:
            figures = live_figures(log_uri(ws), name)
        except InvalidArgumentError as e:  # through a server, with no CONVEYOR_LOG_URI
            err_console.print(f"[dim]No live figures: {escape(e.message)}[/dim]")
            figures = {}
    if as_json:
        _print_json(
            {
                "deployment": name,
                "revision": spec.revision,
                "routes": [r.to_dict() for r in spec.routes],
                "key": spec.key,
                "limits": spec.limit_map,
                "live": figures,
                "revisions": [r.to_dict() for r in history],
            }
        )
        return
    console.print(f"[bold]{escape(name)}[/bold] revision {spec.revision}")
    split = Table(
        "model version", "named as", "role", "traffic", "predictions, last hour", "p50 ms", "p99 ms"
    )
    for route in spec.routes:
        live = figures.get(route.ref, {})
        split.add_row(
            escape(route.ref),
            escape(route.source or route.ref),
            route.role,
            "mirror" if route.role == "shadow" else f"{route.weight:g}%",
            f"{live.get('rows', 0):,}",
            _ms(live.get("p50_ms")),
            _ms(live.get("p99_ms")),
        )
    console.print(split)
    if spec.key:
        console.print(f"A/B key: {escape(spec.key)}")
    if spec.limits:
        console.print(
            "Canary limits: " + ", ".join(f"{k}={v:g}" for k, v in spec.limit_map.items())
        )
    revisions = Table("revision", "change", "serves", "reason", "at (UTC)", "by")
    for r in history:
        revisions.add_row(
            str(r.revision),
            r.change,
            escape(r.describe()),
            escape(r.reason),
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(r.created_by),
        )
    console.print(revisions)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
