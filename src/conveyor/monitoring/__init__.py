"""Monitoring: data drift between a reference and a current sample (more to come).

>>> import conveyor as cv
>>> report = cv.monitoring.drift(reference_df, current_df)      # doctest: +SKIP
>>> report.drifted_columns, report.dataset_drifted               # doctest: +SKIP
>>> report.table()                                               # doctest: +SKIP

See docs/monitoring.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.monitoring.stats import ColumnDrift, DriftReport

__all__ = ["ColumnDrift", "DriftReport", "drift"]


def drift(reference: Any, current: Any, **options: Any) -> DriftReport:
    """Per-column drift of ``current`` against ``reference`` (DataFrames); see ``stats.drift``."""
    from conveyor.monitoring.stats import drift as _drift

    return _drift(reference, current, **options)


def __getattr__(name: str) -> Any:
    if name in ("ColumnDrift", "DriftReport"):
        from conveyor.monitoring import stats as module

        return getattr(module, name)
    raise AttributeError(f"module 'conveyor.monitoring' has no attribute {name!r}")
