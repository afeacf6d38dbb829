"""Feature sources larger than the memory DuckDB may use stream through the point-in-time
join and the materialization query (DuckDB spills the rest), and the answers stay right.

DuckDB enforces ``query_memory_limit``: a query that needed the whole source in memory would
fail with an out-of-memory error here instead of passing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import conveyor as cv
from conveyor.core.errors import ConveyorError
from conveyor.features import Entity, FeatureView, Field, ParquetSource

LIMIT_BYTES = 100 * 2**20
ROWS = 1_600_000  # x 12 eight-byte columns: about 150 MiB of values, over the limit
ENTITIES = 100_000
FEATURES = [f"f{i}" for i in range(10)]
DAY_US = 86_400 * 10**6
START = np.datetime64("2026-01-01T00:00:00", "us")


def write_source(folder: Path, rng: np.random.Generator) -> int:
    """Four Parquet files of feature rows; returns their bytes of values uncompressed."""
    folder.mkdir()
    size = 0
    for part in range(4):
        n = ROWS // 4
        event = START + rng.integers(0, 30 * DAY_US, n).astype("timedelta64[us]")
        columns = {
            "customer_id": rng.integers(0, ENTITIES, n),
            "event_ts": event,
            "created_ts": event + rng.integers(0, 3 * DAY_US, n).astype("timedelta64[us]"),
            **{f: rng.random(n) for f in FEATURES},
        }
        path = folder / f"part-{part}.parquet"
        pq.write_table(pa.table(columns), path, row_group_size=64_000)
        meta = pq.ParquetFile(path).metadata
        size += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return size


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    root = tmp_path_factory.mktemp("bounded")
    rng = np.random.default_rng(7)
    size = write_source(root / "activity", rng)
    assert size > LIMIT_BYTES  # the source does not fit in what DuckDB may use
    (root / "conveyor.toml").write_text(
        f'project = "bounded"\nquery_memory_limit = "{LIMIT_BYTES // 2**20}MiB"\n'
    )
    source = pq.read_table(root / "activity").to_pandas()
    entities = pd.DataFrame(
        {
            "customer_id": rng.integers(0, ENTITIES + 5_000, 20_000),  # some unknown ones
            "event_timestamp": START
            + rng.integers(0, 32 * DAY_US, 20_000).astype("timedelta64[us]"),
        }
    )
    return root, source, entities


def views(created: bool) -> list[object]:
    customer = Entity("customer", key="customer_id")
    view = FeatureView(
        name="activity_created" if created else "activity",
        entities=[customer],
        source=ParquetSource(
            "activity/*.parquet",
            timestamp="event_ts",
            created_timestamp="created_ts" if created else None,
        ),
        features=[Field(f, "float64") for f in FEATURES],
        ttl="7d",
    )
    return [customer, view]


def expected(source: pd.DataFrame, entities: pd.DataFrame, created: bool) -> pd.Series:
    """The latest f0 per entity row, by pandas: rows of the key at or before the row's time,
    within 7 days, and (with created) recorded by then."""
    pairs = entities.reset_index(names="row").merge(source, on="customer_id", how="inner")
    t = pairs["event_timestamp"]
    keep = (pairs["event_ts"] <= t) & (pairs["event_ts"] >= t - pd.Timedelta(days=7))
    if created:
        keep &= pairs["created_ts"] <= t
    pairs = pairs[keep].sort_values(["row", "event_ts", "created_ts"])
    latest = pairs.groupby("row").tail(1).set_index("row")["f0"]
    return latest.reindex(range(len(entities)))


@pytest.mark.parametrize("created", [False, True], ids=["asof", "created-time"])
def test_historical_streams_a_source_larger_than_the_memory_limit(project, created: bool):
    root, source, entities = project
    cv.init(root)
    cv.features.apply(views(created))
    name = "activity_created" if created else "activity"
    out = cv.features.historical(entities, [f"{name}:f0", f"{name}:f9"])
    assert len(out) == len(entities)
    want = expected(source, entities, created)
    np.testing.assert_array_equal(out["f0"].to_numpy(dtype=float), want.to_numpy(dtype=float))


def test_materialize_streams_a_source_larger_than_the_memory_limit(project):
    root, source, _ = project
    cv.init(root)
    cv.features.apply(views(False))
    end = pd.Timestamp(START + 31 * DAY_US, tz="UTC").to_pydatetime()
    done = cv.features.materialize(["activity"], end=end)
    fresh = source[source["event_ts"] >= pd.Timestamp(START + 24 * DAY_US)]
    latest = fresh.sort_values("event_ts").groupby("customer_id").tail(1).set_index("customer_id")
    assert done[0].rows == len(latest)
    keys = latest.index[:500].tolist()
    online = cv.features.online({"customer_id": keys}, ["activity:f3"])
    assert online["f3"] == latest["f3"].iloc[:500].tolist()


def test_too_little_memory_is_named_with_the_setting_to_raise(project, monkeypatch):
    root, _, entities = project
    monkeypatch.setenv("CONVEYOR_QUERY_MEMORY_LIMIT", "8MiB")
    cv.init(root)
    cv.features.apply(views(False))
    with pytest.raises(ConveyorError, match="needed more memory than DuckDB may use") as e:
        cv.features.historical(entities, ["activity:f0"])
    assert "query_memory_limit" in (e.value.hint or "")
