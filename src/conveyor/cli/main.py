"""The ``conveyor`` command: entry point, global options and the error boundary."""

from __future__ import annotations

import json
import os
import sys
from gc import freeze as freeze_heap  # (the `gc` command is this module's `gc`)
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from conveyor._version import __version__
from conveyor.cli.commands import INTERRUPTED_EXIT, RunsUntilStopped, use_conveyor_commands
from conveyor.cli.context import settings_for, workspace_for
from conveyor.cli.output import console, debugging, err_console, human_bytes, print_error
from conveyor.core.errors import ConveyorError, InvalidArgumentError

app = typer.Typer(
    name="conveyor",
    help="Conveyor: data, features, pipelines, experiments, models, serving and monitoring "
    "in one tool. Start with [bold]conveyor init[/bold] in your project folder.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Inspect and migrate the metadata store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


#: The commands defined in their own modules: name -> (module, attribute), in help order.
_DOMAIN_COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("conveyor.cli.data", "data_app"),
    "experiments": ("conveyor.cli.tracking", "experiments_app"),
    "features": ("conveyor.cli.features", "features_app"),
    "models": ("conveyor.cli.models", "models_app"),
    "runs": ("conveyor.cli.tracking", "runs_app"),
    "pipeline": ("conveyor.cli.pipelines", "pipeline_app"),
    "schedule": ("conveyor.cli.pipelines", "schedule_app"),
    "scheduler": ("conveyor.cli.pipelines", "scheduler_app"),
    "deploy": ("conveyor.cli.serving", "deploy_app"),
    "monitor": ("conveyor.cli.monitoring", "monitor_app"),
    "labels": ("conveyor.cli.monitoring", "labels_app"),
    "alerts": ("conveyor.cli.monitoring", "alerts_app"),
    "loop": ("conveyor.cli.loop", "loop_app"),
    "ci": ("conveyor.cli.ci", "ci_app"),
    "users": ("conveyor.cli.server", "users_app"),
    "tokens": ("conveyor.cli.server", "tokens_app"),
    "projects": ("conveyor.cli.server", "projects_app"),
    "server": ("conveyor.cli.server", "server"),
    "ui": ("conveyor.cli.server", "ui"),
    "serve": ("conveyor.cli.serving", "serve"),
    "predict": ("conveyor.cli.serving", "predict"),
    "build": ("conveyor.cli.serving", "build"),
}

#: The commands above that run until Ctrl-C stops them (servers).
_RUN_UNTIL_STOPPED = frozenset({"server", "ui", "serve"})


def _add_domain_commands(argv: list[str]) -> None:
    """Register the command ``argv`` invokes, or every command when it names none of them.

    Typer inspects the signature of every registered command on each start; registering
    only the one that runs saves a fifth of a second on every invocation.
    """
    import importlib

    invoked = _invoked(argv)
    if invoked is None and "--version" in argv and not {"--help", "-h"} & set(argv):
        return  # answered by the callback's eager option, before any command is looked up
    names = [invoked] if invoked in _DOMAIN_COMMANDS else list(_DOMAIN_COMMANDS)
    if any(k.endswith("_COMPLETE") for k in os.environ):  # shell completion lists them all
        names = list(_DOMAIN_COMMANDS)
    for name in names:
        module, attribute = _DOMAIN_COMMANDS[name]
        found = getattr(importlib.import_module(module), attribute)
        if isinstance(found, typer.Typer):
            app.add_typer(found, name=name)
        else:
            cls = RunsUntilStopped if name in _RUN_UNTIL_STOPPED else None
            app.command(name, cls=cls)(found)


def _reflow_help(typer_app: typer.Typer) -> None:
    """Give each command of ``typer_app`` (and of its groups) its docstring as help, each
    paragraph on one line.

    Typer's rich help keeps a docstring's line breaks, so a paragraph wrapped at 92 columns
    in the source broke mid-sentence in an 80-column terminal ("unchanged since the /
    last / add are not read again"). Rich wraps a paragraph of one line to the terminal.

    >>> demo = typer.Typer()
    >>> @demo.command()
    ... def hello() -> None:
    ...     '''Say hello.
    ...
    ...     To the
    ...     world.
    ...     '''
    >>> _reflow_help(demo)
    >>> demo.registered_commands[0].help.splitlines()
    ['Say hello.', '', 'To the world.']
    """
    import inspect

    for info in typer_app.registered_commands:
        doc = inspect.getdoc(info.callback) if info.callback is not None else None
        if info.help is None and doc:
            info.help = "\n\n".join(
                paragraph if paragraph.startswith("\b") else " ".join(paragraph.split("\n"))
                for paragraph in doc.split("\n\n")
            )
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


def _invoked(argv: list[str]) -> str | None:
    """Return the command name in ``argv``: the first word that is not a global option.

    Help asked before the command (``conveyor --help data``) is the whole command's help,
    which lists every command.

    >>> _invoked(["--root", "proj", "data", "add"]), _invoked(["--debug", "runs"]), _invoked([])
    ('data', 'runs', None)
    >>> _invoked(["--help", "data"]) is None
    True
    """
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--help", "-h"):
            return None
        elif arg == "--root":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _version(value: bool) -> None:
    if value:
        console.print(f"conveyor {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when something fails.")
    ] = False,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Project root (default: the nearest folder with conveyor.toml or .conveyor/).",
            envvar="CONVEYOR_ROOT",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Conveyor's command line."""
    ctx.obj = root.resolve() if root is not None else None


@app.command()
def init(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Folder to set up (default: here).")] = Path("."),
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Project name (default: folder name).")
    ] = None,
    ci: Annotated[
        str | None,
        typer.Option(
            "--ci", help="Also write a CI workflow running `conveyor ci check`: github or gitlab."
        ),
    ] = None,
    ci_pipeline: Annotated[
        str, typer.Option(help="The training pipeline the CI check runs.")
    ] = "pipelines/train.py:train",
    ci_policy: Annotated[
        str, typer.Option(help="The loop policy whose gate the CI check applies.")
    ] = "policies.py:policy",
) -> None:
    """Create [bold].conveyor/[/bold] and a commented [bold]conveyor.toml[/bold]; safe to repeat.

    Example: [cyan]conveyor init --project churn --ci github[/cyan]
    """
    from conveyor.store.workspace import init_project

    target = path if path != Path(".") or ctx.find_root().obj is None else ctx.find_root().obj
    if ci is not None and ci not in ("github", "gitlab"):
        raise InvalidArgumentError(f"--ci takes github or gitlab; got {ci!r}.")
    ws, created = init_project(target, project=project)  # a bad name: nothing is written
    with ws:
        for item in created:
            console.print(f"created {escape(item)}")
        if ci is not None:
            from conveyor.cli.ci import write_workflow

            written = write_workflow(Path(target), ci, ci_pipeline, ci_policy)
            console.print(f"created {escape(str(written))}")
        state = "ready" if created else "already initialized"
        console.print(
            f"Project [bold]{escape(ws.project.name)}[/bold] {state} in "
            f"{escape(str(ws.settings.root))} (metadata at revision {ws.metadata.revision()})."
        )


@app.command()
def info(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show the resolved configuration, the store's schema revision and record counts."""
    from conveyor.core.uris import redact_uri
    from conveyor.store.metadata.engine import describe_url
    from conveyor.store.metadata.migrate import HEAD

    with workspace_for(ctx) as ws:
        s = ws.settings
        hooks = [h.strip() for h in s.webhooks.split(",") if h.strip()]
        config = {
            "version": __version__,
            "root": str(s.root),
            "project": s.project,
            "store_uri": describe_url(s.store_uri),
            "artifact_uri": redact_uri(s.artifact_uri),
            "remote_uri": redact_uri(s.remote_uri) if s.remote_uri else None,
            "online_uri": redact_uri(s.online_uri),
            "log_uri": redact_uri(s.log_uri),
            "query_memory_limit": s.query_memory_limit or None,
            "approvers": s.approvers or None,
            # Only where they go: a webhook's path or query often holds its secret.
            "webhooks": ", ".join(_webhook_host(h) for h in hooks) or None,
            "trust_pickled_models": s.trusts_pickled_models,
            "actor": s.actor,
        }
        counts: dict[str, int] | None = None
        if ws.remote is None:  # through a team server: the server's store is not ours to count
            config.update(revision=ws.metadata.revision(), head=HEAD)
            counts = ws.metadata.counts()
    if as_json:
        console.print_json(json.dumps({**config, "counts": counts}))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    for key, value in config.items():
        table.add_row(f"[bold]{key}[/bold]", escape(str(value)) if value is not None else "none")
    console.print(table)
    if counts is not None:
        counts_table = Table("table", "rows", title="records", title_justify="left")
        for name, n in counts.items():
            counts_table.add_row(name, str(n))
        console.print(counts_table)


def _webhook_host(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "<not a URL>"


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Option("--revision", help="Target revision (default: the newest).")
    ] = "head",
) -> None:
    """Apply pending migrations (opening a store does this on its own too)."""
    from conveyor.store.metadata.engine import describe_url
    from conveyor.store.metadata.store import MetadataStore

    s = settings_for(ctx)
    with MetadataStore(s.store_uri, actor=s.actor, auto_migrate=False) as store:
        applied = store.migrate(revision)
        now = store.revision()
    where = describe_url(s.store_uri)
    if applied:
        console.print(f"Applied {', '.join(applied)} to {escape(where)}; now at revision {now}.")
    else:
        console.print(f"{escape(where)} is up to date at revision {now}.")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the metadata store's schema revision and whether it is the newest."""
    from conveyor.store.metadata.engine import sqlite_path
    from conveyor.store.metadata.migrate import HEAD
    from conveyor.store.metadata.store import MetadataStore

    s = settings_for(ctx)
    path = sqlite_path(s.store_uri)
    if path is not None and not path.exists():
        console.print(f"empty: no store at {escape(str(path))} yet (head is {HEAD})")
        return
    with MetadataStore(s.store_uri, actor=s.actor, auto_migrate=False) as store:
        current = store.revision()
    if current == HEAD:
        console.print(f"{current} (head)")
    else:
        console.print(f"{current or 'empty'} (head is {HEAD}: run 'conveyor db upgrade')")


@app.command()
def gc(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be deleted; delete nothing.")
    ] = False,
    grace: Annotated[
        str,
        typer.Option("--grace", help="Keep unreferenced objects younger than this (e.g. 1h, 0s)."),
    ] = "1h",
) -> None:
    """Delete stored artifacts that no record references, and report the bytes freed."""
    from conveyor.core.durations import parse_duration

    grace_period = parse_duration(grace, what="--grace value")
    with workspace_for(ctx) as ws:
        report = ws.gc(dry_run=dry_run, grace=grace_period)
    verb = "Would delete" if dry_run else "Deleted"
    console.print(
        f"{verb} {len(report.deleted)} of {report.scanned} objects, "
        f"{human_bytes(report.bytes_freed)}"
        + (f"; kept {report.kept_recent} younger than {grace}" if report.kept_recent else "")
        + (
            f"; removed {report.staging_files_removed} unfinished temporary files"
            if report.staging_files_removed
            else ""
        )
        + "."
    )
    if report.missing:
        err_console.print(
            f"[yellow]warning:[/yellow] {len(report.missing)} referenced objects are missing "
            f"from the artifact store (first: {report.missing[0]})."
        )


@app.command()
def lineage(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(
            help="The object, as KIND:ID (e.g. run:01JB...), or model_version:NAME/N (or "
            "NAME@ALIAS), or dataset_version:NAME@N."
        ),
    ],
    upstream: Annotated[
        bool, typer.Option("--upstream", help="What it came from (the default).")
    ] = False,
    downstream: Annotated[bool, typer.Option("--downstream", help="What came from it.")] = False,
    depth: Annotated[
        int | None, typer.Option("--depth", min=1, help="How many steps to follow (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the edges as JSON.")] = False,
) -> None:
    """Draw what an object came from or what came from it, as a tree.

    Example: [cyan]conveyor lineage model_version:churn@champion --upstream[/cyan]
    """
    from conveyor.store.records import ObjectRef

    root = ObjectRef.parse(ref)
    directions = [d for d, on in (("upstream", upstream), ("downstream", downstream)) if on]
    with workspace_for(ctx) as ws:
        root = _by_name(ws, root)
        graphs = [ws.lineage(root, direction=d, depth=depth) for d in (directions or ["upstream"])]
        labels = _labels(ws, {root} | {n for g in graphs for e in g.edges for n in (e.src, e.dst)})
    if as_json:
        out = {
            g.direction: [
                {"src": str(e.src), "dst": str(e.dst), "relation": e.relation, "depth": e.depth}
                for e in g.edges
            ]
            for g in graphs
        }
        console.print_json(json.dumps(out))
        return
    for graph in graphs:
        shown = escape(labels.get(root, str(root)))
        tree = Tree(f"[bold]{shown}[/bold] [dim]({graph.direction})[/dim]")
        _grow(tree, graph, root, {root}, labels, depth)
        if not graph.edges:
            tree.add(f"[dim]nothing {graph.direction}[/dim]")
        console.print(tree)


def _by_name(ws: Any, ref: Any) -> Any:
    """``model_version:churn/3`` (or ``churn@champion``) and ``dataset_version:customers@2``
    as the ids the lineage graph holds."""
    from conveyor.core.errors import NotFoundError
    from conveyor.store.records import ObjectRef

    try:
        if ref.kind == "model_version" and ("/" in ref.id or "@" in ref.id):
            from conveyor.models.service import model_service

            return ObjectRef(ref.kind, model_service(ws).get(ref.id).id)
        if ref.kind == "dataset_version" and "@" in ref.id:
            from conveyor.data.service import data_service

            return ObjectRef(ref.kind, data_service(ws).get(ref.id).id)
    except (NotFoundError, InvalidArgumentError) as e:
        # not a name the registry knows: the graph may still hold it as written
        err_console.print(f"[dim]note: {escape(str(e))}[/dim]")
    return ref


def _labels(ws: Any, refs: set[Any]) -> dict[Any, str]:
    """Readable names for the nodes that have one (model and dataset versions, loop
    executions), the id's tail beside them (through a team server: the ids as they are)."""
    if ws.remote is not None:
        return {}
    import sqlalchemy as sa

    from conveyor.store.metadata import schema as t
    from conveyor.store.records import ObjectRef

    def ids(kind: str) -> list[str]:
        return [r.id for r in refs if r.kind == kind]

    labels: dict[Any, str] = {}
    queries = {
        "model_version": sa.select(
            t.model_versions.c.id,
            t.models.c.name + "/" + sa.cast(t.model_versions.c.version, sa.String),
        )
        .join(t.models, t.models.c.id == t.model_versions.c.model_id)
        .where(t.model_versions.c.id.in_(ids("model_version"))),
        "dataset_version": sa.select(
            t.dataset_versions.c.id,
            t.datasets.c.name + "@" + sa.cast(t.dataset_versions.c.version, sa.String),
        )
        .join(t.datasets, t.datasets.c.id == t.dataset_versions.c.dataset_id)
        .where(t.dataset_versions.c.id.in_(ids("dataset_version"))),
        "loop_execution": sa.select(
            t.loop_executions.c.id,
            t.loop_policies.c.name + " (" + t.loop_executions.c.state + ")",
        )
        .join(t.loop_policies, t.loop_policies.c.id == t.loop_executions.c.policy_id)
        .where(t.loop_executions.c.id.in_(ids("loop_execution"))),
    }
    with ws.metadata.read() as conn:
        for kind, query in queries.items():
            if ids(kind):
                for found_id, name in conn.execute(query):
                    labels[ObjectRef(kind, found_id)] = f"{kind}:{name} ({found_id[-6:].lower()})"
    return labels


def _grow(node: Tree, graph, ref, on_path: set, labels: dict, left: int | None) -> None:  # type: ignore[no-untyped-def]
    """Add ``ref``'s children to ``node``, ``left`` levels more (None: all). A node the graph
    reached within the depth by a short path is not followed further down a longer one."""
    if left == 0:
        return
    for edge in graph.children(ref):
        nxt = edge.src if graph.direction == "upstream" else edge.dst
        label = f"{escape(labels.get(nxt, str(nxt)))} [dim]{escape(edge.relation)}[/dim]"
        if nxt in on_path:
            node.add(label + " [yellow](cycle)[/yellow]")
            continue
        _grow(
            node.add(label), graph, nxt, on_path | {nxt}, labels, None if left is None else left - 1
        )


@app.command()
def audit(
    ctx: typer.Context,
    obj: Annotated[
        str | None, typer.Option("--object", help="Only events about this KIND:ID.")
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only events by this actor.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only events in the last DURATION (e.g. 1d).")
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action", help="Only this action (e.g. model.alias_move, promotion.approve)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the events as JSON (before and after too).")
    ] = False,
) -> None:
    """List audit events, newest first: when, who, what, which object, and the new value.

    Through a team server (CONVEYOR_STORE_URI=http://...) it lists the project's events and
    needs the project's admin role; each event also names the token and client address.
    """
    from conveyor.core.clock import utcnow
    from conveyor.core.durations import parse_duration
    from conveyor.store.records import ObjectRef

    ref = ObjectRef.parse(obj) if obj else None
    start = utcnow() - parse_duration(since, what="--since value") if since else None
    with workspace_for(ctx) as ws:
        if ws.remote is not None:
            events = _remote_audit(ws, obj, actor, action, start, limit)
        else:
            events = ws.metadata.audit_log(
                obj=ref, actor=actor, action=action, since=start, limit=limit
            )
    if as_json:
        from conveyor.core.encoding import jsonable

        typer.echo(json.dumps(jsonable(events), indent=2))
        return
    if not events:
        console.print("No audit events match.")
        return
    for ev in events:
        via = f"  (token {ev.token_id} from {ev.source})" if ev.token_id or ev.source else ""
        line = Text.assemble(
            (ev.at.strftime("%Y-%m-%d %H:%M:%S"), "dim"),
            "  ",
            (ev.actor, "cyan"),
            "  ",
            (ev.action, "bold"),
            "  ",
            str(ev.object),
            (via, "dim"),
            ("  " + json.dumps(ev.after, default=str) if ev.after is not None else "", "dim"),
        )
        console.print(line, no_wrap=True, overflow="ellipsis", crop=True)


def _remote_audit(ws, obj, actor, action, start, limit):  # type: ignore[no-untyped-def]
    from datetime import datetime

    from conveyor.store.records import AuditEvent, ObjectRef

    client = ws.remote
    body = client.get_json(
        client.project_path(ws.settings.project, "audit"),
        object=obj,
        actor=actor,
        action=action,
        since=start.isoformat() if start else None,
        limit=limit,
    )
    return [
        AuditEvent(
            id=e["id"],
            at=datetime.fromisoformat(e["at"]),
            actor=e["actor"],
            action=e["action"],
            object=ObjectRef.parse(e["object"]),
            project_id=e["project_id"],
            before=e["before"],
            after=e["after"],
            token_id=e["token_id"],
            source=e["source"],
        )
        for e in body["events"]
    ]


def run() -> None:
    """Console-script entry point: run the app, turning Conveyor errors into one line."""
    try:
        _run()
    finally:
        # The command is done: spare the interpreter's exit a full collection over the heap
        # the imports built (0.2 s of every command with pandas and SQLAlchemy loaded).
        # Exit handlers still run; nothing frozen outlives the process.
        freeze_heap()


def _run() -> None:
    debug = debugging()
    try:
        _add_domain_commands(sys.argv[1:])
        _reflow_help(app)
        use_conveyor_commands(app)
        app()
    except ConveyorError as e:
        if debug:
            raise
        print_error(e)
        sys.exit(1)
    except KeyboardInterrupt:  # before a command runs (its own are its class's to report)
        err_console.print("Interrupted.")
        sys.exit(INTERRUPTED_EXIT)
    except Exception as e:
        if debug:
            raise
        print_error(e)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    run()
