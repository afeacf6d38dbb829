"""Batch inference: stream a table through a model version in chunks, write Parquet, log it."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.core import ids
from conveyor.core.errors import InvalidArgumentError
from conveyor.data import tables
from conveyor.models.registry import VERSION_KIND
from conveyor.models.service import model_service
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace

__all__ = ["BatchPrediction", "predict_batch", "record_job"]

JOB_KIND = "batch_prediction"


@dataclass(frozen=True, slots=True)
class BatchPrediction:
    """What a batch job did: rows, time, where the output went, its lineage id."""

    id: str
    model: str
    rows: int
    seconds: float
    output: str | None
    input: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second),
            "output": self.output,
            "input": self.input,
        }


def _chunks(
    ws: Workspace, data: Any, chunk_rows: int
) -> tuple[Iterator[pd.DataFrame], int | None, str, tuple[ObjectRef, str] | None, pa.Schema]:
    """Return (chunks, total rows if known, a description of the input, for a dataset
    version its lineage node and reference, and the input's columns as an Arrow schema)."""
    if isinstance(data, pd.DataFrame):
        frame = data
        return (
            (frame.iloc[i : i + chunk_rows] for i in range(0, len(frame), chunk_rows)),
            len(frame),
            f"a DataFrame of {len(frame):,} rows",
            None,
            pa.Schema.from_pandas(frame.head(0), preserve_index=False),
        )
    if isinstance(data, pa.Table):
        return _chunks(ws, data.to_pandas(), chunk_rows)
    if not isinstance(data, str | os.PathLike):
        raise InvalidArgumentError(
            f"Cannot predict on a {type(data).__name__}: give a DataFrame, an Arrow table, a "
            "Parquet file or folder, or a dataset reference NAME@VERSION."
        )
    text = str(data)
    path = Path(text)
    lineage: tuple[ObjectRef, str] | None = None
    if not path.exists() and "@" in text:
        from conveyor.data.service import data_service

        svc = data_service(ws)
        version = svc.get(text)
        path = Path(svc.path(text))
        lineage = (ObjectRef("dataset_version", version.id), version.ref)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
        if not files:  # a folder (or a dataset version) of CSV or JSON lines files
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.name[0] != ".")
    elif path.is_file():
        files = [path]
    else:
        raise InvalidArgumentError(
            f"No file, folder or dataset named {text!r}.",
            hint="Give a Parquet file, a folder of Parquet files, or NAME@VERSION of a dataset.",
        )
    fmt = tables.table_format_of([f.name for f in files])
    if fmt is None and path.is_file():
        fmt = "parquet"  # one file named otherwise (rows.snappy): Parquet, as before
    if fmt is None:
        raise InvalidArgumentError(
            f"{text!r} holds no table files "
            f"(one of {', '.join(sorted(set(tables.TABLE_FORMATS.values())))}, in one format).",
            hint="Give a Parquet file, a folder of Parquet files, or NAME@VERSION of a dataset.",
        )
    if fmt != "parquet":  # read whole: these formats have no row groups to stream
        chunks, total, _, _, schema = _chunks(
            ws, tables.read_table(fmt, files).to_pandas(), chunk_rows
        )
        return chunks, total, text, lineage, schema
    try:
        parquet = [pq.ParquetFile(f) for f in files]
    except (pa.ArrowInvalid, OSError) as e:
        raise InvalidArgumentError(f"{text!r} is not a readable Parquet file: {e}") from None
    total = sum(p.metadata.num_rows for p in parquet)

    def stream() -> Iterator[pd.DataFrame]:
        for pf in parquet:
            for batch in pf.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()

    return stream(), total, text, lineage, parquet[0].schema_arrow


def _check_can_record(ws: Workspace) -> None:
    """Through a team server the job is recorded as an edit: refuse a viewer before the
    predictions, not after them."""
    from conveyor.core.errors import PermissionDeniedError
    from conveyor.store.client import API
    from conveyor.store.principal import role_rank

    assert ws.remote is not None
    me = ws.remote.get_json(f"{API}/whoami")
    role = me.get("roles", {}).get(ws.settings.project) or ("admin" if me.get("admin") else None)
    if role is None or role_rank(role) < role_rank("editor"):
        raise PermissionDeniedError(
            f"{me.get('user')!r} may not run a batch prediction in project "
            f"{ws.settings.project!r}: recording it needs the editor role; holds {role or 'none'}.",
            hint="Ask a project admin: conveyor users grant USER editor --project PROJECT.",
        )


def record_job(
    ws: Workspace,
    job_id: str,
    version: Any,
    described: str,
    output: str | None,
    rows: int,
    dataset: ObjectRef | None,
) -> None:
    """Record a batch prediction: its audit event, and the lineage of the model version (and
    the dataset version it read) into the job."""
    job_ref = ObjectRef(JOB_KIND, job_id)
    with ws.metadata.transaction(project_id=str(ws.project.id)) as uow:
        uow.audit(
            "batch_prediction.run",
            job_ref,
            after={"model": version.ref, "input": described, "output": output, "rows": rows},
        )
        uow.link(ObjectRef(VERSION_KIND, version.id), job_ref, "used_by")
        if dataset is not None:
            uow.link(dataset, job_ref, "used_by")


def _conform(table: pa.Table, schema: pa.Schema, row: int) -> pa.Table:
    """``table`` cast to the output's schema; a chunk that cannot be is a clear error."""
    if table.schema.equals(schema):
        return table
    try:
        return table.select(schema.names).cast(schema)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise InvalidArgumentError(
            f"The input's columns change type after row {row:,} ({e}); the output is one "
            "table, so nothing was written.",
            hint="Give every file the same schema, or cast the column before predicting.",
        ) from e


def _predict_chunk(loaded: Any, chunk: pd.DataFrame, proba: bool) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    outputs = {"predictions": np.asarray(loaded.predict(chunk))}
    if proba:
        outputs["proba"] = np.asarray(loaded.predict_proba(chunk))
    return outputs, time.perf_counter() - started


def _predicted(
    loaded: Any, chunks: Iterator[pd.DataFrame], proba: bool, executor: str
) -> Iterator[tuple[pd.DataFrame, dict[str, Any], float]]:
    """Yield (chunk, outputs, seconds) in input order, locally or as Ray tasks."""
    if executor == "local":
        for chunk in chunks:
            outputs, seconds = _predict_chunk(loaded, chunk, proba)
            yield chunk, outputs, seconds
        return
    if executor != "ray" and not executor.startswith("ray://"):
        raise InvalidArgumentError(
            f"Unknown executor {executor!r}.",
            hint="Use 'local' (this process) or 'ray' / 'ray://host:port'.",
        )
    from conveyor.pipelines.executors import connect_ray

    address = executor if executor.startswith("ray://") else os.environ.get("CONVEYOR_RAY_ADDRESS")
    ray = connect_ray(address)
    remote = ray.remote(max_retries=1)(_predict_chunk)
    model_ref = ray.put(loaded)  # shipped to the cluster once, not per chunk
    # As many chunks in flight as the cluster has CPUs, at most 8: memory stays bounded.
    window = min(8, max(2, int(ray.cluster_resources().get("CPU", 2))))
    pending: deque[tuple[pd.DataFrame, Any]] = deque()
    for chunk in chunks:
        pending.append((chunk, remote.remote(model_ref, chunk, proba)))
        if len(pending) >= window:
            first, ref = pending.popleft()
            outputs, seconds = ray.get(ref)
            yield first, outputs, seconds
    while pending:
        first, ref = pending.popleft()
        outputs, seconds = ray.get(ref)
        yield first, outputs, seconds


def predict_batch(
    ws: Workspace,
    ref: str,
    data: Any,
    *,
    output: str | os.PathLike[str] | None = None,
    chunk_rows: int = 100_000,
    proba: bool = False,
    log_predictions: bool = True,
    trust: bool = False,
    executor: str = "local",
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[BatchPrediction, pd.DataFrame | None]:
    """Predict every row of ``data`` with ``ref``; write ``output`` or return the predictions.

    Each chunk is checked against the model's signature; predictions get ids and go to the
    prediction log (deployment ``<model>-batch``) like online ones, for monitoring.
    ``executor="ray"`` (or ``ray://host:port``) predicts the chunks as Ray tasks, a few at a
    time, while this process reads the next chunks and writes the results in order.
    """
    if chunk_rows < 1:
        raise InvalidArgumentError(f"chunk_rows must be at least 1; got {chunk_rows}.")
    from conveyor.serving.predlog import ParquetLog, PredictionEntry

    if ws.remote is not None:
        _check_can_record(ws)

    models = model_service(ws)
    loaded = models.load(ref, trust=trust)
    version = loaded.version
    chunks, total, described, input_ref, input_schema = _chunks(ws, data, chunk_rows)
    if log_predictions:
        from conveyor.serving import log_uri

        sink: ParquetLog | None = ParquetLog(log_uri(ws), "predictions")
    else:
        sink = None
    writer: pq.ParquetWriter | None = None
    target = Path(output) if output is not None else None
    if target is not None and target.is_dir():
        raise InvalidArgumentError(
            f"The output {target} is a folder; give a file to write (.parquet).",
            hint="Name a file inside it, such as predictions.parquet.",
        )
    temp = target.with_name(f".{target.name}.tmp") if target is not None else None
    collected: list[pd.DataFrame] = []
    done = 0
    job_id = ids.new_id()
    started = time.perf_counter()
    try:
        for chunk, outputs, seconds in _predicted(loaded, chunks, proba, executor):
            predictions = np.asarray(outputs["predictions"])
            if len(predictions) != len(chunk):
                raise InvalidArgumentError(
                    f"{version.ref} returned {len(predictions)} predictions for "
                    f"{len(chunk)} rows; nothing was written."
                )
            out = pd.DataFrame(
                {
                    "prediction_id": [f"{job_id}-{done + i}" for i in range(len(chunk))],
                    "prediction": list(predictions) if predictions.ndim > 1 else predictions,
                }
            )
            if "proba" in outputs:
                probabilities = outputs["proba"]
                for j in range(probabilities.shape[1]):
                    out[f"proba_{j}"] = probabilities[:, j]
            clash = [c for c in out.columns if c in chunk.columns]
            if temp is not None and clash:  # before anything is logged or written
                raise InvalidArgumentError(
                    f"The input has a column {', '.join(map(repr, clash))}, which the output "
                    "adds next to the input's columns; nothing was written.",
                    hint="Rename or drop that column of the input.",
                )
            if sink is not None:
                columns = loaded.signature.columns if loaded.signature else list(chunk.columns)
                sink.add(  # a batch job waits for the log rather than drop its rows
                    wait=600.0,
                    entry=PredictionEntry(
                        at=time.time(),
                        deployment=f"{version.name}-batch",
                        revision=None,
                        model=version.name,
                        version=version.version,
                        role="batch",
                        ids=out["prediction_id"].tolist(),
                        inputs=chunk[columns].reset_index(drop=True),
                        columns=columns,
                        outputs=outputs,
                        latency_ms=seconds * 1000,
                    ),
                )
            if temp is not None:
                table = pa.Table.from_pandas(
                    pd.concat([chunk.reset_index(drop=True), out], axis=1), preserve_index=False
                )
                if writer is None:
                    temp.parent.mkdir(parents=True, exist_ok=True)
                    writer = pq.ParquetWriter(temp, table.schema, compression="zstd")
                writer.write_table(_conform(table, writer.schema, done))
            else:
                collected.append(out)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        if temp is not None and writer is None:  # no rows: the file still says so
            temp.parent.mkdir(parents=True, exist_ok=True)
            empty = input_schema.empty_table()
            empty = empty.append_column("prediction_id", pa.array([], pa.string()))
            empty = empty.append_column("prediction", pa.array([]))
            pq.write_table(empty, temp)
        if writer is not None:
            writer.close()
            writer = None
        if temp is not None:
            assert target is not None
            temp.replace(target)
    finally:
        if writer is not None:
            writer.close()
        if temp is not None and temp.exists():
            temp.unlink()
        if sink is not None:
            sink.close()
    seconds = time.perf_counter() - started
    output_text = str(target) if target else None
    if ws.remote is not None:  # the server records it, as the caller
        body = {
            "id": job_id,
            "model": version.ref,
            "dataset": input_ref[1] if input_ref else None,
            "input": described[:2000],
            "output": output_text[:2000] if output_text else None,
            "rows": done,
        }
        ws.remote.send_json(
            "POST", ws.remote.project_path(ws.settings.project, "batch-predictions"), body
        )
    else:
        record_job(
            ws, job_id, version, described, output_text, done, input_ref[0] if input_ref else None
        )
    result = BatchPrediction(
        job_id, version.ref, done, seconds, str(target) if target else None, described
    )
    frame = pd.concat(collected, ignore_index=True) if collected else None
    if target is None and frame is None:
        frame = pd.DataFrame({"prediction_id": [], "prediction": []})
    return result, frame
