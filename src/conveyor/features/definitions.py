"""Feature definitions in Python: entities, fields, sources, feature views, on-demand views.

Every definition has a canonical dict (``spec()``): its digest decides whether ``apply``
stores a new version.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from conveyor.core.durations import parse_duration
from conveyor.core.errors import InvalidArgumentError

__all__ = [
    "DataFrameSource",
    "DatasetSource",
    "Entity",
    "FeatureView",
    "Field",
    "OnDemandView",
    "ParquetSource",
    "SqlSource",
    "on_demand",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
DTYPES = ("int64", "int32", "float64", "float32", "bool", "string", "timestamp")


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgumentError(
            f"A {what} name must start with a lower-case letter and hold only a-z, 0-9 and _ "
            f"(at most 100); got {name!r}."
        )
    return name


@dataclass(frozen=True, slots=True)
class Entity:
    """What features describe, and the column(s) that identify it (``customer_id``)."""

    name: str
    key: str | tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "entity")
        keys = (self.key,) if isinstance(self.key, str) else tuple(self.key)
        if not keys or not all(isinstance(k, str) and k for k in keys):
            raise InvalidArgumentError(f"Entity {self.name!r} needs its key column name(s).")
        object.__setattr__(self, "key", keys[0] if len(keys) == 1 else keys)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key,) if isinstance(self.key, str) else tuple(self.key)

    def spec(self) -> dict[str, Any]:
        return {"kind": "entity", "name": self.name, "keys": list(self.keys)}


@dataclass(frozen=True, slots=True)
class Field:
    """A feature column and its type (int64, int32, float64, float32, bool, string, timestamp)."""

    name: str
    dtype: str = "float64"

    def __post_init__(self) -> None:
        check_name(self.name, "feature")
        if self.dtype not in DTYPES:
            raise InvalidArgumentError(
                f"Feature {self.name!r} has the type {self.dtype!r}; types: {', '.join(DTYPES)}."
            )


class Source:
    """Where a feature view's rows come from; each has a timestamp column."""

    timestamp: str
    created_timestamp: str | None

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class ParquetSource(Source):
    """Parquet files (a path or glob) read in place by DuckDB."""

    path: str
    timestamp: str = "event_ts"
    created_timestamp: str | None = None

    def spec(self) -> dict[str, Any]:
        return {"kind": "parquet", "path": self.path, **_ts(self)}


@dataclass(frozen=True)
class DatasetSource(Source):
    """A table version of ``conveyor.data`` (``customers@3``; ``@latest`` resolves when read)."""

    ref: str
    timestamp: str = "event_ts"
    created_timestamp: str | None = None

    def spec(self) -> dict[str, Any]:
        return {"kind": "dataset", "ref": self.ref, **_ts(self)}


@dataclass(frozen=True)
class SqlSource(Source):
    """A DuckDB query (``SELECT ... FROM read_parquet('...')``)."""

    query: str
    timestamp: str = "event_ts"
    created_timestamp: str | None = None

    def spec(self) -> dict[str, Any]:
        return {"kind": "sql", "query": self.query, **_ts(self)}


@dataclass(frozen=True, eq=False)
class DataFrameSource(Source):
    """A pandas DataFrame or Arrow table in memory (for tests and notebooks)."""

    frame: Any
    timestamp: str = "event_ts"
    created_timestamp: str | None = None

    def spec(self) -> dict[str, Any]:
        import pyarrow as pa

        from conveyor.core.hashing import sha256_bytes

        table = (
            self.frame
            if isinstance(self.frame, pa.Table)
            else pa.Table.from_pandas(self.frame, preserve_index=False)
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return {"kind": "frame", "digest": sha256_bytes(sink.getvalue().to_pybytes()), **_ts(self)}


@dataclass(frozen=True)
class DetachedSource(Source):
    """A DataFrame source seen from another process: its definition is known (so online
    reads work) but its rows are only in the process that applied it."""

    stored: dict[str, Any]
    timestamp: str = "event_ts"
    created_timestamp: str | None = None

    def spec(self) -> dict[str, Any]:
        return dict(self.stored)


def _ts(source: Source) -> dict[str, Any]:
    return {"timestamp": source.timestamp, "created_timestamp": source.created_timestamp}


@dataclass(frozen=True, eq=False)
class FeatureView:
    """Features of one or more entities, read from a source, valid for ``ttl`` after their time."""

    name: str
    entities: Sequence[Entity]
    source: Source
    features: Sequence[Field]
    ttl: str | timedelta | None = None
    description: str = ""
    ttl_delta: timedelta | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        check_name(self.name, "feature view")
        if not self.entities or not all(isinstance(e, Entity) for e in self.entities):
            raise InvalidArgumentError(f"Feature view {self.name!r} needs its Entity objects.")
        if not isinstance(self.source, Source):
            raise InvalidArgumentError(
                f"Feature view {self.name!r} needs a source: ParquetSource, DatasetSource, "
                f"SqlSource or DataFrameSource; got {self.source!r}."
            )
        if not self.features or not all(isinstance(f, Field) for f in self.features):
            raise InvalidArgumentError(f"Feature view {self.name!r} needs Field(...) features.")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise InvalidArgumentError(f"Feature view {self.name!r} names a feature twice.")
        ttl = self.ttl
        if isinstance(ttl, str):
            ttl = parse_duration(ttl, what=f"ttl of feature view {self.name!r}")
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl <= timedelta(0)):
            raise InvalidArgumentError(
                f"The ttl of feature view {self.name!r} must be a positive duration; got "
                f"{self.ttl!r}.",
                hint='Write it as "2d" or "90m" (or a timedelta); leave it out for features '
                "that never expire.",
            )
        object.__setattr__(self, "ttl_delta", ttl)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k for e in self.entities for k in e.keys)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "view",
            "name": self.name,
            "entities": [e.spec() for e in self.entities],
            "source": self.source.spec(),
            "features": [[f.name, f.dtype] for f in self.features],
            "ttl_s": self.ttl_delta.total_seconds() if self.ttl_delta else None,
        }


@dataclass(frozen=True, eq=False)
class OnDemandView:
    """Features computed from other features (and the request) by one function, the same
    function offline (on a DataFrame of all rows) and online (on the requested rows)."""

    name: str
    fn: Callable[..., Any]
    inputs: Sequence[str]
    outputs: Sequence[Field]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.outputs]

    def spec(self) -> dict[str, Any]:
        try:
            code = textwrap.dedent(inspect.getsource(self.fn))
        except (OSError, TypeError):
            code = repr(self.fn.__code__.co_code)
        return {
            "kind": "on_demand",
            "name": self.name,
            "inputs": list(self.inputs),
            "outputs": [[f.name, f.dtype] for f in self.outputs],
            "code": hashlib.sha256(code.encode()).hexdigest(),
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def on_demand(
    *, inputs: Sequence[str], outputs: Sequence[Field], name: str | None = None
) -> Callable[[Callable[..., Any]], OnDemandView]:
    """Make ``fn(df, request) -> DataFrame`` an on-demand feature view.

    ``df`` holds the ``inputs`` features (one row per entity row); ``request`` the entity
    rows themselves. The function returns a DataFrame with the ``outputs`` columns.
    """

    def wrap(fn: Callable[..., Any]) -> OnDemandView:
        if not inputs or not outputs:
            raise InvalidArgumentError("on_demand needs inputs=[...] and outputs=[Field(...)].")
        return OnDemandView(check_name(name or fn.__name__, "on-demand view"), fn, inputs, outputs)

    return wrap


def digest(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
