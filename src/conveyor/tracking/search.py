"""Searching runs: the filter tree becomes SQLAlchemy expressions over indexed tables."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from conveyor.core.errors import InvalidArgumentError
from conveyor.store.metadata.schema import experiments, latest_metrics, params, runs, tags
from conveyor.tracking.filters import (
    And,
    Comparison,
    Field,
    Node,
    Number,
    Or,
    parse_filter,
    parse_order_by,
)
from conveyor.tracking.records import Run
from conveyor.tracking.store import TrackingStore, load_run_values, run_from_row

__all__ = ["RunList", "search"]

MAX_LIMIT = 50_000
_TABLES = {"metrics": latest_metrics, "params": params, "tags": tags}
_TEXT_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")


class RunList(list[Run]):
    """A page of runs; ``next_page_token`` fetches the next one (None on the last page)."""

    next_page_token: str | None = None


@dataclass
class _Joins:
    """One aliased join per (kind, key); inner when the filter requires the key to exist."""

    required: set[Field]
    aliases: dict[Field, Any]

    def column(self, fld: Field) -> Any:
        if fld not in self.aliases:
            self.aliases[fld] = _TABLES[fld.kind].alias(f"j{len(self.aliases)}")
        return self.aliases[fld].c.value


def _required_fields(node: Node | None) -> set[Field]:
    """Fields whose key must exist for the filter to hold (top-level AND of positive tests)."""
    if node is None:
        return set()
    items = node.items if isinstance(node, And) else (node,)
    return {
        item.field
        for item in items
        if isinstance(item, Comparison)
        and item.field.kind != "attributes"
        and item.op not in ("!=", "NOT IN")
    }


def _time_value(value: float | str, what: str) -> datetime:
    if isinstance(value, float):
        return datetime.fromtimestamp(value / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgumentError(
            f"filter: {what} takes an ISO time like '2026-11-23T10:00:00' or epoch milliseconds; "
            f"got {value!r}."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _attribute(fld: Field) -> Any:
    if fld.key == "run_id":
        return runs.c.id
    if fld.key == "experiment":
        return experiments.c.name
    return runs.c[fld.key]


def _compare(column: Any, op: str, value: Any) -> Any:
    if op == "IN":
        return column.in_(list(value))
    if op == "NOT IN":
        return column.not_in(list(value))
    if op == "LIKE":
        return column.like(value)
    if op == "ILIKE":
        return column.ilike(value)
    return {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }[op](value)


def _condition(node: Node, joins: _Joins) -> Any:
    if isinstance(node, And):
        return sa.and_(*(_condition(n, joins) for n in node.items))
    if isinstance(node, Or):
        return sa.or_(*(_condition(n, joins) for n in node.items))
    fld, op, value = node.field, node.op, node.value
    values = value if isinstance(value, tuple) else (value,)
    if fld.kind == "metrics":
        if op in ("LIKE", "ILIKE") or any(not isinstance(v, float) for v in values):
            raise InvalidArgumentError(
                f"filter: {fld} is a metric; compare it with a number (=, !=, <, <=, >, >=, IN)."
            )
        return _compare(joins.column(fld), op, value)
    if fld.kind in ("params", "tags"):
        if op not in _TEXT_OPS:
            raise InvalidArgumentError(
                f"filter: {fld} is text; compare it with =, !=, LIKE, ILIKE or IN, "
                f"quoting the value (e.g. {fld} = '8')."
            )
        text = tuple(v.text if isinstance(v, Number) else v for v in values)
        return _compare(joins.column(fld), op, text if isinstance(value, tuple) else text[0])
    column = _attribute(fld)
    if fld.key in ("start_time", "end_time"):
        converted = tuple(_time_value(v, str(fld)) for v in values)
        return _compare(column, op, converted if isinstance(value, tuple) else converted[0])
    text = tuple(v.text if isinstance(v, Number) else v for v in values)
    if fld.key == "status":
        text = tuple(str(v).upper() for v in text)
    return _compare(column, op, text if isinstance(value, tuple) else text[0])


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str) -> int:
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgumentError(
            f"page_token {token!r} is not one that search_runs returned."
        ) from None
    if not isinstance(offset, int) or offset < 0:
        raise InvalidArgumentError(f"page_token {token!r} is not one that search_runs returned.")
    return offset


def search(
    store: TrackingStore,
    *,
    experiment: str | list[str] | None = None,
    filter: str | None = None,
    order_by: list[str] | str | None = None,
    limit: int = 1000,
    page_token: str | None = None,
    view: Literal["active", "deleted", "all"] = "active",
) -> RunList:
    """Return runs of the store's project that match ``filter``, ordered, one page at a time."""
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgumentError(f"limit must be 1 to {MAX_LIMIT}; got {limit!r}.")
    if view not in ("active", "deleted", "all"):
        raise InvalidArgumentError(f"view must be 'active', 'deleted' or 'all'; got {view!r}.")
    tree = parse_filter(filter)
    ordering = parse_order_by(order_by)
    joins = _Joins(required=_required_fields(tree), aliases={})
    project_id = store.ws.project.id

    query = (
        sa.select(runs, experiments.c.name.label("experiment_name"))
        .join(experiments, experiments.c.id == runs.c.experiment_id)
        .where(runs.c.project_id == project_id)
    )
    if experiment is not None:
        names = [experiment] if isinstance(experiment, str) else list(experiment)
        exp_ids = [store.experiment(n, create=False).id for n in names]
        query = query.where(runs.c.experiment_id.in_(exp_ids))
    if view == "active":
        query = query.where(runs.c.deleted_at.is_(None))
    elif view == "deleted":
        query = query.where(runs.c.deleted_at.is_not(None))
    if tree is not None:
        query = query.where(_condition(tree, joins))
    order_columns: list[Any] = []
    for fld, descending in ordering:
        column = _attribute(fld) if fld.kind == "attributes" else joins.column(fld)
        order_columns.append((column.desc() if descending else column.asc()).nulls_last())
    order_columns += [runs.c.start_time.desc(), runs.c.id.desc()]
    for fld, alias in joins.aliases.items():
        on = (alias.c.run_id == runs.c.id) & (alias.c.key == fld.key)
        query = query.join(alias, on, isouter=fld not in joins.required)
    offset = _decode_token(page_token) if page_token else 0
    query = query.order_by(*order_columns).limit(limit + 1).offset(offset)

    with store.ws.metadata.read() as conn:
        rows = conn.execute(query).all()
        page = rows[:limit]
        values = load_run_values(conn, [r.id for r in page])
    result = RunList(
        run_from_row(r, values[0].get(r.id, {}), values[1].get(r.id, {}), values[2].get(r.id, {}))
        for r in page
    )
    result.next_page_token = _encode_token(offset + limit) if len(rows) > limit else None
    return result


def to_frame(found: RunList) -> Any:
    """One row per run: attributes, then ``params.*``, ``metrics.*``, ``tags.*`` columns."""
    import pandas as pd

    records: list[dict[str, Any]] = []
    p_keys: set[str] = set()
    m_keys: set[str] = set()
    t_keys: set[str] = set()
    for run in found:
        p_keys.update(run.params)
        m_keys.update(run.metrics)
        t_keys.update(run.tags)
    for run in found:
        record: dict[str, Any] = {
            "run_id": run.id,
            "experiment": run.experiment,
            "name": run.name,
            "status": str(run.status),
            "start_time": run.start_time,
            "end_time": run.end_time,
        }
        record.update({f"params.{k}": run.params.get(k) for k in sorted(p_keys)})
        record.update({f"metrics.{k}": run.metrics.get(k) for k in sorted(m_keys)})
        record.update({f"tags.{k}": run.tags.get(k) for k in sorted(t_keys)})
        records.append(record)
    columns = ["run_id", "experiment", "name", "status", "start_time", "end_time"]
    columns += [f"params.{k}" for k in sorted(p_keys)]
    columns += [f"metrics.{k}" for k in sorted(m_keys)]
    columns += [f"tags.{k}" for k in sorted(t_keys)]
    frame = pd.DataFrame.from_records(records, columns=columns)
    for name in ("start_time", "end_time"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    frame.attrs["next_page_token"] = found.next_page_token
    return frame
