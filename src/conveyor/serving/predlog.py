"""The prediction log and the feedback log: batched Parquet files, written off the request path.

A request appends one entry (its rows, outputs, ids, model version, latency) to a bounded
in-memory buffer; a writer thread turns the buffer into Parquet files every ``flush_rows``
rows or ``flush_seconds`` seconds, and on close. Files go to
``{log_uri}/{predictions|feedback}/deployment=NAME/date=YYYY-MM-DD/hour=HH/part-*.parquet``,
each written whole (temp-then-rename locally, one PUT on object stores), so a reader never
sees half a file. If the sink fails, entries stay buffered and are retried; past the bound,
new entries are dropped and counted (``dropped_rows``), never hidden, and serving goes on.
Read them with :func:`read_predictions` (DuckDB or pandas also read them in place).
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.store.logs import partition_folder, read_log

__all__ = ["FailureEntry", "FeedbackEntry", "ParquetLog", "PredictionEntry", "read_log"]

log = logging.getLogger("conveyor.serving.log")
_seq = itertools.count()
# LZ4 writes several times faster than zstd here, and only the low-cardinality text columns
# are dictionary-encoded (trying it on every input column costs more than it saves).
_PARQUET: dict[str, Any] = {
    "compression": "lz4",
    "use_dictionary": ["deployment", "model", "role"],
}


@dataclass(slots=True)
class PredictionEntry:
    """What one request predicted, as the server logs it."""

    at: float  # UNIX seconds
    deployment: str
    revision: int | None
    model: str
    version: int
    role: str
    ids: list[str]
    inputs: Any  # float64 array (columns ``columns``) or DataFrame
    columns: list[str]
    outputs: dict[str, Any]
    latency_ms: float
    feature_age_s: list[float | None] | None = None  # per row, for online features read

    @property
    def rows(self) -> int:
        return len(self.ids)


@dataclass(slots=True)
class FeedbackEntry:
    """Ground truth for earlier predictions, by prediction id."""

    at: float
    deployment: str
    ids: list[str]
    labels: list[Any]

    @property
    def rows(self) -> int:
        return len(self.ids)


@dataclass(slots=True)
class FailureEntry:
    """A request the server refused (4xx) or could not answer (5xx); its inputs are not kept."""

    at: float
    deployment: str
    revision: int | None
    model: str
    version: int
    role: str
    status: int
    latency_ms: float
    error_id: str

    @property
    def rows(self) -> int:
        return 1

    @property
    def ids(self) -> list[str]:
        return [self.error_id]


class ParquetLog:
    """A bounded, batched writer of one kind of log entries to Parquet under ``uri``."""

    def __init__(
        self,
        uri: str,
        kind: str,
        *,
        flush_rows: int = 10_000,
        flush_seconds: float = 5.0,
        max_buffer_rows: int = 1_000_000,
        build: Callable[[list[Any]], pa.Table] | None = None,
    ) -> None:
        self.uri = uri.rstrip("/")
        self.kind = kind
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_buffer_rows = max_buffer_rows
        self._build = build or _BUILDERS[kind]
        self._fs: Any = None
        if ":" in self.uri.split("/", 1)[0]:  # a URI (file://, s3://...): fsspec names it,
            from conveyor.store.logs import log_filesystem  # as for the readers

            self._fs, self._root = log_filesystem(self.uri)
            protocols = self._fs.protocol
            self._local = "file" in (protocols if isinstance(protocols, tuple) else (protocols,))
        else:  # a plain path, written with os and pyarrow: a server need not import fsspec
            self._local = True
            self._root = str(Path(self.uri).expanduser().absolute())
        self._buffer: list[Any] = []
        self._buffered_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.logged_rows = 0
        self.dropped_rows = 0
        self.failed_writes = 0
        self.files_written = 0
        self.last_error = ""
        self._failures = 0
        self._retry_at = 0.0
        # Names files apart across processes and containers (where every pid may be 1).
        self._tag = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._thread = threading.Thread(target=self._loop, name=f"conveyor-{kind}-log", daemon=True)
        self._thread.start()

    @property
    def buffered_rows(self) -> int:
        return self._buffered_rows

    def add(self, entry: Any, *, wait: float = 0.0) -> bool:
        """Buffer ``entry``; False (and counted as dropped) when the buffer stays full.

        ``wait`` seconds (batch jobs) lets the writer make room first instead of dropping.
        """
        rows = entry.rows
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                if self._buffered_rows + rows <= self.max_buffer_rows or not self._buffer:
                    self._buffer.append(entry)
                    self._buffered_rows += rows
                    full = self._buffered_rows >= self.flush_rows
                    break
                if time.monotonic() >= deadline:
                    self.dropped_rows += rows
                    return False
            self._wake.set()
            time.sleep(0.01)
        if full and time.monotonic() >= self._retry_at:
            self._wake.set()
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if time.monotonic() >= self._retry_at:
                self.flush()

    def flush(self) -> int:
        """Write what is buffered now; return the rows written.

        Entries are turned into tables first: an entry that cannot be (outputs of a shape
        Parquet cannot hold, say) is counted as dropped, with the reason, and never blocks the
        rest. Only writing is retried: a group not written stays buffered, and the writer waits
        longer after each failure (up to a minute) before the next try.
        """
        with self._lock:
            entries, self._buffer = self._buffer, []
            self._buffered_rows = 0
        if not entries:
            return 0
        written = 0
        unwritten: list[Any] = []
        for (deployment, at), group in self._groups(entries).items():
            folder = partition_folder(self._root, self.kind, deployment, at)
            tables = self._tables(group)
            try:
                for table in tables:
                    name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{self._tag}-{next(_seq)}"
                    self._put(folder, f"{name}.parquet", table)
                    self.files_written += 1
                    written += table.num_rows
                    tables = tables[1:]  # written: not again if a later one fails
            except Exception as e:  # noqa: BLE001 - the sink may fail in any way; keep serving
                self.failed_writes += 1
                self.last_error = f"{type(e).__name__}: {e}"
                unwritten += _entries_of(group, tables)
                continue
        self.logged_rows += written
        if unwritten:
            self._failures += 1
            delay = min(60.0, 0.5 * 2 ** (self._failures - 1))
            self._retry_at = time.monotonic() + delay
            log.warning(
                "Cannot write the %s log to %s (%s); %d row(s) kept buffered, retrying in %.1f s",
                self.kind,
                self.uri,
                self.last_error,
                sum(e.rows for e in unwritten),
                delay,
            )
            self._requeue(unwritten)
        else:
            self._failures = 0
            self._retry_at = 0.0
        return written

    def _groups(self, entries: list[Any]) -> dict[tuple[str, datetime], list[Any]]:
        groups: dict[tuple[str, datetime], list[Any]] = {}
        for entry in entries:
            hour = datetime.fromtimestamp(entry.at, UTC).replace(minute=0, second=0, microsecond=0)
            groups.setdefault((entry.deployment, hour), []).append(entry)
        return groups

    def _tables(self, group: list[Any]) -> list[pa.Table]:
        """The group as tables: one, or one per schema when entries disagree (different
        model versions in one hour, say); an entry that cannot be stored at all is dropped."""
        try:
            return [self._build(group)]
        except Exception:  # the entries at fault are found below, one by one
            if len(group) == 1:
                self.dropped_rows += group[0].rows
                log.exception("A %s log entry cannot be stored; dropped", self.kind)
                return []
        by_schema: dict[pa.Schema, list[pa.Table]] = {}
        for entry in group:
            for table in self._tables([entry]):
                by_schema.setdefault(table.schema, []).append(table)
        return [pa.concat_tables(tables) for tables in by_schema.values()]

    def _requeue(self, entries: list[Any]) -> None:
        """Put ``entries`` back in front of the buffer, as far as the bound allows."""
        with self._lock:
            room = self.max_buffer_rows - self._buffered_rows
            kept: list[Any] = []
            for entry in entries:
                if entry.rows <= room:
                    kept.append(entry)
                    room -= entry.rows
                else:
                    self.dropped_rows += entry.rows
            self._buffer = kept + self._buffer
            self._buffered_rows += sum(e.rows for e in kept)

    def _put(self, folder: str, name: str, table: pa.Table) -> None:
        if self._local:
            os.makedirs(folder, exist_ok=True)
            temp = f"{folder}/.{name}.tmp"
            pq.write_table(table, temp, **_PARQUET)
            os.replace(temp, f"{folder}/{name}")
            return
        self._fs.makedirs(folder, exist_ok=True)
        with self._fs.open(f"{folder}/{name}", "wb") as out:  # one PUT: whole or nothing
            pq.write_table(table, out, **_PARQUET)

    def close(self) -> None:
        """Stop the writer and flush what is left (retried once if the sink fails)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        if self.flush() == 0 and self._buffered_rows:
            self.flush()
        if self._buffered_rows:
            log.error(
                "%d %s row(s) could not be written to %s at shutdown: %s",
                self._buffered_rows,
                self.kind,
                self.uri,
                self.last_error,
            )
            self.dropped_rows += self._buffered_rows


def _entries_of(group: list[Any], unwritten: list[pa.Table]) -> list[Any]:
    """The entries of ``group`` whose rows are in the tables not written yet."""
    if not unwritten:
        return []
    column = "error_id" if "error_id" in unwritten[0].column_names else "prediction_id"
    ids = {i for table in unwritten for i in table.column(column).to_pylist()}
    return [e for e in group if e.ids and e.ids[0] in ids]


# -- table builders -------------------------------------------------------------------------


def build_predictions(entries: list[PredictionEntry]) -> pa.Table:
    """One table for the entries of one partition (inputs as one struct column)."""
    ids = [i for e in entries for i in e.ids]
    repeat = np.repeat
    counts = [e.rows for e in entries]
    columns: dict[str, Any] = {
        "prediction_id": _strings(ids),
        "ts": _fixed(_microseconds(repeat([e.at for e in entries], counts)), _TS),
        "deployment": _strings(repeat([e.deployment for e in entries], counts)),
        "revision": _fixed(
            [e.revision for e, n in zip(entries, counts, strict=True) for _ in range(n)],
            pa.int32(),
        ),
        "model": _strings(repeat([e.model for e in entries], counts)),
        "model_version": _fixed(repeat([e.version for e in entries], counts), pa.int32()),
        "role": _strings(repeat([e.role for e in entries], counts)),
        "latency_ms": _fixed(repeat([e.latency_ms for e in entries], counts), pa.float64()),
    }
    columns["prediction"] = _concat_outputs([e.outputs["predictions"] for e in entries])
    if any("proba" in e.outputs for e in entries):
        columns["proba"] = _lists([e.outputs.get("proba") for e in entries], counts, pa.float64())
    if any(e.feature_age_s is not None for e in entries):
        columns["feature_age_s"] = _fixed(
            [
                age
                for e, n in zip(entries, counts, strict=True)
                for age in (e.feature_age_s if e.feature_age_s is not None else [None] * n)
            ],
            pa.float64(),
        )
    table = _inputs_table(entries)
    if table is not None:
        columns["inputs"] = pa.StructArray.from_arrays(
            [c.combine_chunks() for c in table.columns], names=table.column_names
        )
    return pa.table(columns)


def _concat_outputs(parts: list[Any]) -> pa.Array:
    arrays = [np.asarray(p) for p in parts]
    if any(a.ndim != 1 for a in arrays):  # one list per row: (n, k) outputs, or (n, 1)
        return _lists(arrays, [len(a) for a in arrays], None)
    values = np.concatenate(arrays)
    if values.dtype.kind in "OU":
        return _strings([None if v is None else str(v) for v in values])
    return _numeric(values)


def _lists(parts: list[Any], counts: list[int], kind: pa.DataType | None) -> pa.Array:
    """One list per row from per-entry 2-D arrays (widths may differ; None: null rows)."""
    chunks: list[pa.Array] = []
    for part, n in zip(parts, counts, strict=True):
        if part is None:
            chunks.append(pa.nulls(n, pa.list_(kind or pa.float64())))
            continue
        array = np.asarray(part)
        flat = array.reshape(len(array), -1)
        offsets = _fixed(np.arange(len(flat) + 1) * flat.shape[1], pa.int32())
        values = _numeric(flat.ravel())
        if kind is not None:
            values = values.cast(kind)
        chunks.append(pa.ListArray.from_arrays(offsets, values))
    if len(chunks) == 1:
        return chunks[0]
    return pa.concat_arrays(chunks)


_TS = pa.timestamp("us", tz="UTC")

# Arrays are built from their buffers, not with ``pa.array``: that asks pyarrow's pandas shim
# whether its input is a pandas object, which imports pandas (about 46 MB) into a model server
# that serves arrays and never needed it.
_FIXED: dict[pa.DataType, type[np.generic]] = {
    pa.int16(): np.int16,
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.float32(): np.float32,
    pa.float64(): np.float64,
    _TS: np.int64,
}


def _validity(missing: np.ndarray) -> tuple[pa.Buffer | None, int]:
    """The validity bitmap of an array whose nulls are where ``missing`` is true."""
    nulls = int(missing.sum())
    if not nulls:
        return None, 0
    return pa.py_buffer(np.packbits(~missing, bitorder="little")), nulls


def _fixed(values: Any, kind: pa.DataType) -> pa.Array:
    """A fixed-width array of ``kind`` (one of ``_FIXED``) from numbers; None is null."""
    validity, nulls = None, 0
    if isinstance(values, list) and None in values:
        missing = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        values = [0 if v is None else v for v in values]
        validity, nulls = _validity(missing)
    array = np.ascontiguousarray(values, dtype=_FIXED[kind])
    narrowed = isinstance(values, np.ndarray) and values.dtype != array.dtype
    if narrowed and not np.array_equal(array, values):  # the cast lost values
        return pa.array(values, kind)  # which refuses them, naming the overflow
    return pa.Array.from_buffers(kind, len(array), [validity, pa.py_buffer(array)], nulls)


_KIND_OF: dict[np.dtype[Any], pa.DataType] = {
    np.dtype(numpy_type): kind for kind, numpy_type in _FIXED.items() if kind != _TS
}


def _numeric(values: np.ndarray) -> pa.Array:
    """The Arrow array of a 1-D NumPy array: from its bytes for numbers, else ``pa.array``."""
    kind = _KIND_OF.get(values.dtype)
    if kind is None:
        return pa.array(values)  # booleans, strings, objects: pyarrow converts them
    array = np.ascontiguousarray(values)
    return pa.Array.from_buffers(kind, len(array), [None, pa.py_buffer(array)])


def _strings(values: Any) -> pa.Array:
    """A string array from str values (None is null), as 32-bit offsets and UTF-8 bytes."""
    texts = values.tolist() if isinstance(values, np.ndarray) else list(values)
    count = len(texts)
    validity, nulls = None, 0
    if None in texts:
        missing = np.fromiter((v is None for v in texts), dtype=bool, count=count)
        validity, nulls = _validity(missing)
        texts = ["" if v is None else v for v in texts]
    try:
        joined = "".join(texts)
    except TypeError:  # not all str: written as their str()
        texts = [str(v) for v in texts]
        joined = "".join(texts)
    if joined.isascii():  # one byte per character: the lengths are the strings'
        data = joined.encode("ascii")
        lengths = np.fromiter(map(len, texts), np.int64, count)
    else:
        encoded = [v.encode() for v in texts]
        data = b"".join(encoded)
        lengths = np.fromiter(map(len, encoded), np.int64, count)
    if len(data) >= 2**31:
        return pa.array(list(values), pa.string())  # pyarrow splits or refuses it
    offsets = np.zeros(count + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:], dtype=np.int32)
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), count, buffers, nulls)


def _microseconds(seconds: Any) -> Any:
    """Epoch seconds (non-negative floats, from ``time.time()``) as whole microseconds, cut
    as pandas cuts them (``to_datetime`` then a cast to microseconds): the whole seconds and
    the fraction are scaled apart, the fraction to nanoseconds rounded at nine places, and
    the nanoseconds cut to micro."""
    values = np.asarray(seconds, dtype=np.float64)
    whole = np.floor(values)
    nanos = (np.round(values - whole, 9) * 1e9).astype(np.int64)
    return whole.astype(np.int64) * 1_000_000 + nanos // 1000


def _inputs_table(entries: list[PredictionEntry]) -> pa.Table | None:
    """The inputs of ``entries`` as one table, built without a DataFrame per request."""
    parts: list[pa.Table] = []
    run: list[PredictionEntry] = []

    def close_run() -> None:
        if run:
            array = np.concatenate([e.inputs for e in run]) if len(run) > 1 else run[0].inputs
            names = [str(c) for c in run[0].columns] or [f"x{j}" for j in range(array.shape[1])]
            columns = np.ascontiguousarray(array.T)  # one copy: each column's bytes in a row
            parts.append(pa.table({n: _numeric(columns[j]) for j, n in enumerate(names)}))
            run.clear()

    for e in entries:
        if isinstance(e.inputs, np.ndarray) and e.inputs.ndim == 2:
            if run and (run[0].columns != e.columns or run[0].inputs.shape[1] != e.inputs.shape[1]):
                close_run()
            run.append(e)
            continue
        close_run()
        pd = sys.modules.get("pandas")  # a DataFrame means pandas is loaded; else no need
        if pd is not None and isinstance(e.inputs, pd.DataFrame):
            frame = e.inputs.reset_index(drop=True)
            frame.columns = [str(c) for c in frame.columns]
            parts.append(pa.Table.from_pandas(frame, preserve_index=False))
    close_run()
    if not parts:
        return None
    # Entries of one partition may come from model versions with different inputs: columns
    # are aligned by name (missing ones are null).
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="permissive")


def build_feedback(entries: list[FeedbackEntry]) -> pa.Table:
    """The feedback of one partition: prediction id, label, time it arrived."""
    counts = [e.rows for e in entries]
    at = _microseconds(np.repeat([e.at for e in entries], counts))
    labels = [label for e in entries for label in e.labels]
    try:
        label_array = pa.array(labels)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        label_array = pa.array([None if v is None else str(v) for v in labels], pa.string())
    return pa.table(
        {
            "prediction_id": _strings([i for e in entries for i in e.ids]),
            "label": label_array,
            "ts": _fixed(at, _TS),
            "deployment": _strings(np.repeat([e.deployment for e in entries], counts)),
        }
    )


def build_failures(entries: list[FailureEntry]) -> pa.Table:
    """The failed requests of one partition, a row each."""
    return pa.table(
        {
            "error_id": _strings([e.error_id for e in entries]),
            "ts": _fixed(_microseconds([e.at for e in entries]), _TS),
            "deployment": _strings([e.deployment for e in entries]),
            "revision": _fixed([e.revision for e in entries], pa.int32()),
            "model": _strings([e.model for e in entries]),
            "model_version": _fixed([e.version for e in entries], pa.int32()),
            "role": _strings([e.role for e in entries]),
            "status": _fixed([e.status for e in entries], pa.int16()),
            "latency_ms": _fixed([e.latency_ms for e in entries], pa.float64()),
        }
    )


_BUILDERS: dict[str, Callable[[list[Any]], pa.Table]] = {
    "predictions": build_predictions,
    "feedback": build_feedback,
    "failures": build_failures,
}
