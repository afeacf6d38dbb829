"""Tracking's writes and search pages as JSON, for the team server and remote mode.

Metric points travel as compact arrays (``[run_id, key, value, step, timestamp_ms]``): a batch
of 10,000 is one small request. Decoding checks every field's type and size, so the server
never hands the store a value the embedded path would not have produced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from conveyor.core.errors import InvalidArgumentError
from conveyor.tracking.records import RunStatus
from conveyor.tracking.search import Page
from conveyor.tracking.store import CreateRun, EndRun, LinkArtifact, LogMetric, LogParam, SetTag

__all__ = ["decode_ops", "decode_page", "encode_ops", "encode_page"]

_RUN_TEXT = {
    "name": 200,
    "git_commit": 64,
    "git_branch": 250,
    "command": 10_000,
    "python_version": 50,
    "host": 250,
    "environment_digest": 64,
}
_KEY_MAX = 250
_VALUE_MAX = 6000
_PAGE_FIELDS = (
    "id",
    "name",
    "experiment_name",
    "status",
    "user",
    "parent_id",
    "git_commit",
    "git_branch",
    "git_dirty",
    "command",
    "python_version",
    "host",
    "environment_digest",
)


def encode_ops(ops: Sequence[Any]) -> dict[str, Any]:
    """Return ``ops`` as one JSON-ready batch (artifact links travel as uploads instead)."""
    body: dict[str, list[Any]] = {"runs": [], "params": [], "tags": [], "metrics": [], "ends": []}
    for op in ops:
        kind = type(op)
        if kind is LogMetric:
            value = op.value
            if value is not None and not math.isfinite(value):
                value = "inf" if value > 0 else "-inf"  # JSON has no infinities
            body["metrics"].append([op.run_id, op.key, value, op.step, op.timestamp_ms])
        elif kind is CreateRun:
            row = {k: v for k, v in op.row.items() if k not in ("project_id", "user")}
            row["start_time"] = op.row["start_time"].isoformat()
            body["runs"].append(row)
        elif kind is LogParam:
            body["params"].append([op.run_id, op.key, op.value])
        elif kind is SetTag:
            body["tags"].append([op.run_id, op.key, op.value])
        elif kind is EndRun:
            body["ends"].append([op.run_id, str(op.status), op.end_time.isoformat()])
        elif kind is LinkArtifact:
            raise InvalidArgumentError(
                "Artifact links are not sent in a write batch; upload the artifact instead."
            )
    return body


def _text(value: Any, what: str, limit: int, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise InvalidArgumentError(
            f"{what} must be text of at most {limit} characters (and no NUL character)."
        )
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**63:
        raise InvalidArgumentError(f"{what} must be a 64-bit integer; got {value!r}.")
    return value


def _time(value: Any, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(_text(value, what, 64) or "")
        if parsed.tzinfo is None:
            raise InvalidArgumentError(f"{what} must carry a time zone; got {value!r}.")
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidArgumentError(f"{what} must be an ISO 8601 time; got {value!r}.") from None


def _triples(items: Any, what: str) -> list[tuple[str, str, str]]:
    if not isinstance(items, list):
        raise InvalidArgumentError(f"{what} must be a list of [run_id, key, value].")
    out = []
    for item in items:
        if not isinstance(item, list) or len(item) != 3:
            raise InvalidArgumentError(f"Each of {what} is [run_id, key, value]; got {item!r}.")
        run_id, key, value = item
        out.append(
            (
                _text(run_id, "A run id", 26) or "",
                _text(key, f"A key of {what}", _KEY_MAX) or "",
                _text(value, f"A value of {what}", _VALUE_MAX) or "",
            )
        )
    return out


def decode_ops(body: Any, *, project_id: str, user: str) -> tuple[list[Any], set[str], set[str]]:
    """Parse a batch; return the ops, the ids of runs it creates and of runs it writes to.

    ``project_id`` and ``user`` come from the server (the route's project, the token's
    user), never from the body.
    """
    if not isinstance(body, dict):
        raise InvalidArgumentError("A write batch is a JSON object.")
    unknown = set(body) - {"runs", "params", "tags", "metrics", "ends"}
    if unknown:
        raise InvalidArgumentError(f"Unknown parts of a write batch: {', '.join(sorted(unknown))}.")
    ops: list[Any] = []
    created: set[str] = set()
    touched: set[str] = set()
    for row in body.get("runs") or []:
        if not isinstance(row, dict):
            raise InvalidArgumentError("Each new run is a JSON object.")
        clean: dict[str, Any] = {
            "id": _text(row.get("id"), "A run id", 26),
            "project_id": project_id,
            "experiment_id": _text(row.get("experiment_id"), "An experiment id", 26),
            "status": str(RunStatus.RUNNING),
            "start_time": _time(row.get("start_time"), "start_time"),
            "end_time": None,
            "user": user,
            "parent_id": _text(row.get("parent_id"), "parent_id", 26, optional=True),
            "git_dirty": row.get("git_dirty") if isinstance(row.get("git_dirty"), bool) else None,
            "deleted_at": None,
        }
        for key, limit in _RUN_TEXT.items():
            clean[key] = _text(row.get(key), key, limit, optional=key != "name")
        clean["command"] = clean["command"] or ""
        clean["python_version"] = clean["python_version"] or ""
        clean["host"] = clean["host"] or ""
        ops.append(CreateRun(clean))
        created.add(clean["id"])
    for run_id, key, value in _triples(body.get("params") or [], "params"):
        ops.append(LogParam(run_id, key, value))
        touched.add(run_id)
    for run_id, key, value in _triples(body.get("tags") or [], "tags"):
        ops.append(SetTag(run_id, key, value))
        touched.add(run_id)
    metrics = body.get("metrics") or []
    if not isinstance(metrics, list):
        raise InvalidArgumentError("metrics must be a list of [run_id, key, value, step, ms].")
    for item in metrics:
        if not isinstance(item, list) or len(item) != 5:
            raise InvalidArgumentError(
                f"Each metric point is [run_id, key, value, step, timestamp_ms]; got {item!r}."
            )
        run_id, key, value, step, ms = item
        number: float | None
        if value is None:
            number = None
        elif value in ("inf", "-inf"):
            number = float(value)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidArgumentError(f"A metric value must be a number or null; got {value!r}.")
        else:
            number = float(value)
        ops.append(
            LogMetric(
                _text(run_id, "A run id", 26) or "",
                _text(key, "A metric key", _KEY_MAX) or "",
                number,
                _int(step, "A metric step"),
                _int(ms, "A metric timestamp"),
            )
        )
        touched.add(run_id)
    for item in body.get("ends") or []:
        if not isinstance(item, list) or len(item) != 3:
            raise InvalidArgumentError(f"Each run end is [run_id, status, end_time]; got {item!r}.")
        run_id, status, end = item
        try:
            final = RunStatus(status)
        except ValueError:
            raise InvalidArgumentError(f"Unknown run status {status!r}.") from None
        ops.append(EndRun(_text(run_id, "A run id", 26) or "", final, _time(end, "end_time")))
        touched.add(run_id)
    return ops, created, touched


def encode_page(page: Page) -> dict[str, Any]:
    """Return a search page as JSON-ready values."""
    rows = []
    for r in page.rows:
        values = r._mapping  # a dict-like view: several times faster than attribute access
        item = {name: values[name] for name in _PAGE_FIELDS}
        end = values["end_time"]
        item["start_time"] = values["start_time"].isoformat()
        item["end_time"] = end.isoformat() if end else None
        item["deleted"] = values["deleted_at"] is not None
        rows.append(item)
    return {
        "runs": rows,
        "params": page.params,
        "metrics": {run: finite_or_text(values) for run, values in page.metrics.items()},
        "tags": page.tags,
        "next_page_token": page.next_page_token,
    }


def finite_or_text(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with infinities as the text ``"inf"``/``"-inf"`` (JSON has no number for
    them, and an encoder would send null, which reads back as NaN)."""
    if all(v is None or math.isfinite(v) for v in values.values()):
        return values
    return {k: v if v is None or math.isfinite(v) else str(v) for k, v in values.items()}


def _numbers(values: dict[str, Any]) -> dict[str, Any]:
    return {k: float(v) if isinstance(v, str) else v for k, v in values.items()}


def decode_page(body: dict[str, Any]) -> Page:
    """Rebuild a search page sent by :func:`encode_page`."""
    rows = []
    for item in body["runs"]:
        values = {name: item.get(name) for name in _PAGE_FIELDS}
        values["start_time"] = datetime.fromisoformat(item["start_time"])
        values["end_time"] = datetime.fromisoformat(item["end_time"]) if item["end_time"] else None
        values["deleted_at"] = values["start_time"] if item.get("deleted") else None
        rows.append(SimpleNamespace(**values))
    return Page(
        rows,
        body.get("params") or {},
        {run: _numbers(values) for run, values in (body.get("metrics") or {}).items()},
        body.get("tags") or {},
        next_page_token=body.get("next_page_token"),
    )
