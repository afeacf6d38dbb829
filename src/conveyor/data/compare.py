"""Comparing two dataset versions: files, columns, row counts and column statistics."""

from __future__ import annotations

from conveyor.data.records import ColumnShift, DatasetDiff, DatasetVersion, Manifest

__all__ = ["diff_versions"]

#: The profile statistics compared for columns present in both versions.
STATISTICS = ("null_rate", "mean", "std", "min", "max", "distinct")


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
    out.columns_retyped = {c: (ca[c], cb[c]) for c in ca if c in cb and ca[c] != cb[c]}
    out.rows = (a.rows, b.rows)
    pa_cols = (a.profile or {}).get("columns", {})
    pb_cols = (b.profile or {}).get("columns", {})
    for column in (c for c in cb if c in ca):
        sa, sb = pa_cols.get(column, {}), pb_cols.get(column, {})
        for stat in STATISTICS:
            x, y = sa.get(stat), sb.get(stat)
            if isinstance(x, int | float) and isinstance(y, int | float) and x != y:
                out.shifts.append(ColumnShift(column, stat, x, y))  # ints stay exact
    return out
