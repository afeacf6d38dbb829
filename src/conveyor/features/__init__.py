"""The feature store: definitions in Python, point-in-time correct training data,
materialization to an online store, microsecond online reads.

>>> import conveyor as cv
>>> from conveyor.features import Entity, FeatureView, Field, ParquetSource
>>> customer = Entity("customer", key="customer_id")
>>> activity = FeatureView(
...     name="customer_activity", entities=[customer],
...     source=ParquetSource("data/activity/*.parquet", timestamp="event_ts"),
...     features=[Field("txn_count_7d", "int64"), Field("avg_amount_30d")], ttl="30d")
>>> cv.features.apply([customer, activity])                        # doctest: +SKIP
>>> cv.features.historical(entity_df, ["customer_activity:txn_count_7d"])  # doctest: +SKIP

See docs/features.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from conveyor.features.definitions import (
    DataFrameSource,
    DatasetSource,
    Entity,
    FeatureView,
    Field,
    OnDemandView,
    ParquetSource,
    SqlSource,
    on_demand,
)

__all__ = [
    "DataFrameSource",
    "DatasetSource",
    "Entity",
    "FeatureView",
    "Field",
    "OnDemandView",
    "ParquetSource",
    "SqlSource",
    "apply",
    "freshness",
    "historical",
    "list_views",
    "materialize",
    "on_demand",
    "online",
]


def _service(workspace: Any = None) -> Any:
    from conveyor.features.service import feature_service

    return feature_service(workspace)


def apply(objects: Iterable[Any], *, workspace: Any = None) -> list[Any]:
    """Store entities, feature views and on-demand views; a changed one is a new version."""
    return _service(workspace).apply(objects)


def historical(
    entity_df: Any,
    features: Sequence[str],
    *,
    timestamp: str = "event_timestamp",
    full_names: bool = False,
    workspace: Any = None,
) -> Any:
    """Point-in-time correct training data: ``entity_df`` with one column per feature."""
    return _service(workspace).historical(
        entity_df, features, timestamp=timestamp, full_names=full_names
    )


def materialize(
    views: Sequence[str] | None = None,
    *,
    start: datetime | None = None,
    end: datetime | str = "now",
    workspace: Any = None,
) -> list[Any]:
    """Write the latest values at ``end`` to the online store (incremental, idempotent)."""
    return _service(workspace).materialize(views, start=start, end=end)


def online(
    entity_rows: Any,
    features: Sequence[str],
    *,
    with_timestamps: bool = False,
    full_names: bool = False,
    workspace: Any = None,
) -> Any:
    """Online values for ``entity_rows`` (a dict of key columns or a DataFrame)."""
    return _service(workspace).online(
        entity_rows, features, with_timestamps=with_timestamps, full_names=full_names
    )


def freshness(view: str, *, workspace: Any = None) -> timedelta | None:
    """How old the newest materialized value of ``view`` is (None: nothing materialized)."""
    return _service(workspace).freshness(view)


def list_views(*, workspace: Any = None) -> list[dict[str, Any]]:
    """The project's feature views and on-demand views with their latest definitions."""
    return _service(workspace).list_views()
