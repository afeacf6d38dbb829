"""``conveyor monitor``: drift between a reference and a current sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.context import workspace_for
from conveyor.cli.output import console, err_console

monitor_app = typer.Typer(
    help="Monitoring: data drift between a reference sample (say, the training data) and a "
    "current one (say, last week's requests).",
    no_args_is_help=True,
)

SOURCE_HELP = "A .csv or .parquet file, a folder of Parquet files, or a dataset NAME@VERSION."


def _load(ctx: typer.Context, source: str) -> Any:
    from conveyor.core.errors import InvalidArgumentError
    from conveyor.monitoring import read_table

    path = Path(source)
    if path.is_dir() or (path.is_file() and path.suffix in (".csv", ".parquet")):
        return read_table(path)
    if path.is_file():
        raise InvalidArgumentError(
            f"Cannot read {source}: expected a .csv or .parquet file, or a folder of Parquet."
        )
    if "@" in source:
        from conveyor.data.service import data_service

        ws = workspace_for(ctx)
        with ws:
            return data_service(ws).load(source)
    raise InvalidArgumentError(f"No file, folder or dataset version named {source!r}.")


@monitor_app.command("drift")
def drift(
    ctx: typer.Context,
    reference: Annotated[str, typer.Argument(help="The reference. " + SOURCE_HELP)],
    current: Annotated[str, typer.Argument(help="The current sample. " + SOURCE_HELP)],
    columns: Annotated[
        str | None, typer.Option(help="Comma-separated columns (default: all in both).")
    ] = None,
    test: Annotated[
        str, typer.Option(help="auto, ks, wasserstein, psi, chi2 or jensenshannon.")
    ] = "auto",
    all_columns: Annotated[
        bool, typer.Option("--all", help="List every column, not only the drifted ones.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Which columns drifted, by which test, and how far.

    Numeric columns: Kolmogorov-Smirnov on small samples, normalized Wasserstein distance on
    large ones; categorical: chi-square, or Jensen-Shannon distance on large samples. Exits 2
    when the dataset drifted (at least half of the columns), so scripts can act on it (1 is an
    error, as for every command).

    Example: conveyor monitor drift customers@3 this_week.parquet
    """
    from conveyor.monitoring.stats import drift as run_drift

    ref = _load(ctx, reference)
    cur = _load(ctx, current)
    chosen = (
        [c.strip() for c in columns.split(",") if c.strip()]
        if columns
        else [c for c in ref.columns if c in set(cur.columns)]
    )
    report = run_drift(ref, cur, columns=chosen, tests=test)
    if as_json:
        console.print_json(json.dumps(report.to_dict(), default=str))
    else:
        verdict = {True: "[red]drifted[/red]", False: "[green]no drift[/green]", None: "n/a"}
        console.print(
            f"{len(report.drifted_columns)} of {report.judged} columns drifted "
            f"({report.share_drifted:.0%}); dataset: {verdict[report.dataset_drifted]} "
            f"({report.reference_rows:,} reference rows, {report.current_rows:,} current)"
        )
        shown = [c for c in report.columns if all_columns or c.drifted or c.drifted is None]
        if shown:
            table = Table("column", "kind", "test", "statistic", "p-value", "threshold", "drifted",
                          "PSI", "note")  # fmt: skip
            for c in shown:
                table.add_row(
                    escape(c.column),
                    c.kind,
                    c.test,
                    _num(c.statistic),
                    _num(c.p_value),
                    _num(c.threshold),
                    {True: "[red]yes[/red]", False: "no", None: "n/a"}[c.drifted],
                    _num(c.psi),
                    escape(c.note),
                )
            console.print(table)
    if report.dataset_drifted:
        raise typer.Exit(2)


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _service(ctx: typer.Context) -> tuple[Any, Any]:
    from conveyor.monitoring.service import monitoring_service

    ws = workspace_for(ctx)
    return ws, monitoring_service(ws)


@monitor_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The monitor's name, e.g. prod-watch.")],
    deployment: Annotated[str, typer.Option("--deployment", "-d", help="The deployment.")],
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            "-r",
            help="Dataset NAME@VERSION (default: the data that trained the served model).",
        ),
    ] = None,
    window: Annotated[str, typer.Option(help="How much of the log each run checks.")] = "1h",
    schedule: Annotated[str | None, typer.Option(help="Cron expression (stored).")] = None,
    min_labels: Annotated[
        int, typer.Option(help="Fewest labelled rows for performance metrics.")
    ] = 30,
    max_feature_age: Annotated[
        str | None,
        typer.Option(help="Online features older than this (e.g. 2h) count as stale."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a monitor: a deployment's prediction log checked against a reference."""
    ws, svc = _service(ctx)
    with ws:
        monitor = svc.create(
            name,
            deployment=deployment,
            reference=reference,
            window=window,
            schedule=schedule,
            min_labels=min_labels,
            max_feature_age=max_feature_age,
        )
    if as_json:
        console.print_json(json.dumps(monitor, default=str))
        return
    console.print(
        f"Monitor {escape(name)}: deployment {escape(deployment)} against "
        f"{escape(monitor['reference'])}, windows of {monitor['window']} s. "
        f"Run it: conveyor monitor run {escape(name)}"
    )


@monitor_app.command("list")
def list_(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """List monitors."""
    ws, svc = _service(ctx)
    with ws:
        found = svc.list()
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    if not found:
        console.print("No monitors yet: conveyor monitor create NAME -d DEPLOYMENT -r DATASET@V")
        return
    table = Table("monitor", "deployment", "reference", "window (s)", "schedule")
    for m in found:
        table.add_row(
            escape(m["name"]),
            escape(m["deployment"]),
            escape(m["reference"]),
            str(m["window"]),
            escape(m["schedule"] or ""),
        )
    console.print(table)


def _print_result(result: Any) -> None:
    verdict = {True: "[red]drifted[/red]", False: "[green]no drift[/green]", None: "n/a"}
    drift_info = result.drift
    console.print(
        f"[bold]{escape(result.monitor)}[/bold] {result.start:%Y-%m-%d %H:%M} to "
        f"{result.end:%Y-%m-%d %H:%M} UTC: {result.rows:,} predictions; data "
        f"{verdict[result.dataset_drifted]}; {len(drift_info.get('drifted_columns', []))} of "
        f"{len(drift_info.get('columns', []))} columns drifted"
        + (
            f": {escape(', '.join(drift_info['drifted_columns']))}"
            if drift_info.get("drifted_columns")
            else ""
        )
    )
    for ref, column in drift_info.get("predictions", {}).items():
        state = {True: "[red]drifted[/red]", False: "steady", None: "not judged"}
        console.print(
            f"predictions of {escape(ref)}: {state[column.get('drifted')]}"
            + (
                f" ({escape(str(column.get('test')))} {_num(column.get('statistic'))})"
                if column.get("statistic") is not None
                else ""
            )
            + (f"; {escape(column['note'])}" if column.get("note") else "")
        )
    volume = result.quality.get("volume") or {}
    if volume.get("anomaly"):
        console.print(
            f"[red]volume anomaly[/red]: {volume['rows']:,} rows against about "
            f"{_num(volume.get('usual'))} usually"
        )
    perf = result.performance
    if perf.get("status") == "ok":
        shown = {k: v for k, v in perf.items() if isinstance(v, float)}
        console.print(
            f"performance on {perf['labelled_rows']:,} labelled rows: "
            + ", ".join(f"{k} {v:.3f}" for k, v in shown.items())
        )
    else:
        console.print(f"performance: {escape(str(perf.get('status')))}")
    for ref, v in result.service.get("versions", {}).items():
        console.print(
            f"service {escape(ref)}: {v['rows']:,} rows, p50 {_num(v['p50_ms'])} ms, "
            f"p99 {_num(v['p99_ms'])} ms"
        )
    fresh = result.service.get("feature_freshness")
    if fresh:
        stale = fresh.get("stale_share")
        console.print(
            f"feature age: p50 {_num(fresh['p50_s'])} s, p95 {_num(fresh['p95_s'])} s"
            + (f", {stale:.1%} stale" if stale is not None else "")
        )
    for note in result.notes:
        console.print(f"note: {escape(note)}")


def _when(text: str | None) -> Any:
    if text is None:
        return None
    from datetime import UTC, datetime

    from conveyor.core.errors import InvalidArgumentError

    try:
        moment = datetime.fromisoformat(text)
    except ValueError as e:
        raise InvalidArgumentError(
            f"{text!r} is not a date-time; use ISO 8601, e.g. 2026-11-29T14:00."
        ) from e
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@monitor_app.command("run")
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The monitor.")],
    start: Annotated[str | None, typer.Option(help="Window start, ISO 8601 (UTC).")] = None,
    end: Annotated[str | None, typer.Option(help="Window end (default: now).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write an HTML report.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check one window of the log (default: the last one) and store the result."""
    ws, svc = _service(ctx)
    with ws:
        result = svc.run(name, start=_when(start), end=_when(end))
        if out is not None:
            result.to_html(str(out), history=svc.results(name, limit=50))
    if as_json:
        console.print_json(result.to_json())
        return
    _print_result(result)
    if out is not None:
        console.print(f"report: {escape(str(out))}")


@monitor_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The monitor.")],
    limit: Annotated[int, typer.Option(help="How many results.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A monitor's latest results, newest first."""
    ws, svc = _service(ctx)
    with ws:
        found = svc.results(name, limit=limit)
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in found], default=str))
        return
    if not found:
        console.print(f"No results yet: conveyor monitor run {escape(name)}")
    for result in found:
        _print_result(result)


@monitor_app.command("report")
def report(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The monitor.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    history: Annotated[int, typer.Option(help="Results shown in the drift-over-time charts.")] = 50,
) -> None:
    """Write the HTML report of the monitor's latest result (one file, opens offline)."""
    ws, svc = _service(ctx)
    with ws:
        svc.report(name, str(out), history=history)
    console.print(f"report: {escape(str(out))}")


labels_app = typer.Typer(help="Ground truth for earlier predictions.", no_args_is_help=True)


@labels_app.command("add")
def labels_add(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A .csv or .parquet file: prediction_id, label.")],
    deployment: Annotated[str, typer.Option("--deployment", "-d", help="The deployment.")],
) -> None:
    """Record labels that arrived later, joined to predictions by prediction_id."""
    ws, svc = _service(ctx)
    frame = _load(ctx, str(file))
    with ws:
        count = svc.log_labels(frame, deployment=deployment)
    console.print(f"Recorded {count:,} labels for {escape(deployment)}.")


@monitor_app.command("alert")
def alert(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The monitor.")],
    expression: Annotated[
        str, typer.Argument(help="FIELD OP NUMBER, e.g. 'drift.share_drifted > 0.3'.")
    ],
    cooldown: Annotated[str, typer.Option(help="Least time between notifications.")] = "6h",
    notify: Annotated[
        list[str] | None,
        typer.Option(help="log, webhook:https://..., slack:https://... (repeat for several)."),
    ] = None,
) -> None:
    """Alert when a field of this monitor's results passes a threshold after a run."""
    ws, svc = _service(ctx)
    with ws:
        rule = svc.alert_rule(name, expression, cooldown=cooldown, notify=notify or ["log"])
    console.print(
        f"Rule on {escape(name)}: {escape(rule['expression'])} -> "
        f"{escape(', '.join(rule['notify']))} (cooldown {rule['cooldown_seconds']} s)"
    )
    if rule.get("warning"):
        err_console.print(f"[yellow]Warning:[/yellow] {escape(rule['warning'])}")


alerts_app = typer.Typer(
    help="Alerts opened by monitor rules: list, acknowledge, resolve.", no_args_is_help=True
)


@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="open, acknowledged or resolved (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List alerts, newest first."""
    ws, svc = _service(ctx)
    with ws:
        found = svc.alerts(status=status)
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    if not found:
        console.print("No alerts.")
        return
    table = Table("id", "status", "monitor", "rule", "value", "opened (UTC)", "message")
    for a in found:
        table.add_row(
            a["id"],
            a["status"],
            escape(a["monitor"]),
            escape(a["expression"]),
            _num(a["value"]),
            a["opened_at"].strftime("%Y-%m-%d %H:%M:%S"),
            escape(a["message"]),
        )
    console.print(table)


@alerts_app.command("ack")
def alerts_ack(
    ctx: typer.Context, alert_id: Annotated[str, typer.Argument(help="The alert's id.")]
) -> None:
    """Acknowledge an alert: it stays open while its rule holds, with no new notification."""
    ws, svc = _service(ctx)
    with ws:
        svc.close_alert(alert_id, "acknowledged")
    console.print(f"Alert {escape(alert_id)} acknowledged.")


@alerts_app.command("resolve")
def alerts_resolve(
    ctx: typer.Context, alert_id: Annotated[str, typer.Argument(help="The alert's id.")]
) -> None:
    """Resolve an alert by hand (a later run opens a new one if the rule still holds)."""
    ws, svc = _service(ctx)
    with ws:
        svc.close_alert(alert_id, "resolved")
    console.print(f"Alert {escape(alert_id)} resolved.")
