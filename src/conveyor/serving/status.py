"""Live figures of a deployment, read from its prediction log (the last hour)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor.core.parquet import read_parquet
from conveyor.store.logs import log_files

__all__ = ["live_figures"]


def live_figures(
    log_uri: str, deployment: str, *, window: timedelta = timedelta(hours=1)
) -> dict[str, dict[str, Any]]:
    """Per model version: predictions logged in ``window``, p50 and p99 latency (ms)."""
    import duckdb
    import pyarrow as pa

    now = datetime.now(UTC)
    since = now - window
    fs, files = log_files(log_uri, "predictions", deployment=deployment, start=since, end=now)
    if not files:
        return {}
    tables = []
    for path in files:
        with fs.open(path, "rb") as f:
            tables.append(read_parquet(f, columns=["model", "model_version", "latency_ms", "ts"]))
    log_rows = pa.concat_tables(tables)  # noqa: F841 - DuckDB reads it by name
    rows = (
        duckdb.connect()
        .execute(
            """
            SELECT model || '/' || model_version AS ref, count(*) AS n,
                   quantile_cont(latency_ms, 0.5), quantile_cont(latency_ms, 0.99)
            FROM log_rows WHERE ts >= ? GROUP BY 1 ORDER BY 1
            """,
            [since],
        )
        .fetchall()
    )
    return {ref: {"rows": n, "p50_ms": p50, "p99_ms": p99} for ref, n, p50, p99 in rows}
