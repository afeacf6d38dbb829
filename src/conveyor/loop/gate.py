"""The gate: the candidate against the champion on the same data, and the policy's checks.

Both versions are evaluated on the gate's dataset version with the registry's evaluation (so
the figures are stored, with lineage, and show on the model cards); the candidate passes when
its metric is at least ``min_delta`` better and every check passes. A check that cannot run
(no saved schema to validate against, no champion to compare signatures with) is skipped and
says why; it does not fail the gate.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from conveyor.core.errors import ConveyorError, InvalidArgumentError
from conveyor.loop.policy import LOWER_IS_BETTER, Gate, parse_check
from conveyor.store.workspace import Workspace

__all__ = ["run_gate"]

_PROBES = 200  # one-row predictions timed for the latency check


def _check(name: str, status: str, detail: str) -> dict[str, Any]:
    return {"name": name, "status": status, "detail": detail}


def _holds(value: float, op: str, limit: float) -> bool:
    return {"<": value < limit, "<=": value <= limit, ">": value > limit, ">=": value >= limit}[op]


def _target(ws: Workspace, gate: Gate, candidate: str, columns: list[str]) -> str:
    if gate.target:
        return gate.target
    from conveyor.models.service import model_service

    signature = model_service(ws).get(candidate).signature
    inputs = set(signature.columns) if signature is not None else set()
    left = [c for c in columns if c not in inputs]
    if signature is None or len(left) != 1:
        raise InvalidArgumentError(
            f"Cannot tell the gate's target column in {gate.data}: "
            f"{'the model has no signature' if signature is None else f'candidates {left}'}.",
            hint="Name it: Gate(data=..., target='churned').",
        )
    return left[0]


def run_gate(ws: Workspace, gate: Gate, candidate: str, champion: str | None) -> dict[str, Any]:
    """Evaluate ``candidate`` (and ``champion``) on the gate's data; return the verdict with
    the figures and every check: ``{"passed", "metric", "candidate", "champion", "checks",
    "reasons", "evaluations"}``."""
    from conveyor.data.service import data_service
    from conveyor.models.service import model_service

    models = model_service(ws)
    data = data_service(ws)
    version = data.get(gate.data)
    frame = data.load(version.ref)
    target = _target(ws, gate, candidate, list(frame.columns))
    sensitive = list(gate.sensitive) or None
    mine = models.evaluate(
        candidate, version.ref, target=target, sensitive=sensitive, importance=False
    )
    metric = gate.metric or mine.primary[0]
    higher = metric not in LOWER_IS_BETTER
    result: dict[str, Any] = {
        "data": version.ref,
        "metric": metric,
        "higher_is_better": higher,
        "candidate": {"ref": candidate, "value": mine.metrics.get(metric)},
        "champion": None,
        "evaluations": [mine.id],
        "checks": [],
    }
    reasons: list[str] = []
    value = mine.metrics.get(metric)
    if value is None:
        reasons.append(f"{candidate} has no {metric} on {version.ref}")
    theirs = None
    if gate.against == "champion" and champion is not None and champion != candidate:
        theirs = models.evaluate(
            champion, version.ref, target=target, sensitive=sensitive, importance=False
        )
        result["evaluations"].append(theirs.id)
        held = theirs.metrics.get(metric)
        result["champion"] = {"ref": champion, "value": held}
        if held is None:
            result["checks"].append(
                _check("comparison", "skipped", f"{champion} has no {metric} on {version.ref}")
            )
        if value is not None and held is not None:
            delta = (value - held) if higher else (held - value)
            result["delta"] = delta
            if delta < gate.min_delta:
                how = (
                    f"{-delta:.4f} worse"
                    if delta < 0
                    else f"only {delta:.4f} better (needs {gate.min_delta:g})"
                )
                reasons.append(f"{metric} {value:.4f} vs {held:.4f} for {champion}: {how}")
    for check in gate.checks:
        found = _run_check(ws, check, candidate, champion, version.ref, mine, frame)
        result["checks"].append(found)
        if found["status"] == "failed":
            reasons.append(f"{check}: {found['detail']}")
    result["reasons"] = reasons
    result["passed"] = not reasons
    return result


def _run_check(
    ws: Workspace,
    check: str,
    candidate: str,
    champion: str | None,
    data_ref: str,
    evaluation: Any,
    frame: Any,
) -> dict[str, Any]:
    from conveyor.data.service import data_service
    from conveyor.models.service import model_service

    kind, name, op, limit = parse_check(check)
    models = model_service(ws)
    if kind == "validation":
        try:
            report = data_service(ws).validate(data_ref)
        except InvalidArgumentError as e:
            # A schema that cannot check the data (a check that cannot run, YAML that does
            # not parse) must not let it through: only a missing schema skips the check.
            return _check(check, "failed", str(e))
        except ConveyorError as e:
            return _check(check, "skipped", str(e))
        if report.passed:
            return _check(check, "passed", f"{data_ref} passes its schema")
        return _check(check, "failed", f"{data_ref} breaks its schema: {report.summary()}")
    if kind == "signature":
        if champion is None:
            return _check(check, "skipped", "no champion to compare with")
        ours, theirs = models.get(candidate).signature, models.get(champion).signature
        if ours is None or theirs is None:
            return _check(check, "skipped", "a version has no signature")
        changes = [c for c in theirs.diff(ours) if "input" in c]
        if changes:
            return _check(check, "failed", "; ".join(changes))
        return _check(check, "passed", f"inputs match {champion}")
    assert name is not None
    assert op is not None
    assert limit is not None
    if kind == "fairness":
        worst = None
        for column, found in evaluation.fairness.items():
            value = found.get(name)
            if value is not None and (worst is None or value > worst[1]):
                worst = (column, float(value))
        if worst is None:
            return _check(check, "skipped", f"no {name} in the evaluation")
        verdict = "passed" if _holds(worst[1], op, limit) else "failed"
        return _check(check, verdict, f"{name} {worst[1]:.4f} over {worst[0]}")
    # latency: one-row predictions of the candidate, in this process
    loaded = models.load(candidate)
    rows = frame.head(min(len(frame), 50))
    timings = []
    for i in range(_PROBES):
        row = rows.iloc[[i % len(rows)]]
        started = time.perf_counter()
        loaded.predict(row)
        timings.append((time.perf_counter() - started) * 1000)
    p99 = float(np.percentile(timings, 99))
    verdict = "passed" if _holds(p99, op, limit) else "failed"
    return _check(check, verdict, f"p99 {p99:.2f} ms over {_PROBES} one-row predictions")
