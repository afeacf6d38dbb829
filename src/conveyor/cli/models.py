"""``conveyor models``: the registry's versions, aliases, promotions and their history."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.context import workspace_for
from conveyor.cli.output import console

if TYPE_CHECKING:
    from conveyor.models.records import ModelVersion, PromotionRequest
    from conveyor.models.service import ModelService

models_app = typer.Typer(
    help="Registered models: versions, aliases, comparisons, and promotions that need "
    "approval.\n\nVersions are named NAME/N (a number), NAME@ALIAS (e.g. churn@champion), "
    "or NAME / NAME@latest (the newest). Models are logged from Python: "
    "cv.models.log(model, name=...).",
    no_args_is_help=True,
)

REF_HELP = "A version: NAME/N, NAME@ALIAS, or NAME (the newest)."


def _service(ctx: typer.Context) -> tuple[Any, ModelService]:
    from conveyor.models.service import model_service

    ws = workspace_for(ctx)
    return ws, model_service(ws)


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def _when(at: Any) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at is not None else ""


@models_app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List registered models with their latest version and aliases."""
    ws, svc = _service(ctx)
    with ws:
        found = svc.list_models()
    if as_json:
        _print_json([m.to_dict() for m in found])
        return
    if not found:
        console.print("No models yet. Log one from Python: cv.models.log(model, name='churn').")
        return
    table = Table("model", "latest", "aliases", "protected", "created (UTC)")
    for m in found:
        table.add_row(
            escape(m.name),
            str(m.latest_version),
            escape(", ".join(f"{a} -> {v}" for a, v in m.aliases.items())),
            escape(", ".join(m.protected_aliases)),
            _when(m.created_at),
        )
    console.print(table)


@models_app.command("versions")
def versions(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the versions of a model, newest first."""
    ws, svc = _service(ctx)
    with ws:
        found = svc.versions(name)
    if as_json:
        _print_json([v.to_dict() for v in found])
        return
    table = Table("version", "flavor", "aliases", "run", "digest", "created (UTC)", "by")
    for v in found:
        table.add_row(
            escape(v.ref),
            v.flavor,
            escape(", ".join(v.aliases)),
            v.run_id or "",
            v.digest[:12],
            _when(v.created_at),
            escape(v.created_by),
        )
    console.print(table)


@models_app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    full: Annotated[bool, typer.Option("--all", help="List every input column.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a version: flavor, digest, signature, requirements, source run and data."""
    ws, svc = _service(ctx)
    with ws:
        v = svc.get(ref)
        data = svc.data_versions(v)
    if as_json:
        _print_json(v.to_dict() | {"info": v.info, "data_versions": data})
        return
    _print_version(v, data, full=full)


SHOWN_INPUTS = 12


def _print_version(v: ModelVersion, data: list[str], *, full: bool) -> None:
    console.print(f"[bold]{escape(v.ref)}[/bold]  ({v.flavor})  digest {v.digest}")
    console.print(
        f"logged {_when(v.created_at)} UTC by {escape(v.created_by)}"
        + (f" from run {v.run_id}" if v.run_id else "")
    )
    if v.aliases:
        console.print("aliases: " + escape(", ".join(v.aliases)))
    if v.description:
        console.print(f"description: {escape(v.description)}")
    if data:
        console.print("trained on: " + escape(", ".join(data)))
    if v.signature is not None:
        table = Table("input", "type", "nullable")
        shown = v.signature.inputs if full else v.signature.inputs[:SHOWN_INPUTS]
        for c in shown:
            shape = f" {list(c.shape)}" if c.shape else ""
            table.add_row(escape(c.name or "(tensor)"), escape(c.dtype + shape), str(c.nullable))
        console.print(table)
        if len(shown) < len(v.signature.inputs):
            console.print(f"... and {len(v.signature.inputs) - len(shown)} more inputs (--all)")
        if v.signature.outputs:
            console.print(
                "outputs: " + escape(", ".join(c.describe() for c in v.signature.outputs))
            )
    else:
        console.print("signature: none")
    console.print(
        "requirements: " + escape(", ".join(f"{k}=={val}" for k, val in v.requirements.items()))
    )


@models_app.command("alias")
def alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. champion.")],
    version: Annotated[
        int | None, typer.Argument(help="The version to point the alias at.", min=1)
    ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
) -> None:
    """Point an alias at a version (atomically), or remove it with --delete.

    Protected aliases move only through `conveyor models promote` and an approval.
    """
    if (version is None) == (not delete):
        raise typer.BadParameter("Give a VERSION to set the alias, or --delete to remove it.")
    ws, svc = _service(ctx)
    with ws:
        if delete:
            move = svc.delete_alias(name, alias_name)
        else:
            assert version is not None
            move = svc.set_alias(name, alias_name, version)
    was = f" (was {move.previous})" if move.previous is not None else ""
    if move.version is None:
        console.print(f"Removed {escape(name)}@{escape(alias_name)}{was}.")
    else:
        console.print(f"{escape(name)}@{escape(alias_name)} -> {move.version}{was}.")


@models_app.command("history")
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    alias_name: Annotated[
        str | None, typer.Option("--alias", help="Only this alias (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every alias move: which version held which alias, when, set by whom."""
    ws, svc = _service(ctx)
    with ws:
        moves = svc.alias_history(name, alias_name)
    if as_json:
        _print_json([m.to_dict() for m in moves])
        return
    if not moves:
        console.print(f"No alias of {escape(name)} has been set yet.")
        return
    table = Table("at (UTC)", "alias", "version", "previous", "by", "request")
    for m in moves:
        table.add_row(
            _when(m.at),
            escape(m.alias),
            str(m.version) if m.version is not None else "(removed)",
            str(m.previous) if m.previous is not None else "",
            escape(m.actor),
            m.request_id or "",
        )
    console.print(table)


@models_app.command("compare")
def compare(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help=REF_HELP)],
    b: Annotated[str, typer.Argument(help=REF_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Compare two versions: params, metrics, training data, signature, requirements."""
    ws, svc = _service(ctx)
    with ws:
        result = svc.compare(a, b)
    if as_json:
        _print_json(result)
        return
    left, right = result["a"], result["b"]
    table = Table("", escape(left["ref"]), escape(right["ref"]))
    table.add_row("flavor", left["flavor"], right["flavor"])
    table.add_row("run", left["run_id"] or "", right["run_id"] or "")
    table.add_row("data", escape(", ".join(left["data"])), escape(", ".join(right["data"])))
    for key in ("params", "metrics", "requirements"):
        for k, (x, y) in result[f"{key}_diff"].items():
            table.add_row(
                f"{key[:-1] if key != 'metrics' else 'metric'} {escape(k)}", _cell(x), _cell(y)
            )
    console.print(table)
    changes = result["signature_changes"]
    console.print("signature: " + ("same" if not changes else escape("; ".join(changes))))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return escape(str(value))


@models_app.command("protect")
def protect(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    aliases: Annotated[
        list[str] | None,
        typer.Argument(
            help="Aliases to protect, or with --off to release (default: champion "
            "production; with --off: every alias)."
        ),
    ] = None,
    off: Annotated[
        bool, typer.Option("--off", help="Release the aliases given (no alias given: all).")
    ] = False,
) -> None:
    """Require an approved promotion request to move these aliases.

    Adds to the aliases already protected; --off releases the ones named, and only those.

    Examples:\n
      conveyor models protect churn                  # champion and production\n
      conveyor models protect churn staging          # staging too\n
      conveyor models protect churn staging --off    # staging no longer
    """
    ws, svc = _service(ctx)
    with ws:
        if off:
            change = "remove" if aliases else "set"  # no alias named: release them all
            model = svc.require_approval(name, aliases or [], change=change)
        else:
            model = svc.require_approval(name, aliases or ["champion", "production"], change="add")
    shown = ", ".join(model.protected_aliases) or "none"
    console.print(f"{escape(name)}: protected aliases: {escape(shown)}.")


def _print_request(r: PromotionRequest) -> None:
    console.print(
        f"[bold]{r.id}[/bold]  {escape(r.model)}/{r.version} -> @{escape(r.alias)}  "
        f"[{'green' if r.status == 'approved' else 'red' if r.status == 'rejected' else 'yellow'}]"
        f"{r.status}[/]"
    )
    console.print(f"requested {_when(r.requested_at)} UTC by {escape(r.requested_by)}")
    if r.deferred:
        console.print(
            "deferred: approving it does not move the alias; its requester moves it later "
            "(the continuous-training loop, after the canary)"
        )
    if r.comment:
        console.print(f"comment: {escape(r.comment)}")
    for c in r.checks:
        mark = {"passed": "[green]passed[/]", "failed": "[red]failed[/]"}.get(
            c["status"], "[dim]skipped[/]"
        )
        console.print(f"  check {c['name']}: {mark}  {escape(c['detail'])}")
    if r.decided_by:
        console.print(
            f"{r.status} {_when(r.decided_at)} UTC by {escape(r.decided_by)}"
            + (f": {escape(r.decision_comment)}" if r.decision_comment else "")
        )


@models_app.command("promote")
def promote(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    alias_name: Annotated[str, typer.Option("--alias", "-a", help="The alias to move.")],
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Request that an alias point at a version; automatic checks run and are attached."""
    ws, svc = _service(ctx)
    with ws:
        request = svc.request_promotion(ref, alias_name, comment=comment)
    if as_json:
        _print_json(request.to_dict())
        return
    _print_request(request)
    console.print(f"Approve with: conveyor models approve {request.id}")


RequestId = Annotated[str, typer.Argument(help="The request's id.")]
Comment = Annotated[str, typer.Option("--comment", "-m", help="Why.")]


def _decide(ctx: typer.Context, action: str, request_id: str, comment: str, **options: Any) -> None:
    ws, svc = _service(ctx)
    with ws:
        request = getattr(svc, action)(request_id, comment=comment, **options)
    _print_request(request)


@models_app.command("approve")
def approve(
    ctx: typer.Context,
    request_id: RequestId,
    comment: Comment = "",
    override_checks: Annotated[
        bool,
        typer.Option(
            "--override-checks",
            help="Approve a request that failed a check; needs -m saying why (audited).",
        ),
    ] = False,
) -> None:
    """Approve a pending promotion request: the alias moves in the same transaction.

    A request that failed an automatic check is refused unless --override-checks is given
    with a comment.
    """
    _decide(ctx, "approve", request_id, comment, override_checks=override_checks)


@models_app.command("reject")
def reject(ctx: typer.Context, request_id: RequestId, comment: Comment = "") -> None:
    """Reject a pending promotion request; the alias stays where it is."""
    _decide(ctx, "reject", request_id, comment)


@models_app.command("withdraw")
def withdraw(ctx: typer.Context, request_id: RequestId, comment: Comment = "") -> None:
    """Withdraw your own promotion request (pending, or approved for later and unused)."""
    _decide(ctx, "withdraw", request_id, comment)


@models_app.command("requests")
def requests(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this model's requests.")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status", help="pending, approved, rejected, withdrawn or applied (deferred, used)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List promotion requests, newest first."""
    ws, svc = _service(ctx)
    with ws:
        found = svc.requests(name, status=status)
    if as_json:
        _print_json([r.to_dict() for r in found])
        return
    if not found:
        console.print("No promotion requests.")
        return
    table = Table("id", "version", "alias", "status", "checks", "requested by", "decided by")
    table.columns[0].no_wrap = True  # whole: approve takes the id exactly
    for r in found:
        failed = sum(c["status"] == "failed" for c in r.checks)
        table.add_row(
            r.id,
            escape(f"{r.model}/{r.version}"),
            escape(r.alias),
            r.status,
            f"{failed} failed" if failed else "ok",
            escape(r.requested_by),
            escape(r.decided_by or ""),
        )
    console.print(table)


@models_app.command("predict")
def predict(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    input_path: Annotated[
        str, typer.Argument(metavar="INPUT", help="A .csv, .parquet or .jsonl file of rows.")
    ],
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Write predictions here (.csv or .parquet)."),
    ] = None,
    proba: Annotated[
        bool, typer.Option("--proba", help="Class probabilities instead of labels.")
    ] = False,
    trust: Annotated[
        bool,
        typer.Option("--trust", help="Allow loading a pickle-based (python flavor) model."),
    ] = False,
) -> None:
    """Predict rows from a file with a version; input is checked against its signature."""
    from pathlib import Path

    import pandas as pd

    from conveyor.core.errors import ConveyorError, InvalidArgumentError

    source = Path(input_path)
    suffix = source.suffix.lower()
    if suffix not in (".csv", ".parquet", ".jsonl"):
        raise InvalidArgumentError(
            f"Cannot read {source}: expected a .csv, .parquet or .jsonl file."
        )
    if not source.is_file():
        raise InvalidArgumentError(f"{source} does not exist or is not a file.")
    written = (".csv", ".parquet", *(f".csv{z}" for z in (".gz", ".bz2", ".zip", ".xz", ".zst")))
    if output is not None:
        if not output.lower().endswith(written):
            raise InvalidArgumentError(
                f"Cannot write predictions to {output}: expected a .csv or .parquet file name "
                "(.csv.gz and other compressed CSV too)."
            )
        if Path(output).resolve() == source.resolve():
            raise InvalidArgumentError(
                f"The output {output} is the input file: writing it would replace the rows "
                "with their predictions.",
                hint="Name another file with -o.",
            )
        if not Path(output).resolve().parent.is_dir():
            raise InvalidArgumentError(
                f"Cannot write {output}: the folder {Path(output).parent} does not exist."
            )
    ws, svc = _service(ctx)
    with ws:
        loaded = svc.load(ref, trust=trust)
        frame = _read_rows(source, suffix, loaded.signature)
        try:
            values = loaded.predict_proba(frame) if proba else loaded.predict(frame)
        except ConveyorError:
            raise
        except Exception as e:  # the model's own code failed on these rows
            raise InvalidArgumentError(
                f"{loaded.version.ref} failed to predict the rows of {source}: "
                f"{type(e).__name__}: {e}",
                hint="Check the rows against `conveyor models show "
                f"{loaded.version.ref}` (its signature and input example).",
            ) from e
    result = pd.DataFrame(values)
    if proba:
        classes = loaded.version.info.get("classes")
        if classes and len(classes) == result.shape[1]:
            result.columns = [f"proba_{c}" for c in classes]
    elif result.shape[1] == 1:
        result.columns = ["prediction"]
    result.columns = [str(c) for c in result.columns]
    if output is None:
        sys.stdout.write(result.to_csv(index=False))
    elif output.lower().endswith(".parquet"):
        result.to_parquet(output, index=False)
        console.print(f"Wrote {len(result):,} predictions to {escape(output)}.")
    else:
        result.to_csv(output, index=False)
        console.print(f"Wrote {len(result):,} predictions to {escape(output)}.")


def _read_rows(source: Any, suffix: str, signature: Any) -> Any:
    """Read the rows of ``source``; columns the signature takes as text are read as text
    (a CSV's "01234" stays "01234", not the number 1234)."""
    import pandas as pd

    text = {
        c.name
        for c in (signature.inputs if signature is not None else ())
        if c.name is not None and c.dtype in ("string", "str", "object")
    }
    if suffix == ".parquet":
        return pd.read_parquet(source)
    if suffix == ".jsonl":
        return pd.read_json(source, lines=True, dtype={c: str for c in text} or None)
    return pd.read_csv(source, dtype={c: str for c in text} or None)


@models_app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    dataset: Annotated[str, typer.Argument(help="A table dataset version, e.g. customers@4.")],
    target: Annotated[str, typer.Option("--target", "-t", help="The label column.")],
    slices: Annotated[
        list[str] | None,
        typer.Option("--slice", help="Also report metrics per value of this column."),
    ] = None,
    sensitive: Annotated[
        list[str] | None,
        typer.Option("--sensitive", help="Report group fairness across this column."),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", help="classification or regression (default: told from the model)."),
    ] = None,
    no_importance: Annotated[
        bool, typer.Option("--no-importance", help="Skip permutation feature importance.")
    ] = False,
    trust: Annotated[
        bool, typer.Option("--trust", help="Allow loading a pickle-based (python) model.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate a version on a dataset version: metrics, per slice, fairness, importance."""
    ws, svc = _service(ctx)
    with ws:
        ev = svc.evaluate(
            ref,
            dataset,
            target=target,
            slices=slices,
            sensitive=sensitive,
            task=task,
            importance=not no_importance,
            trust=trust,
        )
    if as_json:
        _print_json(ev.to_dict())
        return
    console.print(
        f"[bold]{escape(ev.model)}/{ev.version}[/bold] on {escape(ev.dataset)} "
        f"({ev.task}, target {escape(ev.target)}, {ev.rows:,} rows)"
    )
    table = Table("metric", "value")
    for key, value in ev.metrics.items():
        table.add_row(key, _cell(value))
    console.print(table)
    for column, groups in ev.slices.items():
        keys = [k for k in groups[0] if k not in ("value", "rows")][:5] if groups else []
        sliced = Table(escape(column), "rows", *keys)
        for g in groups:
            sliced.add_row(_cell(g["value"]), str(g["rows"]), *(_cell(g[k]) for k in keys))
        console.print(sliced)
    for column, result in ev.fairness.items():
        console.print(
            f"fairness by {escape(column)}: demographic parity difference "
            f"{_cell(result['demographic_parity_difference'])}, TPR gap "
            f"{_cell(result['tpr_gap'])}, FPR gap {_cell(result['fpr_gap'])}"
        )
    if ev.importance:
        top = ", ".join(f"{f['feature']} ({f['importance']:.3g})" for f in ev.importance[:5])
        console.print(f"most important ({ev.importance[0]['metric']} drop): {escape(top)}")


@models_app.command("card")
def card(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    html: Annotated[bool, typer.Option("--html", help="An HTML page instead of Markdown.")] = False,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write the card to this file.")
    ] = None,
) -> None:
    """Print (or write) a version's model card: data, params, evaluation, fairness, approvals."""
    ws, svc = _service(ctx)
    with ws:
        text = svc.card(ref, format="html" if html else "markdown")
    if output is None:
        sys.stdout.write(text)
        return
    from pathlib import Path

    from conveyor.core.errors import InvalidArgumentError

    target = Path(output)
    if not target.resolve().parent.is_dir():
        raise InvalidArgumentError(
            f"Cannot write {output}: the folder {target.parent} does not exist."
        )
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    console.print(f"Wrote the model card of {escape(ref)} to {escape(output)}.")


@models_app.command("deliveries")
def deliveries_(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many.", min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the latest webhook deliveries of registry events (see `webhooks` in conveyor.toml)."""
    from conveyor.models.webhooks import deliveries

    ws = workspace_for(ctx)
    with ws:
        found = deliveries(ws, limit=limit)
    if as_json:
        _print_json(found)
        return
    if not found:
        console.print("No webhook deliveries yet (set `webhooks` in conveyor.toml).")
        return
    table = Table("at (UTC)", "event", "url", "status", "attempts", "response", "error")
    for d in found:
        table.add_row(
            d["at"][:19].replace("T", " "),
            d["event"],
            escape(d["url"]),
            d["status"],
            str(d["attempts"]),
            str(d["response_code"] or ""),
            escape(d["error"]),
        )
    console.print(table)


@models_app.command("import-mlflow")
def import_mlflow(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="An MLflow model folder (holding MLmodel).")],
    name: Annotated[str, typer.Option("--name", help="Register it under this model name.")],
    trust: Annotated[
        bool,
        typer.Option("--trust", help="Allow reading its pickle (runs code from the file)."),
    ] = False,
) -> None:
    """Register an MLflow model (sklearn flavor): re-stored with skops, signature kept."""
    ws, svc = _service(ctx)
    with ws:
        v = svc.import_mlflow(path, name, trust=trust)
    console.print(
        f"Imported {escape(path)} as {escape(v.ref)} ({v.flavor}, digest {v.digest[:12]})"
        + (", with its signature" if v.signature else "")
        + "."
    )


@models_app.command("export")
def export(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    fmt: Annotated[str, typer.Option("--format", help="The format: onnx.")] = "onnx",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write the model here.")
    ] = None,
    register: Annotated[
        str | None, typer.Option("--register", help="Also log it as a version of this model.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Convert a scikit-learn version to ONNX, checked to predict the same on its example."""
    if output is None and register is None:
        output = f"{ref.replace('/', '-').replace('@', '-')}.onnx"
    ws, svc = _service(ctx)
    with ws:
        result = svc.export(ref, format=fmt, path=output, register=register)
    if as_json:
        _print_json(result)
        return
    checked = f"predictions checked on {result['rows_checked']} example rows"
    if "max_proba_diff" in result:
        checked += f", probabilities within {result['max_proba_diff']:.1e}"
    if output:
        console.print(f"Wrote {escape(output)}: {checked}.")
    if result.get("registered"):
        console.print(f"Registered as {escape(result['registered'])}.")
