"""Where prediction and feedback logs live, and how to read a time window of them.

Model servers write (``conveyor.serving``), monitoring reads (``conveyor.monitoring``); the
layout is theirs in common, so it lives here, below both:

    {log_uri}/{kind}/deployment={name}/date=YYYY-MM-DD/hour=HH/part-*.parquet

where ``log_uri`` is a workspace's :attr:`~conveyor.store.workspace.Workspace.log_uri`: the
``log_uri`` setting's ``project=NAME`` folder, so projects never share a deployment's log.

``kind`` is ``predictions``, ``feedback`` or ``failures`` (requests a server refused or
could not answer: status, model version, latency, never the inputs). Files whose names start
with ``.`` are being written and are never read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor.core.errors import InvalidArgumentError
from conveyor.core.parquet import read_parquet
from conveyor.core.uris import redact_uri

__all__ = ["KINDS", "log_files", "log_filesystem", "partition_folder", "read_log", "write_rows"]

KINDS = ("predictions", "feedback", "failures")


def log_filesystem(uri: str) -> tuple[Any, str]:
    """The fsspec filesystem and root path of the prediction log at ``uri``, or a clear
    error naming the setting when fsspec does not know the scheme or lacks its package."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(uri.rstrip("/"))
    except ValueError as e:  # "Protocol not known: foo"
        raise InvalidArgumentError(
            f"The prediction log URI {redact_uri(uri)!r} has a scheme no filesystem handles ({e}).",
            hint="Set log_uri (CONVEYOR_LOG_URI) to a folder, or to a file://, s3://, gs:// "
            "or az:// URI.",
        ) from None
    except ImportError as e:
        raise InvalidArgumentError(
            f"The prediction log URI {redact_uri(uri)!r} needs a package that is not "
            f"installed ({e}).",
            hint="For s3:// install conveyor-mlops[s3]; for gs:// gcsfs; for az:// adlfs.",
        ) from None


def _utc(moment: datetime) -> datetime:
    """Naive date-times are taken as UTC (the log's time zone), not the host's local time."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def partition_folder(root: str, kind: str, deployment: str, at: datetime) -> str:
    """The folder that holds ``kind`` rows of ``deployment`` written in ``at``'s hour (UTC)."""
    at = _utc(at)
    return f"{root}/{kind}/deployment={deployment}/date={at:%Y-%m-%d}/hour={at:%H}"


def log_files(
    uri: str,
    kind: str = "predictions",
    *,
    deployment: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[Any, list[str]]:
    """The filesystem and the log files of ``deployment`` (all when None) in [start, end).

    With a window, only the hour partitions that overlap it are listed (a file may still
    hold rows just outside the window: filter rows by ``ts``).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    fs, root = log_filesystem(uri)
    start = _utc(start) if start is not None else None
    end = _utc(end) if end is not None else None
    if start is None or end is None or deployment is None:
        base = f"{root}/{kind}" + (f"/deployment={deployment}" if deployment else "")
        found = fs.glob(f"{base}/**/*.parquet") if fs.exists(base) else []
    else:
        found = []
        hour = start.replace(minute=0, second=0, microsecond=0)
        while hour < end:
            folder = partition_folder(root, kind, deployment, hour)
            if fs.exists(folder):
                found += [p for p in fs.ls(folder, detail=False) if p.endswith(".parquet")]
            hour += timedelta(hours=1)
    return fs, sorted(p for p in found if not p.rsplit("/", 1)[-1].startswith("."))


def read_log(
    uri: str,
    kind: str = "predictions",
    *,
    deployment: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    columns: list[str] | None = None,
    inputs: list[str] | None = None,
) -> Any:
    """Rows of a log as a DataFrame, inputs flattened as ``inputs.<column>``.

    ``start`` / ``end`` keep rows with ``start <= ts < end``; ``columns`` reads only those
    top-level columns (``inputs`` reads every input); ``inputs`` reads only those inputs (the
    other inputs' data is not read from the files).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    start = _utc(start) if start is not None else None
    end = _utc(end) if end is not None else None
    fs, files = log_files(uri, kind, deployment=deployment, start=start, end=end)
    if columns is not None and (start is not None or end is not None) and "ts" not in columns:
        columns = [*columns, "ts"]
    if not files:
        return pd.DataFrame()
    tables = []
    for path in files:
        with fs.open(path, "rb") as f:
            schema = pq.ParquetFile(f).schema_arrow
            wanted = _projection(schema, columns, inputs)
            f.seek(0)
            table = read_parquet(f, columns=wanted)
        if wanted is not None and any("." in c for c in wanted):
            table = _inputs_flat(table).select(wanted)  # as asked; a file lacking one lacks it
        if start is not None and "ts" in table.column_names:
            table = table.filter(pc.greater_equal(table["ts"], pa.scalar(start, table["ts"].type)))
        if end is not None and "ts" in table.column_names:
            table = table.filter(pc.less(table["ts"], pa.scalar(end, table["ts"].type)))
        tables.append(table)
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # files of model versions that disagree
        return pd.concat([t.flatten().to_pandas() for t in tables], ignore_index=True)
    return table.flatten().to_pandas()


class LogInputs:
    """The logged inputs of a window, read one column at a time: ``frame[name]`` reads that
    input's values from every file (only its pages), ``len(frame)`` is the number of rows,
    ``frame.columns`` the inputs logged. Memory holds one column and the row masks, however
    wide the log. Rows whose ``role`` is in ``skip_roles`` (shadow copies) are left out."""

    def __init__(
        self,
        uri: str,
        kind: str,
        *,
        deployment: str | None,
        start: datetime | None,
        end: datetime | None,
        skip_roles: tuple[str, ...] = ("shadow",),
    ) -> None:
        import numpy as np
        import pyarrow.parquet as pq

        self._fs, files = log_files(uri, kind, deployment=deployment, start=start, end=end)
        self._parts: list[tuple[str, Any, list[str]]] = []  # path, row mask, its inputs
        names: dict[str, None] = {}
        for path in files:
            with self._fs.open(path, "rb") as f:
                schema = pq.ParquetFile(f).schema_arrow
                fields = (
                    [x.name for x in schema.field("inputs").type]
                    if "inputs" in schema.names
                    else []
                )
                f.seek(0)
                meta = read_parquet(f, columns=[c for c in ("ts", "role") if c in schema.names])
            keep = np.ones(meta.num_rows, dtype=bool)
            if "ts" in meta.column_names:
                ts = meta.column("ts").to_numpy()
                if start is not None:
                    keep &= ts >= np.datetime64(_utc(start).replace(tzinfo=None), "us")
                if end is not None:
                    keep &= ts < np.datetime64(_utc(end).replace(tzinfo=None), "us")
            if "role" in meta.column_names:
                roles = meta.column("role").to_numpy(zero_copy_only=False)
                keep &= ~np.isin(roles, list(skip_roles))
            if keep.any():
                self._parts.append((path, keep, fields))
                names.update(dict.fromkeys(fields))
        self.columns = list(names)
        self._rows = int(sum(int(keep.sum()) for _, keep, _ in self._parts))

    def __len__(self) -> int:
        return self._rows

    def __getitem__(self, name: str) -> Any:
        import pandas as pd
        import pyarrow as pa

        if name not in self.columns:
            raise KeyError(name)
        chunks: list[Any] = []
        for path, keep, fields in self._parts:
            if name not in fields:  # a file of a model version that did not log it
                chunks.append(int(keep.sum()))
                continue
            with self._fs.open(path, "rb") as f:
                column = _inputs_flat(read_parquet(f, columns=[f"inputs.{name}"])).column(0)
            chunks.append(column.filter(pa.array(keep)).combine_chunks())
        typed = next(c.type for c in chunks if not isinstance(c, int))
        arrays = [pa.nulls(c, typed) if isinstance(c, int) else c for c in chunks]
        try:
            values = pa.chunked_array(arrays, typed).to_pandas()
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # versions that logged other types
            values = pd.concat([pd.Series(a.to_pandas()) for a in arrays], ignore_index=True)
        return pd.Series(values, name=name).reset_index(drop=True)


def _inputs_flat(table: Any) -> Any:
    """``table`` with its ``inputs`` struct as one ``inputs.<name>`` column per field."""
    import pyarrow as pa

    if "inputs" not in table.column_names:
        return table
    i = table.column_names.index("inputs")
    struct = table.column(i).combine_chunks()
    columns = [*table.columns[:i], *struct.flatten(), *table.columns[i + 1 :]]
    names = [
        *table.column_names[:i],
        *(f"inputs.{f.name}" for f in struct.type),
        *table.column_names[i + 1 :],
    ]
    return pa.table(columns, names=names)


def _projection(schema: Any, columns: list[str] | None, inputs: list[str] | None) -> Any:
    """The columns to read from a file with ``schema``: ``columns`` (top-level names) or all,
    with the ``inputs`` struct narrowed to the fields ``inputs`` names (as ``inputs.<name>``,
    which pyarrow reads alone)."""
    if inputs is None:
        return None if columns is None else [c for c in columns if c in schema.names]
    wanted = []
    for name in columns if columns is not None else schema.names:
        if name not in schema.names:
            continue
        if name != "inputs":
            wanted.append(name)
            continue
        fields = {f.name for f in schema.field("inputs").type}
        wanted.extend(f"inputs.{c}" for c in inputs if c in fields)
    return wanted


def write_rows(uri: str, kind: str, deployment: str, table: Any, *, at: datetime) -> str:
    """Write ``table`` (Arrow) as one whole file in ``at``'s partition; return its path.

    Temp-then-rename on local disks, one PUT on object stores: readers never see half a file.
    """
    import os

    import pyarrow.parquet as pq

    fs, root = log_filesystem(uri)
    folder = partition_folder(root, kind, deployment, at)
    name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{os.urandom(4).hex()}.parquet"
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocol or "local" in protocol:
        os.makedirs(folder, exist_ok=True)
        temp = f"{folder}/.{name}.tmp"
        pq.write_table(table, temp, compression="lz4")
        os.replace(temp, f"{folder}/{name}")
    else:
        fs.makedirs(folder, exist_ok=True)
        with fs.open(f"{folder}/{name}", "wb") as out:
            pq.write_table(table, out, compression="lz4")
    return f"{folder}/{name}"
