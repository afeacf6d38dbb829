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
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["FeedbackEntry", "ParquetLog", "PredictionEntry", "read_log"]

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
        import fsspec

        self.uri = uri.rstrip("/")
        self.kind = kind
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_buffer_rows = max_buffer_rows
        self._build = build or (build_predictions if kind == "predictions" else build_feedback)
        self._fs, self._root = fsspec.core.url_to_fs(self.uri)
        self._local = "file" in (
            self._fs.protocol if isinstance(self._fs.protocol, tuple) else (self._fs.protocol,)
        )
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
        self._thread = threading.Thread(target=self._loop, name=f"conveyor-{kind}-log", daemon=True)
        self._thread.start()

    @property
    def buffered_rows(self) -> int:
        return self._buffered_rows

    def add(self, entry: Any) -> bool:
        """Buffer ``entry``; False (and counted as dropped) when the buffer is full."""
        rows = entry.rows
        with self._lock:
            if self._buffered_rows + rows > self.max_buffer_rows:
                self.dropped_rows += rows
                return False
            self._buffer.append(entry)
            self._buffered_rows += rows
            full = self._buffered_rows >= self.flush_rows
        if full:
            self._wake.set()
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write what is buffered now; return the rows written (0 when the sink failed)."""
        with self._lock:
            entries, self._buffer = self._buffer, []
            rows = self._buffered_rows
            self._buffered_rows = 0
        if not entries:
            return 0
        try:
            self._write(entries)
        except Exception as e:  # noqa: BLE001 - the sink may fail in any way; keep serving
            self.failed_writes += 1
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning(
                "Cannot write the %s log to %s (%s); keeping it buffered",
                self.kind,
                self.uri,
                self.last_error,
            )
            with self._lock:
                # Put the entries back in front, as far as the bound allows.
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
            return 0
        self.logged_rows += rows
        return rows

    def _write(self, entries: list[Any]) -> None:
        groups: dict[tuple[str, str, str], list[Any]] = {}
        for entry in entries:
            at = datetime.fromtimestamp(entry.at, UTC)
            key = (entry.deployment, at.strftime("%Y-%m-%d"), at.strftime("%H"))
            groups.setdefault(key, []).append(entry)
        for (deployment, date, hour), group in groups.items():
            table = self._build(group)
            folder = f"{self._root}/{self.kind}/deployment={deployment}/date={date}/hour={hour}"
            name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{next(_seq)}.parquet"
            self._put(folder, name, table)
            self.files_written += 1

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


# -- table builders -------------------------------------------------------------------------


def build_predictions(entries: list[PredictionEntry]) -> pa.Table:
    """One table for the entries of one partition (inputs as one struct column)."""
    ids = [i for e in entries for i in e.ids]
    repeat = np.repeat
    counts = [e.rows for e in entries]
    at = pd.to_datetime(repeat([e.at for e in entries], counts), unit="s", utc=True)
    columns: dict[str, Any] = {
        "prediction_id": pa.array(ids, pa.string()),
        "ts": pa.array(at.astype("datetime64[us, UTC]"), pa.timestamp("us", tz="UTC")),
        "deployment": pa.array(repeat([e.deployment for e in entries], counts), pa.string()),
        "revision": pa.array(
            [e.revision for e, n in zip(entries, counts, strict=True) for _ in range(n)],
            pa.int32(),
        ),
        "model": pa.array(repeat([e.model for e in entries], counts), pa.string()),
        "model_version": pa.array(repeat([e.version for e in entries], counts), pa.int32()),
        "role": pa.array(repeat([e.role for e in entries], counts), pa.string()),
        "latency_ms": pa.array(repeat([e.latency_ms for e in entries], counts), pa.float64()),
    }
    columns["prediction"] = _concat_outputs([e.outputs["predictions"] for e in entries])
    if all("proba" in e.outputs for e in entries):
        proba = np.concatenate([np.asarray(e.outputs["proba"], dtype=np.float64) for e in entries])
        columns["proba"] = pa.FixedSizeListArray.from_arrays(proba.ravel(), proba.shape[1])
    table = _inputs_table(entries)
    if table is not None:
        columns["inputs"] = pa.StructArray.from_arrays(
            [c.combine_chunks() for c in table.columns], names=table.column_names
        )
    return pa.table(columns)


def _concat_outputs(parts: list[Any]) -> pa.Array:
    values = np.concatenate([np.asarray(p) for p in parts])
    if values.dtype.kind in "OU":
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.array(values)


def _inputs_table(entries: list[PredictionEntry]) -> pa.Table | None:
    """The inputs of ``entries`` as one table, built without a DataFrame per request."""
    parts: list[pa.Table] = []
    run: list[PredictionEntry] = []

    def close_run() -> None:
        if run:
            array = np.concatenate([e.inputs for e in run]) if len(run) > 1 else run[0].inputs
            names = [str(c) for c in run[0].columns] or [f"x{j}" for j in range(array.shape[1])]
            parts.append(pa.table({n: array[:, j] for j, n in enumerate(names)}))
            run.clear()

    for e in entries:
        if isinstance(e.inputs, np.ndarray) and e.inputs.ndim == 2:
            if run and (run[0].columns != e.columns or run[0].inputs.shape[1] != e.inputs.shape[1]):
                close_run()
            run.append(e)
            continue
        close_run()
        if isinstance(e.inputs, pd.DataFrame):
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
    at = pd.to_datetime(np.repeat([e.at for e in entries], counts), unit="s", utc=True)
    labels = [label for e in entries for label in e.labels]
    try:
        label_array = pa.array(labels)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        label_array = pa.array([None if v is None else str(v) for v in labels], pa.string())
    return pa.table(
        {
            "prediction_id": pa.array([i for e in entries for i in e.ids], pa.string()),
            "label": label_array,
            "ts": pa.array(at.astype("datetime64[us, UTC]"), pa.timestamp("us", tz="UTC")),
            "deployment": pa.array(np.repeat([e.deployment for e in entries], counts), pa.string()),
        }
    )


def read_log(uri: str, kind: str = "predictions", *, deployment: str | None = None) -> pd.DataFrame:
    """Return every row of a log (``predictions`` or ``feedback``) as a DataFrame.

    ``inputs`` come flattened as ``inputs.<column>`` columns.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri.rstrip("/"))
    base = f"{root}/{kind}" + (f"/deployment={deployment}" if deployment else "")
    files = sorted(
        p for p in fs.glob(f"{base}/**/*.parquet") if not p.rsplit("/", 1)[-1].startswith(".")
    )
    if not files:
        return pd.DataFrame()
    tables = []
    for path in files:
        with fs.open(path, "rb") as f:
            tables.append(pq.read_table(f))
    table = pa.concat_tables(tables, promote_options="permissive")
    return table.flatten().to_pandas()
