"""``conveyor monitor``: drift between a reference and a current sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.context import workspace_for
from conveyor.cli.output import console

monitor_app = typer.Typer(
    help="Monitoring: data drift between a reference sample (say, the training data) and a "
    "current one (say, last week's requests).",
    no_args_is_help=True,
)

SOURCE_HELP = "A .csv or .parquet file, a folder of Parquet files, or a dataset NAME@VERSION."


def _load(ctx: typer.Context, source: str) -> Any:
    import pandas as pd

    from conveyor.core.errors import InvalidArgumentError

    path = Path(source)
    if path.is_dir():
        return pd.read_parquet(path)
    if path.is_file():
        if path.suffix == ".csv":
            return pd.read_csv(path)
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
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
    large ones; categorical: chi-square, or Jensen-Shannon distance on large samples. Exits 1
    when the dataset drifted (at least half of the columns), so scripts can act on it.

    Example: conveyor monitor drift customers@3 this_week.parquet
    """
    from conveyor.monitoring.stats import drift as run_drift

    ref = _load(ctx, reference)
    cur = _load(ctx, current)
    chosen = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
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
        raise typer.Exit(1)


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
