"""``conveyor experiments`` and ``conveyor runs``: look at what was tracked."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from conveyor.cli.context import workspace_for
from conveyor.cli.output import console, human_bytes
from conveyor.core.errors import ConveyorError

experiments_app = typer.Typer(help="List experiments.", no_args_is_help=True)
runs_app = typer.Typer(
    help="Find, inspect, compare, delete and restore runs.", no_args_is_help=True
)


def _tracker(ctx: typer.Context):  # type: ignore[no-untyped-def]
    from conveyor.tracking.runs import tracker

    ws = workspace_for(ctx)
    return ws, tracker(ws)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _duration(start: datetime, end: datetime | None) -> str:
    if end is None:
        return ""
    seconds = (end - start).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _number(value: float | None) -> str:
    return "nan" if value is None else f"{value:.6g}"  # (a NaN is stored as no value)


_STATUS_STYLE = {"FINISHED": "green", "FAILED": "red", "KILLED": "yellow", "RUNNING": "cyan"}


@experiments_app.command("list")
def experiments_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the project's experiments with their number of runs."""
    ws, t = _tracker(ctx)
    with ws:
        found = t.store.list_experiments()
    if as_json:
        console.print_json(
            json.dumps(
                [
                    {"id": e.id, "name": e.name, "runs": n, "created_at": e.created_at.isoformat()}
                    for e, n in found
                ]
            )
        )
        return
    table = Table("experiment", "runs", "created (UTC)", "id")
    for exp, n in found:
        table.add_row(escape(exp.name), str(n), _when(exp.created_at), exp.id)
    console.print(table if found else "No experiments yet: start a run with conveyor.start_run().")


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", "-e", help="Only this experiment.")
    ] = None,
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter",
            "-f",
            help="e.g. \"metrics.auc > 0.9 and params.max_depth = '8'\"",
        ),
    ] = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option("--order-by", "-o", help="e.g. 'metrics.auc desc' (repeatable)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    deleted: Annotated[bool, typer.Option("--deleted", help="List deleted runs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List runs, newest first unless --order-by says otherwise.

    Example: [cyan]conveyor runs list -e churn -f "metrics.auc > 0.9" -o "metrics.auc desc"[/cyan]
    """
    from conveyor.tracking.search import search

    ws, t = _tracker(ctx)
    with ws:
        found = search(
            t.store,
            experiment=experiment or None,
            filter=filter_,
            order_by=order_by,
            limit=limit,
            view="deleted" if deleted else "active",
        ).runs()
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in found]))
        return
    if not found:
        console.print("No runs match.")
        return
    metric_keys = sorted({k for r in found for k in r.metrics})[:6]
    table = Table("name", "experiment", "status", "started (UTC)", "took")
    # The id whole, whatever the width: it is what `runs show` takes (the others may wrap).
    table.columns.insert(0, Column("run", no_wrap=True, min_width=len(found[0].id)))
    for key in metric_keys:
        table.add_column(escape(key), justify="right")
    for run in found:
        style = _STATUS_STYLE.get(str(run.status), "")
        table.add_row(
            run.id,
            escape(run.name),
            escape(run.experiment),
            f"[{style}]{run.status}[/{style}]",
            _when(run.start_time),
            _duration(run.start_time, run.end_time),
            *(_number(run.metrics[k]) if k in run.metrics else "" for k in metric_keys),
        )
    console.print(table)
    if found.next_page_token:
        console.print(f"[dim]More runs match; raise --limit (now {limit}) to see them.[/dim]")


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a run: attributes, params, latest metrics, tags, artifacts and lineage."""
    from conveyor.store.records import ObjectRef

    ws, t = _tracker(ctx)
    with ws:
        run = t.store.get_run(run_id)
        ref = ObjectRef("run", run.id)
        artifacts = ws.list_artifacts(ref)
        upstream = ws.lineage(ref, direction="upstream", depth=1)
        downstream = ws.lineage(ref, direction="downstream", depth=1)
        named = _named(ws, [e.src for e in upstream.edges] + [e.dst for e in downstream.edges])
    if as_json:
        data: dict[str, Any] = run.to_dict()
        data["artifacts"] = [
            {"name": a.name, "digest": a.digest, "size": a.size, "media_type": a.media_type}
            for a in artifacts
        ]
        data["lineage"] = {
            "upstream": [str(e.src) for e in upstream.edges],
            "downstream": [str(e.dst) for e in downstream.edges],
        }
        # The same nodes in the same order, dataset versions by reference.
        data["lineage_refs"] = {
            "upstream": [named.get(e.src, str(e.src)) for e in upstream.edges],
            "downstream": [named.get(e.dst, str(e.dst)) for e in downstream.edges],
        }
        console.print_json(json.dumps(data))
        return
    style = _STATUS_STYLE.get(str(run.status), "")
    head = Table(show_header=False, box=None, pad_edge=False)
    rows = [
        ("run", run.id),
        ("name", run.name),
        ("experiment", run.experiment),
        ("status", f"[{style}]{run.status}[/{style}]" + (" (deleted)" if run.deleted else "")),
        ("started", f"{_when(run.start_time)} UTC"),
        ("took", _duration(run.start_time, run.end_time)),
        ("user", run.user),
        ("parent", run.parent_id or ""),
        (
            "git",
            f"{run.git_commit or '-'} on {run.git_branch or '-'}"
            + (" (dirty)" if run.git_dirty else ""),
        ),
        ("command", run.command),
        ("python", f"{run.python_version} on {run.host}"),
    ]
    for key, value in rows:
        head.add_row(f"[bold]{key}[/bold]", value if key == "status" else escape(value))
    console.print(head)
    for title, values in (("params", run.params), ("metrics", run.metrics), ("tags", run.tags)):
        if values:
            table = Table("key", "value", title=title, title_justify="left")
            for key, value in sorted(values.items()):
                shown = _number(value) if isinstance(value, float) else str(value)
                table.add_row(escape(key), escape(shown))
            console.print(table)
    if artifacts:
        table = Table("artifact", "size", "type", "digest", title="artifacts", title_justify="left")
        for a in artifacts:
            table.add_row(escape(a.name), human_bytes(a.size), a.media_type, a.digest[:12])
        console.print(table)
    if upstream.edges or downstream.edges:
        console.print("[bold]lineage[/bold]")
        for e in upstream.edges:
            shown = named.get(e.src, str(e.src))
            console.print(f"  {escape(shown)} --{escape(e.relation)}--> this run")
        for e in downstream.edges:
            shown = named.get(e.dst, str(e.dst))
            console.print(f"  this run --{escape(e.relation)}--> {escape(shown)}")


def _named(ws: Any, nodes: list[Any]) -> dict[Any, str]:
    """The dataset versions among lineage ``nodes`` as ``dataset_version:customers@3`` (what
    ``conveyor lineage`` takes), by node; the data layer knows their names."""
    from conveyor.data.service import data_service
    from conveyor.data.versioning import VERSION_KIND

    ids = [n.id for n in nodes if n.kind == VERSION_KIND]
    if not ids:
        return {}
    try:
        refs = data_service(ws).refs(ids)
    except (ConveyorError, ValueError):  # a server from before it answered this: ids, as then
        return {}
    return {n: f"{n.kind}:{refs[n.id]}" for n in nodes if n.kind == VERSION_KIND and n.id in refs}


@runs_app.command("compare")
def runs_compare(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
    all_rows: Annotated[
        bool, typer.Option("--all", help="Also show rows where every run agrees.")
    ] = False,
) -> None:
    """Compare runs side by side; rows where they differ are highlighted."""
    from conveyor.core.errors import InvalidArgumentError

    if len(run_ids) < 2:
        raise InvalidArgumentError("runs compare needs at least two run ids.")
    ws, t = _tracker(ctx)
    with ws:
        found = [t.store.get_run(r) for r in run_ids]
    table = Table("", *(escape(f"{r.name}\n{r.id[-8:]}") for r in found))
    sections: list[tuple[str, list[dict[str, Any]]]] = [
        ("params", [r.params for r in found]),
        ("metrics", [r.metrics for r in found]),
        ("tags", [r.tags for r in found]),
    ]
    table.add_row("[bold]status[/bold]", *(str(r.status) for r in found))
    same = 0
    for section, values in sections:
        for key in sorted({k for v in values for k in v}):
            cells = [
                _number(v[key]) if isinstance(v.get(key), float) else str(v.get(key, "—"))
                for v in values
            ]
            differs = len(set(cells)) > 1
            if not differs and not all_rows:
                same += 1
                continue
            label = f"{section}.{key}"
            if differs:
                table.add_row(
                    f"[bold yellow]{escape(label)}[/bold yellow]",
                    *(f"[yellow]{escape(c)}[/yellow]" for c in cells),
                )
            else:
                table.add_row(escape(label), *(escape(c) for c in cells))
    console.print(table)
    if same:
        console.print(
            f"[dim]{same} rows where every run agrees are hidden; --all shows them.[/dim]"
        )


@runs_app.command("delete")
def runs_delete(
    ctx: typer.Context, run_ids: Annotated[list[str], typer.Argument(help="Run ids.")]
) -> None:
    """Hide runs from searches (their data stays; restore brings them back)."""
    ws, t = _tracker(ctx)
    with ws:
        for run_id in run_ids:  # every id known before any is changed: a typo changes none
            t.store.get_run(run_id, include_deleted=True)
        for run_id in run_ids:
            t.store.set_deleted(run_id, True)
            console.print(f"deleted {run_id}")


@runs_app.command("restore")
def runs_restore(
    ctx: typer.Context, run_ids: Annotated[list[str], typer.Argument(help="Run ids.")]
) -> None:
    """Bring deleted runs back."""
    ws, t = _tracker(ctx)
    with ws:
        for run_id in run_ids:
            t.store.get_run(run_id, include_deleted=True)
        for run_id in run_ids:
            t.store.set_deleted(run_id, False)
            console.print(f"restored {run_id}")
