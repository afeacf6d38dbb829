"""`conveyor features` as a user runs it: apply a definitions file, train, materialize, read."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.cli_process import conveyor
from tests.e2e.conftest import remote_users

DEFINITIONS = """
from conveyor.features import Entity, FeatureView, Field, ParquetSource

customer = Entity("customer", key="customer_id")
activity = FeatureView(
    name="activity",
    entities=[customer],
    source=ParquetSource("rows.parquet"),
    features=[Field("spend", "float64")],
    ttl="7d",
)
"""


OVER_A_DATASET = DEFINITIONS.replace("ParquetSource", "DatasetSource").replace(
    '"rows.parquet"', '"rows@latest"'
)


@pytest.fixture(params=["embedded", "remote"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The project in ./.conveyor (embedded), or on a team server as an editor (remote)."""
    if request.param == "embedded":
        assert conveyor(tmp_path, "init").returncode == 0
        return {}
    users = remote_users(request.getfixturevalue("team_server"), "feat", {"fay": "editor"})
    return users["fay"]


def test_apply_historical_materialize_online(tmp_path: Path, settings: dict[str, str]) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return conveyor(tmp_path, *args, env=settings)

    day = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3)]
    pd.DataFrame({"customer_id": [1, 1, 2], "event_ts": day, "spend": [1.0, 2.0, 3.0]}).to_parquet(
        tmp_path / "rows.parquet"
    )
    pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [day[0], day[2]]}).to_parquet(
        tmp_path / "entities.parquet"
    )
    (tmp_path / "defs.py").write_text(OVER_A_DATASET)
    assert run("data", "add", "rows", "rows.parquet").returncode == 0

    applied = run("features", "apply", "defs.py")
    assert applied.returncode == 0, applied.stderr
    assert "activity v1 (new version)" in applied.stdout
    assert "unchanged" in run("features", "apply", "defs.py").stdout

    listed = json.loads(run("features", "list", "--json").stdout)
    assert [v["name"] for v in listed] == ["activity"]

    hist = run("features", "historical", "entities.parquet", "-f", "spend", "-o", "train.parquet")
    assert hist.returncode == 0, hist.stderr
    assert pd.read_parquet(tmp_path / "train.parquet")["spend"].tolist() == [1.0, 3.0]
    (tmp_path / "mixed.csv").write_text(  # a date alone, and a time with its offset
        "customer_id,event_timestamp\n1,2026-01-01T05:00:00+05:00\n2,2026-01-03\n"
    )
    mixed = run("features", "historical", "mixed.csv", "-f", "spend", "-o", "mixed-out.csv")
    assert mixed.returncode == 0, mixed.stderr
    assert pd.read_csv(tmp_path / "mixed-out.csv")["spend"].tolist() == [1.0, 3.0]
    (tmp_path / "words.csv").write_text("customer_id,event_timestamp\n1,yesterday\n")
    words = run("features", "historical", "words.csv", "-f", "spend", "-o", "words-out.csv")
    assert words.returncode == 1
    assert "not a date or time" in words.stderr

    mat = run("features", "materialize", "--end", "2026-01-04T00:00:00")
    assert mat.returncode == 0, mat.stderr
    assert "activity: 2 rows written" in mat.stdout
    found = json.loads(run("features", "online", "-e", "customer_id=1", "-f", "spend").stdout)
    assert found["spend"] == 2.0

    shown = run("features", "show", "activity")
    assert "materialized to 2026-01-04 00:00:00: 2 rows" in shown.stdout

    bad = run("features", "online", "-e", "customer_id=1", "-f", "activity:nope")
    assert bad.returncode == 1
    assert "no feature 'nope'; its features: spend" in bad.stderr


ON_DEMAND = """

import pandas as pd
from conveyor.features import on_demand


@on_demand(inputs=["activity:spend"], outputs=[Field("double_spend", "float64")])
def double_spend(df, request):
    return pd.DataFrame({"double_spend": df["spend"] * 2})
"""


def test_an_on_demand_view_applied_from_a_file_serves_other_processes(tmp_path: Path) -> None:
    day = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2)]
    pd.DataFrame({"customer_id": [1, 2], "event_ts": day, "spend": [1.0, 3.0]}).to_parquet(
        tmp_path / "rows.parquet"
    )
    (tmp_path / "defs.py").write_text(DEFINITIONS + ON_DEMAND)
    assert conveyor(tmp_path, "init").returncode == 0
    assert conveyor(tmp_path, "features", "apply", "defs.py").returncode == 0
    assert (
        conveyor(tmp_path, "features", "materialize", "--end", "2026-01-03T00:00").returncode == 0
    )
    other = tmp_path / "elsewhere"
    other.mkdir()
    found = conveyor(
        other,
        "--root",
        str(tmp_path),
        "features",
        "online",
        "-e",
        "customer_id=2",
        "-f",
        "double_spend",
        "-f",
        "spend",
    )
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["double_spend"] == 6.0


def test_a_csv_of_entity_rows_keeps_keys_the_source_keeps_as_text(tmp_path: Path) -> None:
    assert conveyor(tmp_path, "init").returncode == 0
    (tmp_path / "defs.py").write_text(DEFINITIONS)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    pd.DataFrame(
        {"customer_id": ["007", "7"], "event_ts": [at, at], "spend": [7.0, 70.0]}
    ).to_parquet(tmp_path / "rows.parquet")
    assert conveyor(tmp_path, "features", "apply", "defs.py").returncode == 0
    (tmp_path / "ent.csv").write_text(
        "customer_id,event_timestamp\n007,2026-01-02T00:00:00\n7,2026-01-02T00:00:00\n"
    )
    done = conveyor(tmp_path, "features", "historical", "ent.csv", "-f", "spend", "-o", "out.csv")
    assert done.returncode == 0, done.stderr
    out = pd.read_csv(tmp_path / "out.csv", dtype={"customer_id": str})
    assert list(zip(out["customer_id"], out["spend"], strict=True)) == [("007", 7.0), ("7", 70.0)]
