"""``conveyor data``: version, inspect, compare, restore, validate and move datasets."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from conveyor.cli.commands import interrupted_leaves
from conveyor.cli.context import workspace_for
from conveyor.cli.output import console, err_console, errors_exit, human_bytes

if TYPE_CHECKING:
    from conveyor.data.records import DatasetVersion
    from conveyor.data.service import DataService

data_app = typer.Typer(
    help="Version datasets (files, folders, tables), compare and restore versions, validate "
    "data against schemas, and copy versions to and from remotes.\n\n"
    "Versions are named NAME@N, NAME@latest (or just NAME) or NAME@<digest prefix>.",
    no_args_is_help=True,
)

REF_HELP = "A version: NAME@N, NAME@latest (or NAME), or NAME@<digest prefix>."


def _service(ctx: typer.Context) -> tuple[Any, DataService]:
    from conveyor.data.service import data_service

    ws = workspace_for(ctx)
    return ws, data_service(ws)


class RichProgress:
    """A progress bar on stderr with bytes, bytes per second and files per second."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TextColumn("{task.fields[files]}/{task.fields[total_files]} files"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        )
        self._task: Any = None
        self._files = 0
        self._started = 0.0
        self._lock = threading.Lock()

    def start(self, description: str, files: int, size: int) -> None:
        self._files = 0
        self._started = time.monotonic()
        self._progress.start()
        self._task = self._progress.add_task(
            description, total=size, files=0, total_files=files, rate=""
        )

    def advance(self, files: int, size: int) -> None:
        with self._lock:
            self._files += files
            elapsed = max(time.monotonic() - self._started, 1e-6)
            rate = f"{self._files / elapsed:,.0f} files/s"
            self._progress.update(self._task, advance=size, files=self._files, rate=rate)

    def stop(self) -> None:
        self._progress.stop()


def _version_dict(v: DatasetVersion) -> dict[str, Any]:
    return {
        "ref": v.ref,
        "name": v.name,
        "version": v.version,
        "id": v.id,
        "digest": v.digest,
        "kind": v.kind,
        "files": v.files,
        "size": v.size,
        "rows": v.rows,
        "columns": v.columns,
        "has_schema": v.has_schema,
        "description": v.description,
        "source": v.source,
        "created_at": v.created_at.isoformat(),
        "created_by": v.created_by,
    }


def _files(n: int) -> str:
    """``'1 file'``, ``'1,024 files'``."""
    return f"{n:,} file" + ("" if n == 1 else "s")


def _rows(n: int | None) -> str:
    """``', 1 row'``, ``', 1,024 rows'``; nothing for a version that is not a table."""
    return "" if n is None else f", {n:,} row" + ("" if n == 1 else "s")


def _when(v: DatasetVersion, *, seconds: bool = True) -> str:
    return v.created_at.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


@data_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. 'customers' or 'churn/train'.")],
    path: Annotated[str, typer.Argument(help="A file or folder to version.")],
    message: Annotated[
        str, typer.Option("--message", "-m", help="What this version is (kept with it).")
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the version as JSON.")] = False,
) -> None:
    """Add a version of dataset NAME from PATH (a file or a folder).

    Files are hashed in parallel and stored once by content; files unchanged since the last
    add are not read again. Adding unchanged content prints the existing version.

    Example: conveyor data add customers data/customers/ -m "weekly extract"
    """
    from conveyor.core.errors import NotFoundError

    ws, svc = _service(ctx)
    with ws:
        started = time.perf_counter()
        try:
            latest = svc.get(name).version
        except NotFoundError:
            latest = 0
        # Objects land whole or not at all, and the version is recorded last, in one step.
        with interrupted_leaves(
            "a version is recorded whole or not at all; add again (it reuses what was stored)"
        ):
            version = svc.add(name, path, description=message, progress=RichProgress())
        elapsed = time.perf_counter() - started
    created = version.version > latest
    if as_json:
        console.print_json(json.dumps({**_version_dict(version), "created": created}))
        return
    rows = _rows(version.rows)
    console.print(
        f"[bold]{escape(version.ref)}[/bold]  {_files(version.files)}, "
        f"{human_bytes(version.size)}{rows}  digest {version.digest[:12]}  "
        f"[dim]({elapsed:.2f}s)[/dim]" + ("" if created else "  [dim]unchanged[/dim]")
    )
    if not created:
        kept = " (the message was not kept)" if message else ""
        err_console.print(f"Up to date: {escape(version.ref)} already has this content{kept}.")


@data_app.command("list")
def list_(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="List this dataset's versions instead.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List datasets (or the versions of one dataset, newest first)."""
    ws, svc = _service(ctx)
    with ws:
        if name is None:
            latest = [svc.get(d.name) for d in svc.datasets() if d.latest_version]
        else:
            found = svc.versions(name)
    if name is None:
        if as_json:
            console.print_json(json.dumps([_version_dict(v) for v in latest]))
            return
        if not latest:
            console.print("No datasets yet: add one with `conveyor data add NAME PATH`.")
            return
        narrow = console.width < _WIDE
        table = Table(show_edge=not narrow)
        # Narrow: the dataset and its latest version in one column, as the ref NAME@N.
        headers = ["latest"] if narrow else ["dataset", "latest"]
        for header in [*headers, "files", "size", "rows", "added (UTC)"]:
            table.add_column(header, no_wrap=True)
        for v in latest:
            named = [escape(v.ref)] if narrow else [escape(v.name), str(v.version)]
            table.add_row(
                *named,
                f"{v.files:,}",
                human_bytes(v.size),
                f"{v.rows:,}" if v.rows is not None else "",
                _when(v, seconds=not narrow),
            )
        console.print(table)
        return
    if as_json:
        console.print_json(json.dumps([_version_dict(v) for v in found]))
        return
    console.print(_versions_table(found, narrow=console.width < _WIDE))


#: Terminals narrower than this get the short form of the lists: fewer columns, shorter
#: digests and times, so each ref stays on one line at 80 columns.
_WIDE = 120


def _versions_table(found: list[DatasetVersion], *, narrow: bool) -> Table:
    """The versions ``found`` as a table; ``narrow``: without files and author, with an
    8-character digest and minutes, and each message cut to the room left."""
    table = Table(show_edge=not narrow)
    table.add_column("version", no_wrap=True)
    table.add_column("digest", no_wrap=True)
    headers = ("size", "rows") if narrow else ("files", "size", "rows")
    for header in headers:
        table.add_column(header, no_wrap=True)
    table.add_column("added (UTC)", no_wrap=True)
    if not narrow:
        table.add_column("by", no_wrap=True)
    table.add_column("message")  # the one that gives way: cut, not wrapped, when narrow
    for v in found:
        cells = {
            "files": f"{v.files:,}",
            "size": human_bytes(v.size),
            "rows": f"{v.rows:,}" if v.rows is not None else "",
        }
        table.add_row(
            escape(v.ref),
            v.digest[: 8 if narrow else 12],
            *(cells[h] for h in headers),
            _when(v, seconds=not narrow),
            *([] if narrow else [escape(v.created_by)]),
            Text(v.description, no_wrap=True, overflow="ellipsis")
            if narrow
            else escape(v.description),
        )
    return table


@data_app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    files: Annotated[
        bool, typer.Option("--files", help="Also list each file: path, size and digest.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a version: file count and size, schema, profile summary and lineage (--files:
    each file too)."""
    from conveyor.data.versioning import VERSION_KIND
    from conveyor.store.records import ObjectRef

    ws, svc = _service(ctx)
    with ws:
        v = svc.get(ref)
        node = ObjectRef(VERSION_KIND, v.id)
        upstream = ws.lineage(node, direction="upstream", depth=1).edges
        downstream = ws.lineage(node, direction="downstream", depth=1).edges
        listed = svc.manifest(v).files if files else None
        runs = _run_names(ws, [e.src for e in upstream] + [e.dst for e in downstream])
    if as_json:
        out = _version_dict(v)
        if listed is not None:
            out["file_list"] = [
                {"path": f.path, "size": f.size, "digest": f.digest} for f in listed
            ]
        out["profile"] = v.profile
        out["lineage"] = {
            "upstream": [{"src": str(e.src), "relation": e.relation} for e in upstream],
            "downstream": [{"dst": str(e.dst), "relation": e.relation} for e in downstream],
        }
        console.print_json(json.dumps(out, default=str))
        return
    console.print(f"[bold]{escape(v.ref)}[/bold]  ({v.kind})  digest {v.digest}")
    console.print(
        f"{_files(v.files)}, {human_bytes(v.size)}"
        + _rows(v.rows)
        + f"; added {_when(v)} UTC by {escape(v.created_by)}"
    )
    if v.description:
        console.print(f"message: {escape(v.description)}")
    if v.source:
        console.print(f"source: {escape(v.source)}")
    console.print("schema: " + ("saved (see `conveyor data schema`)" if v.has_schema else "none"))
    if v.columns:
        cols = (v.profile or {}).get("columns", {})
        # Infinities and NaNs are in no statistic of a float column (min and max are finite):
        # where a column has any, they are counted in a column of their own.
        odd = any(p.get("infinite") or p.get("nan") for p in cols.values())
        heads = ["column", "type", "nulls", *(["inf / NaN"] if odd else [])]
        table = Table(*heads, "min", "mean", "max", "distinct / top")
        for col, kind in v.columns.items():
            p = cols.get(col, {})
            top = p.get("top")
            extra = (
                ", ".join(f"{escape(_value(k))} ({n})" for k, n in top[:3])
                if top
                else (str(p["distinct"]) if "distinct" in p else "")
            )
            table.add_row(
                escape(col),
                escape(kind),
                f"{p.get('null_rate', 0):.1%}",
                *([_non_finite(p)] if odd else []),
                _stat(p.get("min")),
                _stat(p.get("mean")),
                _stat(p.get("max")),
                extra,
            )
        console.print(table)
    for e in upstream:
        console.print(f"from: {escape(_node(e.src, runs))} ({escape(e.relation)})")
    for e in downstream:
        console.print(f"to:   {escape(_node(e.dst, runs))} ({escape(e.relation)})")
    if listed is not None:
        table = Table("path", "size", "digest")
        for f in listed:
            table.add_row(escape(f.path), human_bytes(f.size), f.digest[:12])
        console.print(table)


def _non_finite(profile: dict[str, Any]) -> str:
    """How many infinities and NaNs a float column's profile counted: ``3 inf, 1 NaN``."""
    counts = [(profile.get("infinite"), "inf"), (profile.get("nan"), "NaN")]
    return ", ".join(f"{n:,} {what}" for n, what in counts if n)


def _run_names(ws: Any, nodes: list[Any]) -> dict[str, str]:
    """The names of the runs among lineage ``nodes`` (run id -> name); a run the tracking
    store no longer holds has none."""
    from conveyor.core.errors import NotFoundError
    from conveyor.tracking.runs import tracker

    names: dict[str, str] = {}
    for run_id in sorted({n.id for n in nodes if n.kind == "run"}):
        with contextlib.suppress(NotFoundError):
            names[run_id] = tracker(ws).store.get_run(run_id).name
    return names


def _node(ref: Any, runs: dict[str, str]) -> str:
    """A lineage node as ``data show`` prints it: a run by its name and id, as ``run
    churn-train (01J...)``, since an id alone says nothing; anything else as KIND:ID."""
    if ref.kind == "run" and ref.id in runs:
        return f"run {runs[ref.id]} ({ref.id})"
    return str(ref)


def _value(value: Any, width: int = 30) -> str:
    """A column's frequent value as one short line: a free-text answer of a paragraph, or
    one with line breaks, stretched the profile table over many lines.

    >>> print(_value("late again\\nand rude; I want a refund for the whole order"))
    late again\\nand rude; I want …
    """
    text = str(value).replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def _stat(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return escape(str(value))


@data_app.command("diff")
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="The older version, e.g. customers@2.")],
    b: Annotated[str, typer.Argument(help="The newer version, e.g. customers@3.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Compare two versions: files added, removed and changed; columns; rows; statistics."""
    ws, svc = _service(ctx)
    with ws:
        d = svc.diff(a, b)
    if as_json:
        console.print_json(json.dumps(d.to_dict()))
        return
    name_a, name_b = (ref.rpartition("@")[0] or ref for ref in (d.a, d.b))
    if name_a != name_b:
        err_console.print(
            f"[yellow]Note:[/yellow] comparing versions of two datasets, {escape(name_a)} and "
            f"{escape(name_b)}."
        )
    console.print(
        f"{escape(d.a)} -> {escape(d.b)}: {len(d.added)} added, {len(d.removed)} removed, "
        f"{len(d.changed)} changed, {d.unchanged} unchanged"
    )
    for f in d.added[:50]:
        console.print(f"[green]+ {escape(f.path)}[/green]  {human_bytes(f.size)}")
    for f in d.removed[:50]:
        console.print(f"[red]- {escape(f.path)}[/red]")
    for old, new in d.changed[:50]:
        console.print(
            f"[yellow]~ {escape(new.path)}[/yellow]  {human_bytes(old.size)} -> "
            f"{human_bytes(new.size)}"
        )
    shown = len(d.added[:50]) + len(d.removed[:50]) + len(d.changed[:50])
    total = len(d.added) + len(d.removed) + len(d.changed)
    if total > shown:
        console.print(f"[dim]... and {total - shown} more (use --json for all)[/dim]")
    for col, kind in d.columns_added.items():
        console.print(f"[green]+ column {escape(col)}[/green] ({escape(kind)})")
    for col, kind in d.columns_removed.items():
        console.print(f"[red]- column {escape(col)}[/red] ({escape(kind)})")
    for col, (old_t, new_t) in d.columns_retyped.items():
        console.print(
            f"[yellow]~ column {escape(col)}[/yellow]: {escape(old_t)} -> {escape(new_t)}"
        )
    if d.rows != (None, None):
        before, after = (f"{n:,}" if n is not None else "not a table" for n in d.rows)
        console.print(f"rows: {before} -> {after}")
    if d.shifts:
        table = Table("column", "statistic", "before", "after", "change")
        for s in d.shifts:
            table.add_row(
                escape(s.column), s.statistic, _stat(s.before), _stat(s.after), _stat(s.change)
            )
        console.print(table)
    if d.categories:
        table = Table("column", "category", "", "share before", "after", "change")
        for c in d.categories:
            table.add_row(
                escape(c.column),
                escape(str(c.value)),
                c.status,
                f"{c.before:.1%}",
                f"{c.after:.1%}",
                f"{c.change:+.1%}",
            )
        console.print(table)


@data_app.command("checkout")
def checkout(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    dest: Annotated[
        Path | None,
        typer.Argument(
            help="Folder to write the files into. Default: the folder the version was added "
            "from when it is inside this project's folder, else ./NAME (a / in NAME becomes -)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace the content of a non-empty DEST (its hidden entries are kept).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print where it went as JSON.")] = False,
) -> None:
    """Restore a version's files, byte-identical to what was added.

    Refuses to write into a non-empty folder unless --force, which replaces its content:
    entries that are not in the version are removed, except hidden ones (.git), which an
    add skips too. A DEST inside the project's stores is refused, and so is --force where
    the replaced content holds the project's folder or one of its stores.
    """
    ws, svc = _service(ctx)
    with ws:
        v = svc.get(ref)
        target = dest or _default_dest(v, ws.settings.root)
        # The files are written aside and moved in place last (put back if stopped midway).
        with interrupted_leaves(f"{target} holds what it held before or the whole version"):
            path = svc.checkout(v.ref, target, force=force, progress=RichProgress())
    if as_json:
        console.print_json(json.dumps({"ref": v.ref, "path": str(path), "files": v.files}))
        return
    console.print(f"{escape(v.ref)} -> {escape(str(path))}  ({_files(v.files)})")


def _default_dest(v: DatasetVersion, root: Path) -> Path:
    """The folder the version was added from, when that is inside this project's folder
    ``root``; else ./NAME. A source elsewhere may be another project's folder (two projects
    sharing a store, or this one moved), which a checkout must not write into."""
    source = Path(v.source) if v.source and v.source != "<table>" else None
    if source is not None and v.files > 0 and source.is_dir():
        inside = os.path.realpath(source)
        if os.path.commonpath([inside, os.path.realpath(root)]) == os.path.realpath(root):
            return source
    return Path(v.name.replace("/", "-"))


@data_app.command("validate")
def validate(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            help=f"{REF_HELP} Or a table file (.csv, .parquet...): a table file of that name "
            "here is checked as a file; anything else, a folder too, names a version."
        ),
    ],
    schema: Annotated[
        Path | None,
        typer.Option(
            "--schema",
            help="A pandera YAML schema. Default: the schema saved with the version "
            "(or its nearest earlier version).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a version or a table file against a schema.

    For CI, the exit status tells bad data from a check that could not run: 0 when every
    check passes, 1 when a check fails, 2 on an error (no such version or file, a schema
    file that cannot be read, no schema to check with, a check that cannot run).
    """
    with errors_exit(2):  # not 1: that would say the data is bad
        ws, svc = _service(ctx)
        with ws:
            report = svc.validate(target, schema)
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
    else:
        style = "green" if report.passed else "red"
        console.print(f"[{style}]{escape(report.summary())}[/{style}]")
        if report.schema_source:
            console.print(f"[dim]schema: {escape(report.schema_source)}[/dim]")
        if report.failures:
            table = Table("column", "check", "failures", "examples")
            for f in report.failures:
                table.add_row(
                    escape(f.column or "<table>"),
                    escape(f.check),
                    str(f.failures),
                    escape(", ".join(str(x) for x in f.examples[:5])),
                )
            console.print(table)
    if not report.passed:
        raise typer.Exit(1)


@data_app.command("schema")
def schema(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    infer: Annotated[
        bool, typer.Option("--infer", help="Infer the schema from this version and save it.")
    ] = False,
    set_: Annotated[
        Path | None, typer.Option("--set", help="Save this YAML file as the version's schema.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the YAML here, not stdout.")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="With --infer: replace a schema that was set or edited since."
        ),
    ] = False,
) -> None:
    """Print (or infer, or set) the pandera schema saved with a version, as editable YAML.

    Example: conveyor data schema customers@3 --infer -o schema.yaml, edit it, then
    conveyor data schema customers@3 --set schema.yaml
    """
    from conveyor.core.errors import (
        ConflictError,
        InvalidArgumentError,
        NotFoundError,
        PermissionDeniedError,
    )
    from conveyor.data.validation import read_schema_file, schema_from_yaml, schema_to_yaml

    if infer and set_ is not None:
        raise InvalidArgumentError(
            "--infer and --set both save a schema: give one of them.",
            hint="Infer to a file (--infer -o FILE), edit it, then --set FILE.",
        )
    if output is not None:  # refused before --infer saves anything
        _check_writable(output)
    ws, svc = _service(ctx)
    with ws:
        if set_ is not None:
            text = read_schema_file(set_)
            schema_from_yaml(text, source=f"the schema file {set_}")  # its errors name it
            svc.set_schema(ref, text)
            console.print(f"Saved {escape(str(set_))} as the schema of {escape(svc.get(ref).ref)}.")
            return
        found = svc.infer_schema(ref, overwrite=force) if infer else svc.schema(ref)
        if found is None:
            raise NotFoundError(
                f"No schema is saved with {ref}.",
                hint=f"Infer one: `conveyor data schema {ref} --infer`.",
            )
        text = schema_to_yaml(found)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as e:
            kind = PermissionDeniedError if isinstance(e, PermissionError) else ConflictError
            raise kind(
                f"Cannot write {output}: {e.strerror or e}.",
                hint="Choose a file in a folder you may write to, or leave out -o to print.",
            ) from e
        console.print(f"Wrote {escape(str(output))}.")
    else:
        sys.stdout.write(text)


def _check_writable(output: Path) -> None:
    """Refuse an output file that cannot be written: in no folder, a folder itself, a name
    too long, or a path through a link that loops."""
    from conveyor.core.errors import InvalidArgumentError
    from conveyor.core.paths import check_usable_path

    check_usable_path(output, "the file to write the schema to")
    if output.is_dir():
        raise InvalidArgumentError(
            f"Cannot write {output}: it is a folder.", hint="Give a file name, e.g. schema.yaml."
        )
    if not output.parent.is_dir():
        raise InvalidArgumentError(
            f"Cannot write {output}: the folder {output.parent} does not exist.",
            hint="Create it first, or choose a file in an existing folder.",
        )


def _transfer(
    ctx: typer.Context,
    refs: list[str] | None,
    remote: str | None,
    *,
    push: bool,
    as_json: bool,
    verify: bool = False,
) -> None:
    ws, svc = _service(ctx)
    again = "push" if push else "pull"
    with ws, interrupted_leaves(f"the objects copied so far are whole; {again} again for the rest"):
        if push:
            result = svc.push(refs or None, remote, verify=verify, progress=RichProgress())
        else:
            result = svc.pull(refs or None, remote, verify=verify, progress=RichProgress())
        # A fresh clone on its own metadata store knows no versions, and a remote holds only
        # their bytes: "Pulled 0 objects" alone reads as success.
        unknown = not push and not refs and not svc.datasets()
    if unknown:
        err_console.print(
            f"warning: project {escape(ws.settings.project)!r} has no dataset versions in its "
            "metadata store, so there was nothing to pull. A remote holds the versions' files, "
            "not their records: to pull a team's data, set store_uri to the PostgreSQL "
            "metadata store it adds to, then pull again (from a team server's project, "
            "checkout and load fetch the files themselves)."
        )
    if as_json:
        console.print_json(json.dumps(dataclasses.asdict(result)))
        if result.missing:
            raise typer.Exit(1)
        return
    verb = "Pushed" if push else "Pulled"
    where = "to" if push else "from"
    there = "there" if push else "here"
    repaired = f"; {result.repaired:,} damaged {there} were replaced" if result.repaired else ""
    console.print(
        f"{verb} {result.copied:,} objects ({human_bytes(result.copied_bytes)}) {where} "
        f"{escape(result.destination if push else result.source)}; "
        f"{result.present:,} were already there{repaired}."
    )
    if result.missing:
        lacks = "neither this store nor the remote holds all" if push else "the remote lacks some"
        err_console.print(
            f"error: {len(result.missing):,} versions were not {verb.lower()}: {lacks} of "
            f"their files: {escape(', '.join(result.missing))}. Push them from the machine "
            "that added them (conveyor data push)."
        )
        raise typer.Exit(1)


REFS_HELP = "Versions (NAME@N) or datasets (NAME: all versions). Default: everything."
REMOTE_HELP = "Remote artifact store (s3://bucket/prefix or a folder). Default: remote_uri."


@data_app.command("push")
def push(
    ctx: typer.Context,
    refs: Annotated[list[str] | None, typer.Argument(help=REFS_HELP)] = None,
    remote: Annotated[str | None, typer.Option("--remote", "-r", help=REMOTE_HELP)] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Also read the copies the remote holds and replace each damaged one (what "
            "a pull that reported a damaged copy on the remote needs).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Copy the files versions need to a remote (only what is missing; safe to re-run).

    With --verify, every object of the versions the remote holds is read and checked
    against its digest too, and the damaged ones are replaced with this project's copies.
    """
    _transfer(ctx, refs, remote, push=True, as_json=as_json, verify=verify)


@data_app.command("pull")
def pull(
    ctx: typer.Context,
    refs: Annotated[list[str] | None, typer.Argument(help=REFS_HELP)] = None,
    remote: Annotated[str | None, typer.Option("--remote", "-r", help=REMOTE_HELP)] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Also read the copies held here and replace each damaged one (what a "
            "checkout that reported a corrupted file needs).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Copy the files versions need from a remote into this project's artifact store.

    Only what is missing here is copied; with --verify, every object of the versions held
    here is read and checked against its digest too, and the damaged ones are replaced.
    """
    _transfer(ctx, refs, remote, push=False, as_json=as_json, verify=verify)
