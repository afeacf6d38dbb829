"""Point-in-time joins and materialization queries, in DuckDB.

For each entity row, a feature view gives its latest row with ``event_ts <= row time`` and
``event_ts > row time - ttl`` (null when there is none): an ASOF JOIN, which DuckDB runs
by sorting and merging, streaming over Parquet. A source with a ``created_timestamp`` (late
corrections) is joined by range instead, so a correction recorded after a training row's
time never reaches it.

DuckDB keeps within ``query_memory_limit`` (a setting) and spills what does not fit to a
folder of the process under ``.conveyor/tmp``, so a source larger than RAM streams through
the join and the materialization query.

Queries are composed from identifiers only: view and feature names are checked
(``[a-z][a-z0-9_]*``) and every column name is quoted (``_quote``); values are bound
parameters.
"""

from __future__ import annotations

import glob
import os
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conveyor.core.errors import ConveyorError, InvalidArgumentError
from conveyor.features.definitions import (
    DataFrameSource,
    DatasetSource,
    FeatureView,
    ParquetSource,
    Source,
    SqlSource,
)

__all__ = ["FileSplit", "connect", "join_view", "latest_rows", "source_state", "split_files"]

FileSplit = tuple[list[str], list[str]]  # a source's files read before, and new or changed ones


def connect(memory_limit: str = "", spill_root: Path | None = None) -> Any:
    """A DuckDB connection in UTC that keeps within ``memory_limit`` (DuckDB's default when
    empty) and spills to a folder of this process under ``spill_root``, which DuckDB makes
    when it first spills and removes when the connection closes."""
    import duckdb

    config: dict[str, Any] = {}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if spill_root is not None:
        spill_root.mkdir(parents=True, exist_ok=True)
        # One folder per connection: DuckDB makes it on the first spill and removes it, with
        # everything in it, on close, so no two connections (threads, or containers sharing
        # a volume with the same PID) may share one.
        config["temp_directory"] = str(spill_root / f"duckdb-{os.getpid()}-{uuid.uuid4().hex}")
    try:
        con = duckdb.connect(config=config)
    except duckdb.Error as e:
        raise InvalidArgumentError(
            f"DuckDB refused its settings (query_memory_limit = {memory_limit!r}, spill "
            f"folder {config.get('temp_directory')}): {e}",
            hint="Use a memory size such as 2GB or 512MB (or leave query_memory_limit empty "
            "for DuckDB's default), and make sure .conveyor/tmp is writable.",
        ) from e
    con.execute("SET TimeZone = 'UTC'")
    return con


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _naive_utc(moment: datetime) -> datetime:
    """``moment`` as a naive UTC time (DuckDB's TIMESTAMP), converting any offset first."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None)


def source_relation(
    con: Any, view: FeatureView, alias: str, data_service: Any = None, root: Path | None = None
) -> str:
    """Register ``view``'s source on ``con`` as ``alias``, checking its columns; return the
    name of the reading relation."""
    source: Source = view.source
    if isinstance(source, ParquetSource):
        rel = con.read_parquet(_parquet_path(source, root))
    elif isinstance(source, DatasetSource):
        if data_service is None:
            raise InvalidArgumentError("A DatasetSource needs the workspace's data service.")
        rel = con.from_arrow(data_service.load_arrow(source.ref))
    elif isinstance(source, SqlSource):
        rel = con.sql(source.query)
    elif isinstance(source, DataFrameSource):
        frame = source.frame
        rel = (
            con.from_arrow(frame)
            if hasattr(frame, "schema") and hasattr(frame, "num_rows")
            else (con.from_df(frame))
        )
    else:
        raise InvalidArgumentError(
            f"Feature view {view.name!r} reads a DataFrame in memory, which only the process "
            "that applied it has; its online values can be read anywhere, its rows cannot.",
            hint="Use a ParquetSource, DatasetSource or SqlSource to read it from other "
            "processes, or apply it in this one.",
        )
    columns = set(rel.columns)
    needed = [*view.keys, source.timestamp, *view.feature_names]
    if source.created_timestamp:
        needed.append(source.created_timestamp)
    missing = [c for c in needed if c not in columns]
    if missing:
        raise InvalidArgumentError(
            f"The source of feature view {view.name!r} has no column "
            f"{', '.join(map(repr, missing))}; it has {', '.join(sorted(columns))}.",
            hint="Fix the source, or the Field/Entity/timestamp names of the view.",
        )
    con.register(alias, rel)
    return alias


def _parquet_path(source: ParquetSource, root: Path | None) -> str:
    path = source.path
    if root is not None and "://" not in path and not Path(path).is_absolute():
        path = str(root / path)  # relative to the project root, wherever the process runs
    return path


def source_state(view: FeatureView, data_service: Any = None, root: Path | None = None) -> Any:
    """What the source of ``view`` reads now, for telling late rows on the next incremental
    materialization: a local Parquet source's files with their size and modification time,
    a dataset source's version digest; None for sources that cannot tell (SQL, remote
    files, DataFrames)."""
    source = view.source
    if isinstance(source, ParquetSource):
        path = _parquet_path(source, root)
        if "://" in path:
            return None
        files = {}
        for name in sorted(glob.glob(path, recursive=True, include_hidden=True)):
            try:
                st = os.stat(name)
            except OSError:
                continue  # removed while listing: the query will not read it either
            if stat.S_ISREG(st.st_mode):  # DuckDB reads files only, never folders
                files[name] = [st.st_size, st.st_mtime_ns]
        return {"files": files}
    if isinstance(source, DatasetSource) and data_service is not None:
        return {"dataset": data_service.get(source.ref).digest}
    return None


def split_files(before: Any, now: Any) -> FileSplit | None:
    """The files of ``now`` (a ``source_state``) that were read before unchanged, and those
    new or changed since ``before``, which may hold rows older than the last
    materialization. None when the states cannot tell (no earlier state, or no files)."""
    if not before or not now or not before.get("files") or not now.get("files"):
        return None
    unchanged: list[str] = []
    late: list[str] = []
    for name, mark in now["files"].items():
        (unchanged if before["files"].get(name) == mark else late).append(name)
    return unchanged, late


_TZ = "TIMESTAMP WITH TIME ZONE"
_PLAIN_TIMES = ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S")
_TEXT = ("VARCHAR",)
_NUMBERS = (
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE",
)  # fmt: skip


def _utc_time(column: str, duck_type: str) -> str:
    """SQL for ``column`` as a naive UTC TIMESTAMP. Text goes through TIMESTAMPTZ, so that
    an offset in it (``2026-01-01T08:00:00-05:00``) is applied, not dropped; text without
    one is UTC (the connection's time zone)."""
    if duck_type in _TEXT:
        return f"CAST(CAST({column} AS {_TZ}) AS TIMESTAMP)"
    return f"CAST({column} AS TIMESTAMP)"


def _family(duck_type: str) -> str:
    if duck_type in _TEXT:
        return "text"
    return "number" if duck_type in _NUMBERS or duck_type.startswith("DECIMAL") else duck_type


def key_kinds(
    con: Any, view: FeatureView, data_service: Any = None, root: Path | None = None
) -> dict[str, str]:
    """``{key: "text" | "number" | DuckDB type}``: how the source of ``view`` keeps its keys.

    A dataset version says from its record (the Arrow types stored with it), without its
    rows being read or, through a team server, fetched; other sources are described by
    DuckDB without reading their rows.
    """
    if isinstance(view.source, DatasetSource) and data_service is not None:
        columns = data_service.get(view.source.ref).columns or {}
        return {k: _arrow_family(str(columns.get(k, ""))) for k in view.keys}
    src = source_relation(con, view, f"src_{view.name}", data_service, root)
    types = dict(zip(con.table(src).columns, map(str, con.table(src).types), strict=True))
    return {k: _family(types.get(k, "")) for k in view.keys}


def _arrow_family(arrow_type: str) -> str:
    """The kind of an Arrow type's name as a dataset version records it (``int64``,
    ``large_string``...): text, number, or the name itself."""
    if arrow_type in ("string", "large_string", "string_view"):
        return "text"
    numbers = ("int", "uint", "float", "double", "halffloat", "decimal")
    return "number" if arrow_type.startswith(numbers) else arrow_type


def _check_key_types(view: FeatureView, source: dict[str, str], entity: dict[str, str]) -> None:
    """Refuse entity keys of another kind than the source's (text against numbers): the
    join would cast one to the other, so "007" and "7" would both match 7."""
    for key in view.keys:
        mine, theirs = entity.get(key, ""), source.get(key, "")
        if {_family(mine), _family(theirs)} != {"text", "number"}:
            continue
        raise InvalidArgumentError(
            f"The entity key {key!r} holds {mine} values, but the source of feature view "
            f"{view.name!r} keeps {key!r} as {theirs}: joined, values that only look alike "
            f'("007" and 7) would match.',
            hint=f"Give {key!r} the source's type (`conveyor features historical` reads a "
            "CSV's keys so; in Python, convert the column).",
        )


def join_view(
    con: Any,
    view: FeatureView,
    entities: Any,
    features: list[str],
    data_service: Any = None,
    root: Path | None = None,
) -> Any:
    """The ``features`` of ``view`` for every entity row (an Arrow table with the keys,
    ``__ts`` as naive UTC microseconds and ``__row``), as an Arrow table ordered by
    ``__row``.

    The entity times take the type of the source's time column, so the join compares
    columns as they are: a cast on the source side costs a tenth of the query.
    """
    import pyarrow as pa

    src = source_relation(con, view, f"src_{view.name}", data_service, root)
    types = dict(zip(con.table(src).columns, map(str, con.table(src).types), strict=True))
    source_type = types.get(view.source.timestamp, "")
    ts = _quote(view.source.timestamp)
    if source_type == _TZ:
        at = entities.column_names.index("__ts")
        entities = entities.set_column(
            at, "__ts", entities.column("__ts").cast(pa.timestamp("us", tz="UTC"))
        )
        e_time, f_time = "e.__ts", f"f.{ts}"
    elif source_type in _PLAIN_TIMES:
        e_time, f_time = "e.__ts", f"f.{ts}"
    else:
        e_time, f_time = "e.__ts", _utc_time(f"f.{ts}", source_type)
    entity_alias = f"entities_{view.name}"
    con.register(entity_alias, entities)
    entity = con.table(entity_alias)
    _check_key_types(view, types, dict(zip(entity.columns, map(str, entity.types), strict=True)))
    ttl = view.ttl_delta
    # Within the TTL, both ends included (as Feast and the hand-written DuckDB limit count).
    # In microseconds, as materialize counts it: a TTL of 1.5 s is not 1 s here.
    span = f"INTERVAL {ttl // timedelta(microseconds=1)} MICROSECOND" if ttl else ""
    fresh = f"{f_time} >= {e_time} - {span}" if ttl else "TRUE"
    cols = ", ".join(f"CASE WHEN {fresh} THEN f.{_quote(c)} END AS {_quote(c)}" for c in features)
    keys_eq = " AND ".join(f"e.{_quote(k)} = f.{_quote(k)}" for k in view.keys)
    created = view.source.created_timestamp
    if created is None:
        query = (
            f"SELECT e.__row, {cols} FROM {entity_alias} e "
            f"ASOF LEFT JOIN (SELECT * FROM {src}) f ON {keys_eq} AND {e_time} >= {f_time} "
            "ORDER BY e.__row"
        )
    else:
        c_time = _utc_time(f"f.{_quote(created)}", types.get(created, ""))
        window = f"{f_time} <= {e_time} AND {c_time} <= {e_time}"
        if ttl:
            window += f" AND {fresh}"
        picked = ", ".join(f"f.{_quote(c)} AS {_quote(c)}" for c in features)
        query = (
            f"SELECT e.__row, {picked} FROM {entity_alias} e "
            f"LEFT JOIN {src} f ON {keys_eq} AND {window} "
            f"QUALIFY row_number() OVER (PARTITION BY e.__row ORDER BY {f_time} DESC NULLS LAST, "
            f"{c_time} DESC NULLS LAST) = 1 ORDER BY e.__row"
        )
    try:
        return _arrow(con, view, query)
    finally:
        con.unregister(entity_alias)


def _with_late_files(con: Any, view: FeatureView, split: FileSplit, ts: str) -> str:
    """A relation of the rows new since ``$start`` in the files read before, and of every
    row in the new or changed files: each file is read once. ``split`` is never empty."""
    unchanged, late = split
    parts = []
    if unchanged:
        con.register(f"seen_{view.name}", con.read_parquet(unchanged))
        parts.append(f"SELECT * FROM seen_{view.name} WHERE {ts} > $start")
    if late:
        con.register(f"late_{view.name}", con.read_parquet(late))
        # $start in every branch: DuckDB refuses a bound parameter the query does not use
        parts.append(f"SELECT * FROM late_{view.name} WHERE CAST($start AS TIMESTAMP) IS NOT NULL")
    return "(" + " UNION ALL BY NAME ".join(parts) + ")"


def _key_text(column: str, duck_type: str) -> str:
    """SQL for a key value as text, the same text ``service._text`` makes in Python: whole
    floats as integers, booleans as True/False."""
    q = _quote(column)
    if duck_type in ("FLOAT", "DOUBLE") or duck_type.startswith("DECIMAL"):
        return (
            f"CASE WHEN {q} = trunc({q}) AND abs({q}) < 9223372036854775808.0 "
            f"THEN CAST(CAST({q} AS BIGINT) AS VARCHAR) "
            f"ELSE CAST({q} AS VARCHAR) END"
        )
    if duck_type == "BOOLEAN":
        return f"CASE WHEN {q} THEN 'True' ELSE 'False' END"
    return f"CAST({q} AS VARCHAR)"


def latest_rows(
    con: Any,
    view: FeatureView,
    start: datetime | None,
    end: datetime,
    data_service: Any = None,
    root: Path | None = None,
    *,
    numeric: bool = False,
    split: FileSplit | None = None,
) -> Any:
    """Per entity, its latest row with ``event_ts <= end`` and ``event_ts >= end - ttl``
    among the rows new since ``start``, encoded for the online store: an Arrow table of
    ``__key`` (the key as text), ``__ts`` (epoch microseconds) and ``__payload`` (JSON: the
    time and the values in feature order), sorted by key; with ``numeric``, the features as
    float64 columns instead of the payload (packed by the caller). "New" is by ``created_timestamp``
    when the source has one (so late rows and corrections are picked up), else by event
    time; ``split`` divides a Parquet source's files into those read before and those new or
    changed since ``start``, whose rows all count whatever their time (late rows without a
    ``created_timestamp``).
    The encoding happens in DuckDB: a million rows in Python took seconds."""
    src = source_relation(con, view, f"src_{view.name}", data_service, root)
    types = dict(zip(con.table(src).columns, map(str, con.table(src).types), strict=True))
    ts = _utc_time(_quote(view.source.timestamp), types.get(view.source.timestamp, ""))
    created = view.source.created_timestamp
    c_ts = _utc_time(_quote(created), types.get(created, "")) if created else None
    conditions = [f"{ts} <= $end"]
    params: dict[str, Any] = {"end": _naive_utc(end)}
    if c_ts is not None:
        conditions.append(f"{c_ts} <= $end")  # nothing recorded after END
    if start is not None:
        params["start"] = _naive_utc(start)
        if split is not None and c_ts is None:
            src = _with_late_files(con, view, split, ts)
        else:
            conditions.append(f"{c_ts or ts} > $start")
    if view.ttl_delta is not None:
        conditions.append(f"{ts} >= $expiry")
        params["expiry"] = _naive_utc(end - view.ttl_delta)
    for k in view.keys:  # a row without its key names no entity: online reads never ask
        conditions.append(f"{_quote(k)} IS NOT NULL")
        if types.get(k, "") in ("FLOAT", "DOUBLE"):
            conditions.append(f"NOT isnan({_quote(k)})")
    order = f"{ts} DESC" + (f", {c_ts} DESC" if c_ts else "")
    keys = ", ".join(_quote(k) for k in view.keys)
    key_texts = [_key_text(k, types.get(k, "")) for k in view.keys]
    key = key_texts[0] if len(key_texts) == 1 else f"to_json([{', '.join(key_texts)}])"
    feats = ", ".join(_quote(f) for f in view.feature_names)
    latest = (
        f"SELECT {key} AS __key, epoch_us({ts}) AS __ts, {feats} FROM {src} "
        f"WHERE {' AND '.join(conditions)} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1"
    )
    if numeric:
        doubles = ", ".join(
            f"CAST({_quote(f)} AS DOUBLE) AS {_quote(f)}" for f in view.feature_names
        )
        query = f"SELECT __key, __ts, {doubles} FROM ({latest}) ORDER BY __key"
    else:
        query = (
            f"SELECT __key, __ts, json_array(__ts, json_array({feats})) AS __payload "
            f"FROM ({latest}) ORDER BY __key"
        )
    return _arrow(con, view, query, params)


def _arrow(con: Any, view: FeatureView, query: str, params: dict[str, Any] | None = None) -> Any:
    import duckdb

    try:
        return con.sql(query, params=params).to_arrow_table()
    except duckdb.OutOfMemoryException as e:
        try:  # a query that needs memory, which may be what ran out
            limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        except duckdb.Error:
            limit = "its memory limit"
        raise ConveyorError(
            f"The query of feature view {view.name!r} needed more memory than DuckDB may use "
            f"({limit}), even spilling to disk: {str(e).splitlines()[0]}",
            hint="Raise query_memory_limit in conveyor.toml (or CONVEYOR_QUERY_MEMORY_LIMIT), "
            "or ask for fewer entity rows at a time.",
        ) from e
