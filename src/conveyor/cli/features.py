"""``conveyor features``: apply definitions, build training sets, materialize, read online."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.context import workspace_for
from conveyor.cli.output import console
from conveyor.core.errors import InvalidArgumentError

features_app = typer.Typer(
    help="The feature store: definitions, point-in-time training data, materialization and "
    "online reads.\n\nFeatures are named VIEW:FEATURE (or FEATURE when only one view has it). "
    "Definitions live in Python (Entity, FeatureView, on_demand); `apply` stores them.",
    no_args_is_help=True,
)


def _service(ctx: typer.Context) -> Any:
    from conveyor.features.service import feature_service
    from conveyor.store.workspace import use_workspace

    ws = use_workspace(workspace_for(ctx), default=True)
    return feature_service(ws)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else ""


def _time(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    if text == "now":
        return datetime.now(UTC)
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgumentError(
            f"{what} takes an ISO time like 2026-11-23T10:00:00 (UTC) or 'now'; got {text!r}."
        ) from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _definitions(reference: str) -> list[Any]:
    """Every Entity, FeatureView and on-demand view defined in a module or file."""
    from conveyor.features.definitions import Entity, FeatureView, OnDemandView
    from conveyor.pipelines.loader import import_module_or_file

    module = import_module_or_file(reference)
    found = [v for v in vars(module).values() if isinstance(v, Entity | FeatureView | OnDemandView)]
    if not found:
        raise InvalidArgumentError(
            f"{reference} defines no Entity, FeatureView or on_demand view at its top level."
        )
    return found


@features_app.command("apply")
def apply(
    ctx: typer.Context,
    reference: Annotated[str, typer.Argument(help="A module (features.defs) or a .py file.")],
) -> None:
    """Store the definitions a module or file holds; changed ones become new versions."""
    svc = _service(ctx)
    for item in svc.apply(_definitions(reference)):
        what = "new version" if item.changed else "unchanged"
        suffix = "" if item.kind == "entity" else f" v{item.version} ({what})"
        console.print(f"{item.kind:<9} {escape(item.name)}{suffix}")


@features_app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List feature views and on-demand views."""
    views = _service(ctx).list_views()
    if as_json:
        console.print_json(json.dumps(views, default=str))
        return
    if not views:
        console.print(
            "No feature views yet. Define them in Python and run: conveyor features apply"
        )
        return
    table = Table("view", "kind", "version", "entities", "features", "ttl")
    for v in views:
        spec = v["definition"]
        feats = spec.get("features") or spec.get("outputs") or []
        ents = ", ".join(e["name"] for e in spec.get("entities", []))
        ttl = spec.get("ttl_s")
        table.add_row(
            escape(v["name"]),
            v["kind"],
            str(v["latest_version"]),
            escape(ents),
            escape(", ".join(f"{n}:{t}" for n, t in feats)),
            "" if not ttl else f"{ttl / 86400:g}d",
        )
    console.print(table)


@features_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A feature view's name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A view's definition, versions, materializations and freshness."""
    found = _service(ctx).show(name)
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    console.print(f"[bold]{escape(name)}[/] ({found['kind']}) v{found['latest_version']}")
    console.print_json(json.dumps(found["definition"], default=str))
    for v in found["versions"]:
        console.print(f"  v{v['version']}  {_when(v['created_at'])}  {escape(v['created_by'])}")
    for m in found["materializations"]:
        console.print(
            f"  materialized to {_when(m['end'])}: {m['rows']} rows in {m['seconds']:.2f} s"
        )
    if found["freshness_s"] is not None:
        console.print(f"  newest online value is {found['freshness_s'] / 3600:.1f} h old")


@features_app.command("historical")
def historical(
    ctx: typer.Context,
    entity_file: Annotated[Path, typer.Argument(help="Entity rows: .parquet or .csv.")],
    features: Annotated[
        list[str], typer.Option("--features", "-f", help="A feature reference (repeatable).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write (.parquet or .csv).")],
    timestamp: Annotated[
        str, typer.Option("--timestamp", help="The entity rows' time column.")
    ] = "event_timestamp",
) -> None:
    """Write point-in-time correct training data for the entity rows of a file."""
    import pandas as pd

    if not entity_file.is_file():
        raise InvalidArgumentError(f"There is no file {entity_file}.")
    svc = _service(ctx)
    if entity_file.suffix == ".parquet":
        frame = pd.read_parquet(entity_file)
    else:
        # Keys the sources keep as text are read as text: "007" stays "007", not 7.
        text = svc.text_keys(features) if hasattr(svc, "text_keys") else []
        frame = pd.read_csv(entity_file, dtype={k: str for k in text})
        if timestamp in frame.columns:
            try:
                frame[timestamp] = _times(pd, frame[timestamp])
            except (ValueError, TypeError) as e:
                raise InvalidArgumentError(
                    f"{entity_file}: the {timestamp!r} column holds a value that is not a "
                    f"date or time ({str(e).splitlines()[0].split('. ')[0]}).",
                    hint="Write times like 2026-01-05, 2026-01-05T09:30:00 or "
                    "2026-01-05T09:30:00+02:00.",
                ) from None
    result = svc.historical(frame, features, timestamp=timestamp)
    if out.suffix == ".parquet":
        result.to_parquet(out)
    else:
        result.to_csv(out, index=False)
    console.print(f"Wrote {len(result)} rows x {len(result.columns)} columns to {out}.")


@features_app.command("materialize")
def materialize(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Views (default: all).")] = None,
    start: Annotated[str | None, typer.Option("--start", help="From (default: the last).")] = None,
    end: Annotated[str, typer.Option("--end", help="Up to (ISO time, UTC) or now.")] = "now",
) -> None:
    """Write the latest values to the online store, from where the last run stopped."""
    done = _service(ctx).materialize(
        names or None, start=_time(start, "--start"), end=_time(end, "--end") or "now"
    )
    for m in done:
        console.print(
            f"{escape(m.view)}: {m.rows} rows written, up to {_when(m.end)} ({m.seconds:.2f} s)"
        )


@features_app.command("online")
def online(
    ctx: typer.Context,
    entity: Annotated[list[str], typer.Option("--entity", "-e", help="KEY=VALUE (repeatable).")],
    features: Annotated[
        list[str], typer.Option("--features", "-f", help="A feature reference (repeatable).")
    ],
) -> None:
    """Read materialized values for one entity."""
    rows: dict[str, list[Any]] = {}
    for pair in entity:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidArgumentError(f"--entity takes KEY=VALUE; got {pair!r}.")
        rows[key] = [value]
    found = _service(ctx).online(rows, features, with_timestamps=True)
    console.print_json(json.dumps({k: v[0] for k, v in found.items()}, default=str))


def _times(pd: Any, column: Any) -> Any:
    """A CSV time column as UTC times: ISO 8601 in any of its forms (a date alone, a time
    with an offset), else each value as pandas reads it alone ('01/05/2026')."""
    try:
        return pd.to_datetime(column, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return pd.to_datetime(column, utc=True, format="mixed")
