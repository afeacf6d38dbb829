"""The model CI check: the loop's gate, run on a pull request.

``conveyor ci check`` takes a candidate (a registered version, or the one a pipeline run
registers), runs the same gate the continuous-training loop runs (the candidate against the
champion on a labelled dataset version, data validation, signature compatibility with the
target deployment, fairness thresholds, a latency budget), and writes the outcome as Markdown
(for a pull-request comment or a job summary) and JUnit XML (for the CI's test report). The
command exits non-zero when a check fails, so the pipeline of the CI fails with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from conveyor.core.errors import InvalidArgumentError
from conveyor.loop.policy import Gate
from conveyor.store.workspace import Workspace

__all__ = ["CheckReport", "check"]


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The checks of one candidate: each with its status (passed, failed, skipped) and why."""

    candidate: str
    champion: str | None
    data: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    pipeline_run: str | None = None

    @property
    def passed(self) -> bool:
        return all(c["status"] != "failed" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "candidate": self.candidate,
            "champion": self.champion,
            "data": self.data,
            "pipeline_run": self.pipeline_run,
            "checks": self.checks,
        }

    def to_markdown(self) -> str:
        mark = {"passed": "✅", "failed": "❌", "skipped": "⏭️"}
        verdict = "passed" if self.passed else "failed"
        against = f" against `{self.champion}`" if self.champion else ""
        lines = [
            f"### Model check {verdict}: `{self.candidate}`{against} on `{self.data}`",
            "",
            "| check | result | details |",
            "| --- | --- | --- |",
        ]
        for c in self.checks:
            lines.append(
                f"| {_cell(c['name'])} | {mark[c['status']]} {c['status']} | {_cell(c['detail'])} |"
            )
        if self.pipeline_run:
            lines += ["", f"Trained by pipeline run `{self.pipeline_run}`."]
        return "\n".join(lines) + "\n"

    def to_junit(self) -> str:
        failed = sum(1 for c in self.checks if c["status"] == "failed")
        skipped = sum(1 for c in self.checks if c["status"] == "skipped")
        suite = ET.Element(
            "testsuite",
            name=f"conveyor model check {self.candidate}",
            tests=str(len(self.checks)),
            failures=str(failed),
            skipped=str(skipped),
            errors="0",
        )
        for c in self.checks:
            name, detail = _xml_text(c["name"]), _xml_text(c["detail"])
            case = ET.SubElement(suite, "testcase", classname="conveyor.ci", name=name)
            if c["status"] == "failed":
                ET.SubElement(case, "failure", message=detail[:500]).text = detail
            elif c["status"] == "skipped":
                ET.SubElement(case, "skipped", message=detail[:500])
            else:
                ET.SubElement(case, "system-out").text = detail
        suites = ET.Element("testsuites")
        suites.append(suite)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def _cell(value: Any) -> str:
    """Text for a Markdown table cell: one line, no table or HTML syntax."""
    text = " ".join(str(value).split())
    for char, escaped in (("\\", "\\\\"), ("|", "\\|"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(char, escaped)
    return text


def _xml_text(value: Any) -> str:
    """``value`` as text XML 1.0 allows (control characters other than tab and newlines
    dropped: details can quote the data)."""
    return "".join(ch for ch in str(value) if ch in "\t\n\r" or ord(ch) >= 0x20)


def check(
    ws: Workspace,
    gate: Gate,
    *,
    model: str | None = None,
    pipeline: str | None = None,
    params: dict[str, Any] | None = None,
    model_name: str | None = None,
    deployment: str | None = None,
) -> CheckReport:
    """Run ``gate`` for ``model`` (a version ref), or for the version ``pipeline`` registers.

    The champion is what ``deployment`` serves, else ``NAME@champion`` when it exists
    (``gate.against="none"``: no comparison).
    """
    from conveyor.loop.gate import run_gate
    from conveyor.models.service import model_service

    if (model is None) == (pipeline is None):
        raise InvalidArgumentError("Check a --model VERSION or a --pipeline MODULE:PIPELINE.")
    models = model_service(ws)
    run_id = None
    if pipeline is not None:
        model, run_id = _train(ws, pipeline, params or {}, model_name, deployment)
    assert model is not None
    candidate = models.get(model)
    champion = None
    if gate.against == "champion":
        champion = _champion(ws, candidate.name, deployment)
        if champion == candidate.ref:
            champion = None
    result = run_gate(ws, gate, candidate.ref, champion)
    checks = [_metric_check(result), *result["checks"]]
    if deployment is not None and "signature" not in gate.checks:
        from conveyor.loop.gate import _run_check

        checks.append(
            _run_check(ws, "signature", candidate.ref, champion, result["data"], None, None)
        )
    return CheckReport(candidate.ref, champion, result["data"], checks, run_id)


def _metric_check(result: dict[str, Any]) -> dict[str, Any]:
    metric = result["metric"]
    mine = result["candidate"]["value"]
    theirs = (result.get("champion") or {}).get("value")
    if mine is None:
        return {"name": metric, "status": "failed", "detail": f"no {metric} for the candidate"}
    if theirs is None:
        return {"name": metric, "status": "passed", "detail": f"{mine:.4f} (no champion to beat)"}
    reasons = [r for r in result["reasons"] if r.startswith(f"{metric} ")]
    status = "failed" if reasons else "passed"
    detail = (
        reasons[0] if reasons else f"{mine:.4f} vs {theirs:.4f} for {result['champion']['ref']}"
    )
    return {"name": metric, "status": status, "detail": detail}


def _champion(ws: Workspace, name: str, deployment: str | None) -> str | None:
    from conveyor.core.errors import NotFoundError
    from conveyor.models.service import model_service

    if deployment is not None:
        from conveyor.serving.deployment import deployment_service

        routes = deployment_service(ws).spec(deployment).routes
        primary = next((r for r in routes if r.role == "primary"), None)
        return primary.ref if primary else None
    try:
        return model_service(ws).get(f"{name}@champion").ref
    except NotFoundError:
        return None


def _train(
    ws: Workspace,
    pipeline: str,
    params: dict[str, Any],
    model_name: str | None,
    deployment: str | None,
) -> tuple[str, str]:
    from conveyor.loop.controller import registered_by
    from conveyor.pipelines.engine import run_pipeline
    from conveyor.pipelines.loader import load_pipeline

    run = run_pipeline(load_pipeline(pipeline), params, executor="inline", cache=False, ws=ws)
    names = [model_name] if model_name else _model_names(ws, run)
    for name in names:
        found = registered_by(ws, run, name)
        if found is not None:
            return found, run.id
    raise InvalidArgumentError(
        f"Pipeline run {run.id} registered no model version"
        + (f" of {model_name!r}" if model_name else "")
        + ".",
        hint="Register the model in a step: cv.models.log(model, NAME, input_example=...).",
    )


def _model_names(ws: Workspace, run: Any) -> list[str]:
    import sqlalchemy as sa

    from conveyor.store.metadata.schema import model_versions, models

    run_ids = [run.id, *(s.id for s in run.steps)]
    with ws.metadata.read() as conn:
        return sorted(
            conn.execute(
                sa.select(models.c.name)
                .join(model_versions, model_versions.c.model_id == models.c.id)
                .where(model_versions.c.run_id.in_(run_ids))
                .distinct()
            ).scalars()
        )
