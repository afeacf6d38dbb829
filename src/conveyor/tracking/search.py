"""Searching runs: the filter tree becomes SQLAlchemy expressions over indexed tables."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from conveyor.core.errors import InvalidArgumentError
from conveyor.store.metadata.schema import experiments, latest_metrics, params, runs, tags
from conveyor.tracking.filters import (
    MAX_FIELDS,
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

__all__ = ["Page", "RunList", "search", "to_frame"]

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
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, ValueError, OSError):
            raise InvalidArgumentError(
                f"filter: {what} {value!r} is not a time (epoch milliseconds)."
            ) from None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            parsed.astimezone(UTC)  # raises for times that do not exist in UTC
    except (ValueError, OverflowError):
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


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _encode_token(values: list[Any], fingerprint: str) -> str:
    shown = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = json.dumps({"after": shown, "q": fingerprint}, allow_nan=True).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str, fingerprint: str, kinds: list[str]) -> list[Any]:
    bad = InvalidArgumentError(f"page_token {token!r} is not one that search_runs returned.")
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        values, q = data["after"], data["q"]
    except (ValueError, KeyError, TypeError):
        raise bad from None
    if q != fingerprint:
        raise InvalidArgumentError(
            "page_token belongs to a different search (filter, order, experiments or view).",
            hint="Pass the same arguments as the search that returned the token.",
        )
    if not isinstance(values, list) or len(values) != len(kinds):
        raise bad
    decoded: list[Any] = []
    for value, kind in zip(values, kinds, strict=True):
        if value is not None and kind == "time":
            try:
                value = datetime.fromisoformat(value)
                if value.tzinfo is not None:
                    value.astimezone(UTC)
            except (TypeError, ValueError, OverflowError):
                raise bad from None
        elif value is not None and not _plain(value):
            raise bad
        decoded.append(value)
    return decoded


def _plain(value: Any) -> bool:
    """A sort value a token can carry: text, or a number SQL can bind."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, float)


def _after(keys: list[tuple[Any, bool]], values: list[Any]) -> Any:
    """Rows that sort strictly after ``values`` under ``keys`` (NULLs last either way)."""
    alternatives = []
    for i, (column, descending) in enumerate(keys):
        value = values[i]
        if value is None:
            continue  # nothing sorts after NULL at this position
        beyond = column < value if descending else column > value
        same_before = [
            (c.is_(None) if v is None else c == v)
            for (c, _), v in zip(keys[:i], values[:i], strict=True)
        ]
        after = beyond if _never_null(column) else sa.or_(beyond, column.is_(None))
        alternatives.append(sa.and_(*same_before, after))
    return sa.or_(*alternatives) if alternatives else sa.false()


def _never_null(column: Any) -> bool:
    """Whether ``column`` is one of the runs table's NOT NULL columns (start time, id...),
    which need no NULLS LAST: without it, PostgreSQL walks the (project_id, start_time, id)
    index backwards for a project's newest runs instead of sorting them all. Columns of the
    joined params/metrics/tags can be NULL (outer joins), whatever their tables say."""
    return getattr(column, "table", None) is runs and column.nullable is False


def _ordered(column: Any, descending: bool) -> Any:
    ordered = column.desc() if descending else column.asc()
    return ordered if _never_null(column) else ordered.nulls_last()


@dataclass
class Page:
    """One page of a search: the run rows, their params, metrics and tags, the next token."""

    rows: list[Any]
    params: dict[str, dict[str, str]]
    metrics: dict[str, dict[str, float]]
    tags: dict[str, dict[str, str]]
    next_page_token: str | None

    def runs(self) -> RunList:
        """The page as :class:`Run` objects."""
        found = RunList(
            run_from_row(
                r,
                self.params.get(r.id, {}),
                self.metrics.get(r.id, {}),
                self.tags.get(r.id, {}),
            )
            for r in self.rows
        )
        found.next_page_token = self.next_page_token
        return found


def search(
    store: TrackingStore,
    *,
    experiment: str | list[str] | None = None,
    filter: str | None = None,
    order_by: list[str] | str | None = None,
    limit: int = 1000,
    page_token: str | None = None,
    view: Literal["active", "deleted", "all"] = "active",
) -> Page:
    """Return one page of the runs of the store's project that match ``filter``, ordered.

    Pages follow each other by keyset: the token holds the sort values of the page's last
    run, so runs created meanwhile neither repeat nor hide results, and a deep page costs
    what the first does.
    """
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgumentError(f"limit must be 1 to {MAX_LIMIT}; got {limit!r}.")
    if view not in ("active", "deleted", "all"):
        raise InvalidArgumentError(f"view must be 'active', 'deleted' or 'all'; got {view!r}.")
    if store.ws.remote is not None:  # a RemoteTrackingStore: the server runs the search
        remote_page: Page = store.search(  # type: ignore[attr-defined]
            experiment=experiment,
            filter=filter,
            order_by=order_by,
            limit=limit,
            page_token=page_token,
            view=view,
        )
        return remote_page
    project_id = store.ws.project.id
    exp_ids: list[str] | None = None
    if experiment is not None:
        names = [experiment] if isinstance(experiment, str) else list(experiment)
        exp_ids = sorted(store.experiment(n, create=False).id for n in names)
    order_key = tuple([order_by] if isinstance(order_by, str) else order_by or ())
    query, n_order, fingerprint = _build(
        project_id, filter, order_key, tuple(exp_ids) if exp_ids else None, view, limit, page_token
    )
    with store.ws.metadata.read() as conn:
        rows = conn.execute(query).all()
        page = rows[:limit]
        values = load_run_values(conn, [r.id for r in page])
    token = None
    if len(rows) > limit:
        last = page[-1]
        after = [getattr(last, f"_sort{i}") for i in range(n_order)]
        token = _encode_token([*after, last.start_time, last.id], fingerprint)
    return Page(list(page), *values, next_page_token=token)


@functools.lru_cache(maxsize=128)
def _build(
    project_id: str,
    filter: str | None,
    order_by: tuple[str, ...],
    exp_ids: tuple[str, ...] | None,
    view: str,
    limit: int,
    page_token: str | None,
) -> tuple[Any, int, str]:
    """Build the statement of a search (cached: dashboards repeat the same searches)."""
    tree = parse_filter(filter)
    ordering = parse_order_by(list(order_by))
    joins = _Joins(required=_required_fields(tree), aliases={})

    query = (
        sa.select(runs, experiments.c.name.label("experiment_name"))
        .join(experiments, experiments.c.id == runs.c.experiment_id)
        .where(runs.c.project_id == project_id)
    )
    if exp_ids is not None:
        query = query.where(runs.c.experiment_id.in_(exp_ids))
    if view == "active":
        query = query.where(runs.c.deleted_at.is_(None))
    elif view == "deleted":
        query = query.where(runs.c.deleted_at.is_not(None))
    if tree is not None:
        query = query.where(_condition(tree, joins))
    keys: list[tuple[Any, bool]] = []
    kinds: list[str] = []
    for fld, descending in ordering:
        column = _attribute(fld) if fld.kind == "attributes" else joins.column(fld)
        keys.append((column, descending))
        kinds.append("time" if fld.key in ("start_time", "end_time") else "plain")
    keys += [(runs.c.start_time, True), (runs.c.id, True)]
    kinds += ["time", "plain"]
    if len(joins.aliases) > MAX_FIELDS:
        raise InvalidArgumentError(
            f"A search may use at most {MAX_FIELDS} distinct metric, param and tag keys "
            f"(filter and order together); this one uses {len(joins.aliases)}."
        )
    for fld, alias in joins.aliases.items():
        on = (alias.c.run_id == runs.c.id) & (alias.c.key == fld.key)
        query = query.join(alias, on, isouter=fld not in joins.required)
    fingerprint = _fingerprint(project_id, filter, list(order_by), exp_ids, view)
    if page_token:
        query = query.where(_after(keys, _decode_token(page_token, fingerprint, kinds)))
    sort_values = [column.label(f"_sort{i}") for i, (column, _) in enumerate(keys)]
    query = (
        query.add_columns(*sort_values[: len(ordering)])
        .order_by(*(_ordered(c, d) for c, d in keys))
        .limit(limit + 1)
    )

    return query, len(ordering), fingerprint


def to_frame(page: Page) -> Any:
    """One row per run: attributes, then ``params.*``, ``metrics.*``, ``tags.*`` columns."""
    import pandas as pd

    rows = page.rows
    ids = [r.id for r in rows]
    columns: dict[str, Any] = {
        "run_id": ids,
        "experiment": [r.experiment_name for r in rows],
        "name": [r.name for r in rows],
        "status": [r.status for r in rows],
        "start_time": _times([r.start_time for r in rows]),
        "end_time": _times([r.end_time for r in rows]),
    }
    for prefix, source in (("params", page.params), ("metrics", page.metrics), ("tags", page.tags)):
        keys = sorted({k for values in source.values() for k in values})
        for key in keys:
            columns[f"{prefix}.{key}"] = [source.get(i, {}).get(key) for i in ids]
    frame = pd.DataFrame(columns, copy=False)
    frame.attrs["next_page_token"] = page.next_page_token
    return frame


def _times(values: list[datetime | None]) -> Any:
    """UTC timestamps as a pandas column (via integers: 3x faster than parsing objects)."""
    import numpy as np
    import pandas as pd

    micros = np.array(
        [
            round(v.timestamp() * 1_000_000) if v is not None else np.iinfo("int64").min
            for v in values
        ],
        dtype="int64",
    )
    return pd.DatetimeIndex(micros.view("datetime64[us]"), tz="UTC")
