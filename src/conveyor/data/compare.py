"""Comparing two dataset versions: files, columns, row counts and column statistics."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from conveyor.data.records import DatasetVersion, FileEntry, Manifest

__all__ = ["CategoryShift", "ColumnShift", "DatasetDiff", "diff_versions"]

#: The profile statistics compared for columns present in both versions (a column of
#: times has a min, max and median as text).
STATISTICS = ("null_rate", "infinite", "nan", "mean", "std", "min", "median", "max", "distinct")
#: How many of a column's categories a diff lists: those that moved most.
CATEGORIES_SHOWN = 5


@dataclass(frozen=True, slots=True)
class ColumnShift:
    """How one statistic of one column moved between two table versions.

    Numbers, but for the first and last of times and durations: their text
    (``2024-03-01 00:00:00+00:00``), which has no ``change``.
    """

    column: str
    statistic: str
    before: float | str | None
    after: float | str | None

    @property
    def change(self) -> float | None:
        """``after - before`` when both are known numbers."""
        if isinstance(self.before, int | float) and isinstance(self.after, int | float):
            return self.after - self.before
        return None


@dataclass(frozen=True, slots=True)
class CategoryShift:
    """How the share of one category (a value of a text, boolean or categorical column)
    moved between two table versions: ``before`` and ``after`` are its share of the
    column's values that are not null, 0.0 where it does not occur."""

    column: str
    value: Any
    before: float
    after: float

    @property
    def change(self) -> float:
        """``after - before``."""
        return self.after - self.before

    @property
    def status(self) -> str:
        """``new`` (not in the older version), ``vanished`` (not in the newer) or ``moved``."""
        if self.before == 0.0:
            return "new"
        return "vanished" if self.after == 0.0 else "moved"


@dataclass(slots=True)
class DatasetDiff:
    """What changed between two versions: files, schema, rows and column statistics."""

    a: str
    b: str
    added: list[FileEntry] = field(default_factory=list)
    removed: list[FileEntry] = field(default_factory=list)
    changed: list[tuple[FileEntry, FileEntry]] = field(default_factory=list)
    unchanged: int = 0
    columns_added: dict[str, str] = field(default_factory=dict)
    columns_removed: dict[str, str] = field(default_factory=dict)
    columns_retyped: dict[str, tuple[str, str]] = field(default_factory=dict)
    rows: tuple[int | None, int | None] = (None, None)
    shifts: list[ColumnShift] = field(default_factory=list)
    categories: list[CategoryShift] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Whether the two versions hold the same files."""
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable form (for ``--json`` and the REST API)."""
        return {
            "a": self.a,
            "b": self.b,
            "added": [f.path for f in self.added],
            "removed": [f.path for f in self.removed],
            "changed": [old.path for old, _ in self.changed],
            "unchanged": self.unchanged,
            "columns_added": self.columns_added,
            "columns_removed": self.columns_removed,
            "columns_retyped": {k: list(v) for k, v in self.columns_retyped.items()},
            "rows": list(self.rows),
            "shifts": [
                {"column": s.column, "statistic": s.statistic, "before": s.before, "after": s.after}
                for s in self.shifts
            ],
            "categories": [
                {
                    "column": c.column,
                    "value": c.value,
                    "status": c.status,
                    "before": c.before,
                    "after": c.after,
                }
                for c in self.categories
            ],
        }


def diff_versions(a: DatasetVersion, b: DatasetVersion, ma: Manifest, mb: Manifest) -> DatasetDiff:
    """Return what changed from ``a`` to ``b``."""
    out = DatasetDiff(a.ref, b.ref)
    old = {f.path: f for f in ma.files}
    new = {f.path: f for f in mb.files}
    for path, entry in new.items():
        before = old.get(path)
        if before is None:
            out.added.append(entry)
        elif (before.size, before.digest) != (entry.size, entry.digest):
            out.changed.append((before, entry))
        else:
            out.unchanged += 1
    out.removed = [entry for path, entry in old.items() if path not in new]
    ca, cb = a.columns or {}, b.columns or {}
    out.columns_added = {c: t for c, t in cb.items() if c not in ca}
    out.columns_removed = {c: t for c, t in ca.items() if c not in cb}
    out.columns_retyped = {
        c: (ca[c], cb[c]) for c in ca if c in cb and logical_type(ca[c]) != logical_type(cb[c])
    }
    out.rows = (a.rows, b.rows)
    pa_cols = (a.profile or {}).get("columns", {})
    pb_cols = (b.profile or {}).get("columns", {})
    for column in (c for c in cb if c in ca):
        sa, sb = pa_cols.get(column, {}), pb_cols.get(column, {})
        for stat in STATISTICS:
            x, y = sa.get(stat), sb.get(stat)
            if isinstance(x, int | float) and isinstance(y, int | float) and x != y:
                out.shifts.append(ColumnShift(column, stat, x, y))  # ints stay exact
            elif _moved_time(stat, x, y) and _kind(sa) == _kind(sb):  # not a date vs a time
                out.shifts.append(ColumnShift(column, stat, x, y))
        out.categories += _category_shifts(column, sa, sb)
    return out


def _category_shifts(column: str, sa: dict[str, Any], sb: dict[str, Any]) -> list[CategoryShift]:
    """The categories of ``column`` whose share moved most, from the two profiles' top
    categories: new and vanished ones first, then by how far they moved.

    A profile lists a column's most frequent categories only; a category missing from a
    list that is not the whole column (more distinct values than listed) may be among the
    rest, so its share there is unknown and it is not compared.
    """
    top_a, top_b = sa.get("top"), sb.get("top")
    if not (isinstance(top_a, list) and isinstance(top_b, list)):
        return []
    if not (sa.get("count") and sb.get("count")):
        return []
    share_a = _shares(top_a, sa)
    share_b = _shares(top_b, sb)
    found = []
    for key in dict.fromkeys([*share_a, *share_b]):
        before = share_a.get(key, 0.0 if _whole(top_a, sa) else None)
        after = share_b.get(key, 0.0 if _whole(top_b, sb) else None)
        if before is None or after is None or before == after:
            continue
        found.append(CategoryShift(column, key[1], before, after))
    found.sort(key=lambda c: (c.status == "moved", -abs(c.change), str(c.value)))
    return found[:CATEGORIES_SHOWN]


def _shares(top: list[Any], stats: dict[str, Any]) -> dict[tuple[str, Any], float]:
    """Each listed category's share of the values that are not null, keyed by its type and
    value (a category 1 is not the category ``"1"``, nor ``True``)."""
    count = stats["count"]
    return {
        (type(pair[0]).__name__, pair[0]): pair[1] / count
        for pair in top
        if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], int)
    }


def _whole(top: list[Any], stats: dict[str, Any]) -> bool:
    """Whether ``top`` lists every category of its column (so one it lacks occurs nowhere)."""
    return sum(pair[1] for pair in top) == stats["count"]


#: Arrow's other layouts of one logical type: 64-bit offsets (``large_string``) and views
#: (``string_view``). A CSV file reads as ``string``, a DataFrame of pandas' strings as
#: ``large_string``; the values are the same kind either way.
_LAYOUT = re.compile(r"\b(?:large_)?(string|binary|list)(?:_view)?\b(?!:)")
#: The name of a list's item field: Parquet files written elsewhere call it ``element``.
_LIST_ITEM = re.compile(r"\blist<(?:item|element): ")
#: The width of a dictionary's (a pandas category's) codes: it grows with the categories.
_CODES = re.compile(r", indices=u?int\d+")
#: The unit of times and durations (and the width of times of day): a CSV file's times read
#: in seconds, a DataFrame's are stored in micro- or nanoseconds; the instants are the same
#: (a time zone stays).
_UNIT = re.compile(r"\b(timestamp|duration|time)(?:32|64)?\[(?:s|ms|us|ns)(?:, |(?=\]))")
#: Dates as days or as milliseconds: the same dates.
_DATE = re.compile(r"\bdate(?:32|64)\[(?:day|ms)\]")


def logical_type(arrow_type: str) -> str:
    """``arrow_type`` (as text) without what only says how Arrow lays the values out.

    >>> logical_type("large_list<item: large_string>") == logical_type("list<element: string>")
    True
    """
    text = _DATE.sub("date", _UNIT.sub(r"\1[", _LAYOUT.sub(r"\1", arrow_type)))
    return _CODES.sub("", _LIST_ITEM.sub("list<item: ", text))


def _moved_time(stat: str, x: Any, y: Any) -> bool:
    """Whether the first, middle or last time (or duration) moved: profiled as text, they
    would otherwise never show."""
    return stat in ("min", "median", "max") and isinstance(x, str) and isinstance(y, str) and x != y


def _kind(stats: dict[str, Any]) -> str:
    """The kind of a profiled column's type without its unit: ``timestamp[s]`` and
    ``timestamp[us]`` hold comparable times, and their text compares."""
    return str(stats.get("type", "")).split("[", 1)[0]
