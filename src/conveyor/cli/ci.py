"""``conveyor ci``: the model check for pull requests, and the CI workflows that run it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.context import workspace_for
from conveyor.cli.output import console, errors_exit

ci_app = typer.Typer(
    help="Model CI: check a candidate model the way the loop's gate does, for a pull request.",
    no_args_is_help=True,
)

_STATUS = {"passed": "[green]passed[/green]", "failed": "[red]failed[/red]", "skipped": "skipped"}


def _params(values: list[str]) -> dict[str, Any]:
    from conveyor.core.errors import InvalidArgumentError

    out: dict[str, Any] = {}
    for item in values:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"-p takes KEY=VALUE; got {item!r}.")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


@ci_app.command("check")
def check(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="The candidate: NAME/VERSION or alias.")
    ] = None,
    pipeline: Annotated[
        str | None,
        typer.Option(help="Or train it now: MODULE:PIPELINE (its registered version is checked)."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Pipeline parameter KEY=VALUE.")
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(help="Take the gate (and deployment) from a loop Policy: MODULE:POLICY."),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="Labelled dataset version to judge on, e.g. holdout@latest.")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Its label column (default: inferred).")
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="Metric to compare (default: ROC AUC / RMSE).")
    ] = None,
    min_delta: Annotated[
        float, typer.Option(help="How much better than the champion the candidate must be.")
    ] = 0.0,
    against: Annotated[
        str, typer.Option(help="champion (what the deployment serves, or NAME@champion) or none.")
    ] = "champion",
    gate_check: Annotated[
        list[str] | None,
        typer.Option(
            "--check",
            help="validation, signature, latency_p99_ms<MS or "
            "fairness:demographic_parity_difference<X (repeat it).",
        ),
    ] = None,
    sensitive: Annotated[
        list[str] | None, typer.Option(help="Sensitive column(s) for fairness checks.")
    ] = None,
    deployment: Annotated[
        str | None, typer.Option("--deployment", "-d", help="The deployment it is meant for.")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Write the summary as Markdown (a PR comment).")
    ] = None,
    junit: Annotated[
        Path | None, typer.Option(help="Write JUnit XML (the CI's test report).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="A TOML file whose [ci] table sets these options (default: the project's "
            "conveyor.toml, when it has one); options given here win."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a candidate model the way the loop's gate does; exit 1 when a check fails, 2 on
    an error (the check could not run).

    The candidate against the champion on labelled data, and data validation, signature,
    fairness and latency checks.

    Example: conveyor ci check -m churn/5 --data holdout@latest --check signature --markdown
    report.md --junit report.xml
    """
    # An error exits 2, not 1: 1 says the model failed a check (CI tells the two apart).
    with errors_exit(2):
        from conveyor.core.errors import InvalidArgumentError
        from conveyor.loop.ci import check as run_check
        from conveyor.loop.policy import Gate, Policy

        ws = workspace_for(ctx)
        table = _ci_table(config or ws.settings.root / "conveyor.toml", required=config is not None)
        model = model or table.get("model")
        pipeline = pipeline or table.get("pipeline")
        policy = policy or table.get("policy")
        data = data or table.get("data")
        target = target or table.get("target")
        metric = metric or table.get("metric")
        min_delta = min_delta or float(table.get("min_delta", 0.0))
        against = table.get("against", against) if against == "champion" else against
        gate_check = gate_check or list(table.get("checks", []))
        sensitive = sensitive or list(table.get("sensitive", []))
        deployment = deployment or table.get("deployment")
        params = {**dict(table.get("params", {})), **_params(param or [])}
        gate: Gate | None = None
        model_name: str | None = None
        if policy is not None:
            from conveyor.core.modules import import_module_or_file

            module_name, _, attr = policy.rpartition(":")
            found = getattr(import_module_or_file(module_name), attr, None) if module_name else None
            if not isinstance(found, Policy) or found.gate is None:
                raise InvalidArgumentError(f"{policy} is not a conveyor.loop.Policy with a gate.")
            gate = found.gate
            deployment = deployment or found.deployment
            model_name = found.model
        if data is not None or gate is None:
            if data is None:
                raise InvalidArgumentError(
                    "Say what to judge on: --data DATASET@VERSION (or --policy MODULE:POLICY)."
                )
            gate = Gate(
                data=data,
                metric=metric,
                target=target,
                min_delta=min_delta,
                against=against,
                checks=tuple(gate_check or ()),
                sensitive=tuple(sensitive or ()),
            )
        with ws:
            report = run_check(
                ws,
                gate,
                model=model,
                pipeline=pipeline,
                params=params,
                model_name=model_name,
                deployment=deployment,
            )
        if markdown is not None:
            _write(markdown, report.to_markdown())
        if junit is not None:
            _write(junit, report.to_junit())
        if as_json:
            console.print_json(json.dumps(report.to_dict(), default=str))
        else:
            against_text = f" against {report.champion}" if report.champion else ""
            console.print(
                f"Model check of [bold]{escape(report.candidate)}[/bold]{escape(against_text)} "
                f"on {escape(report.data)}:"
            )
            results = Table("check", "result", "details")
            for c in report.checks:
                results.add_row(escape(c["name"]), _STATUS[c["status"]], escape(str(c["detail"])))
            console.print(results)
    if not report.passed:
        raise typer.Exit(1)


_CI_KEYS = frozenset(
    {
        "model",
        "pipeline",
        "params",
        "policy",
        "data",
        "target",
        "metric",
        "min_delta",
        "against",
        "checks",
        "sensitive",
        "deployment",
    }
)


def _ci_table(path: Path, *, required: bool) -> dict[str, Any]:
    """The ``[ci]`` table of the TOML file ``path`` (empty when it has none)."""
    import tomllib

    from conveyor.core.errors import InvalidArgumentError, NotFoundError

    if not path.is_file():
        if required:
            raise NotFoundError(f"No config file {path}.")
        return {}
    try:
        with path.open("rb") as f:
            table = tomllib.load(f).get("ci", {})
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgumentError(f"{path} is not valid TOML: {e}.") from e
    unknown = sorted(set(table) - _CI_KEYS)
    if unknown:
        raise InvalidArgumentError(
            f"The [ci] table of {path} sets unknown key(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(_CI_KEYS))}."
        )
    return dict(table)


def _write(path: Path, text: str) -> None:
    """Temp-then-rename: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(path)


GITHUB_WORKFLOW = """\
# Conveyor's model check on every pull request (written by `conveyor init --ci github`).
# It trains the candidate with the pipeline, compares it with the champion on held-out data,
# and checks data validation, the signature, fairness and latency; the summary shows on the
# run's page and the job fails when a check does. The job runs the pull request's code, which
# writes to the store it is given: point CONVEYOR_STORE_URI and CONVEYOR_ARTIFACT_URI
# (repository secrets) at a staging copy of the team's stores, not at production, and do not
# list the CI's actor among the project's approvers.
name: model-check
on:
  pull_request:
  workflow_dispatch:
jobs:
  model-check:
    runs-on: ubuntu-latest
    env:
      CONVEYOR_STORE_URI: ${{{{ secrets.CONVEYOR_STORE_URI }}}}
      CONVEYOR_ARTIFACT_URI: ${{{{ secrets.CONVEYOR_ARTIFACT_URI }}}}
      CONVEYOR_ACTOR: model-ci
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - run: pip install "conveyor-mlops[postgres,s3,sklearn]"
      - name: Check the candidate model
        run: >
          conveyor ci check --pipeline {pipeline} --policy {policy}
          --markdown model-check.md --junit model-check.xml
      - if: always()
        run: cat model-check.md >> "$GITHUB_STEP_SUMMARY"
      - if: always()
        uses: actions/upload-artifact@v4
        with:
          name: model-check
          path: model-check.*
"""

GITLAB_JOB = """\
# Conveyor's model check on merge requests (written by `conveyor init --ci gitlab`).
# Include it from .gitlab-ci.yml:  include: [{{local: .gitlab/conveyor-model-check.yml}}]
# Set CONVEYOR_STORE_URI and CONVEYOR_ARTIFACT_URI as CI/CD variables, pointing at a staging
# copy of the team's stores (the job runs the merge request's code, which writes to them).
model-check:
  image: python:3.11
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
  script:
    - pip install "conveyor-mlops[postgres,s3,sklearn]"
    - conveyor ci check --pipeline {pipeline} --policy {policy}
      --markdown model-check.md --junit model-check.xml
  artifacts:
    when: always
    paths: [model-check.md, model-check.xml]
    reports:
      junit: model-check.xml
"""


def write_workflow(root: Path, kind: str, pipeline: str, policy: str) -> Path:
    """Write the CI workflow for ``kind`` (github, gitlab) under ``root``; never overwrite."""
    from conveyor.core.errors import AlreadyExistsError, InvalidArgumentError

    if kind == "github":
        path, text = root / ".github" / "workflows" / "conveyor-model-check.yml", GITHUB_WORKFLOW
    elif kind == "gitlab":
        path, text = root / ".gitlab" / "conveyor-model-check.yml", GITLAB_JOB
    else:
        raise InvalidArgumentError(f"--ci takes github or gitlab; got {kind!r}.")
    if path.exists():
        raise AlreadyExistsError(f"{path} exists already; remove it to write it again.")
    _write(path, text.format(pipeline=pipeline, policy=policy))
    return path
