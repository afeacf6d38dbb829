"""The feature store on the embedded default: point-in-time joins, materialization, online."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

import conveyor as cv
from conveyor.core.errors import InvalidArgumentError, NotFoundError
from conveyor.features import (
    DataFrameSource,
    DatasetSource,
    Entity,
    FeatureView,
    Field,
    ParquetSource,
    on_demand,
)
from conveyor.features.service import FeatureComputeError
from conveyor.store.records import ObjectRef


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


customer = Entity("customer", key="customer_id")

ROWS = pd.DataFrame(
    {
        "customer_id": [1, 1, 1, 2],
        "event_ts": [at(1), at(2), at(5), at(1)],
        "spend": [1.0, 2.0, 5.0, 100.0],
        "visits": [10, 20, 50, 1000],
    }
)


def activity_view(source: object = None, ttl: str = "2d") -> FeatureView:
    return FeatureView(
        name="activity",
        entities=[customer],
        source=source or DataFrameSource(ROWS),
        features=[Field("spend", "float64"), Field("visits", "int64")],
        ttl=ttl,
    )


@on_demand(inputs=["activity:spend"], outputs=[Field("half_spend", "float64")])
def half_spend(df: pd.DataFrame, request: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"half_spend": df["spend"] / 2})


@pytest.fixture
def ws(tmp_path: Path) -> cv.Workspace:
    workspace = cv.init(tmp_path, project="feats")
    cv.features.apply([customer, activity_view(), half_spend])
    return workspace


def entity_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 3, 1, 2],
            "event_timestamp": [
                at(2),  # exactly at a feature row's time: that row counts
                at(2, 9, 59),  # a minute before: the earlier row
                at(4, 10, 1),  # the latest row is 2 days 1 minute old: beyond the 2-day TTL
                at(2),  # an unknown entity
                at(6),  # the newest row
                at(3, 10),  # exactly the TTL old: still in (both ends count)
            ],
        },
        index=[10, 11, 12, 13, 14, 15],
    )


def test_historical_is_point_in_time_correct_keeping_order_and_index(ws: cv.Workspace):
    out = cv.features.historical(entity_rows(), ["activity:spend", "visits"])
    assert list(out.index) == [10, 11, 12, 13, 14, 15]
    assert list(out.columns) == ["customer_id", "event_timestamp", "spend", "visits"]
    spend = [None if pd.isna(v) else v for v in out["spend"]]
    assert spend == [2.0, 1.0, None, None, 5.0, 100.0]
    assert [None if pd.isna(v) else int(v) for v in out["visits"]] == [20, 10, None, None, 50, 1000]


def test_a_wide_historical_read_joins_its_columns_without_fragmenting(tmp_path: Path):
    # One column assigned at a time made pandas warn (PerformanceWarning) once per column
    # past a hundred; the user saw a screen of warnings for every wide training set.
    cv.init(tmp_path, project="wide")
    n = 150
    rows = pd.DataFrame(
        {"customer_id": [1, 2], "event_ts": [at(1), at(1)]}
        | {f"f{i}": [float(i), -1.0] for i in range(n)}
    )
    view = FeatureView(
        name="wide",
        entities=[customer],
        source=DataFrameSource(rows),
        features=[Field(f"f{i}", "float64") for i in range(n)],
    )
    cv.features.apply([customer, view])
    entity = pd.DataFrame(
        {"customer_id": [2, 1, 2], "event_timestamp": [at(2)] * 3}, index=[7, 7, 3]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = cv.features.historical(entity, [f"wide:f{i}" for i in range(n)])
    assert list(out.index) == [7, 7, 3]
    assert list(out.columns) == ["customer_id", "event_timestamp"] + [f"f{i}" for i in range(n)]
    assert out["f149"].tolist() == [-1.0, 149.0, -1.0]
    assert "f0" not in entity.columns  # the caller's frame is left as it was


def test_a_late_correction_does_not_leak_into_earlier_rows(tmp_path: Path):
    cv.init(tmp_path, project="late")
    rows = pd.DataFrame(
        {
            "customer_id": [1, 1],
            "event_ts": [at(1), at(1)],
            "created_ts": [at(1), at(3)],  # the same event, corrected two days later
            "spend": [1.0, 10.0],
        }
    )
    view = FeatureView(
        name="corrected",
        entities=[customer],
        source=DataFrameSource(rows, created_timestamp="created_ts"),
        features=[Field("spend")],
    )
    cv.features.apply([customer, view])
    entity = pd.DataFrame({"customer_id": [1, 1], "event_timestamp": [at(2), at(3, 12)]})
    out = cv.features.historical(entity, ["corrected:spend"])
    assert out["spend"].tolist() == [1.0, 10.0]


def test_on_demand_features_run_the_same_function_offline_and_online(ws: cv.Workspace):
    out = cv.features.historical(entity_rows(), ["half_spend"])
    assert [None if pd.isna(v) else v for v in out["half_spend"]] == [
        1.0,
        0.5,
        None,
        None,
        2.5,
        50.0,
    ]
    cv.features.materialize(end=at(6))
    online = cv.features.online({"customer_id": [1]}, ["half_spend"])
    assert online["half_spend"] == [2.5]


def test_materialize_then_online_equals_historical_at_that_time(ws: cv.Workspace):
    end = at(3, 10)
    done = cv.features.materialize(end=end)
    assert [(m.view, m.rows) for m in done] == [("activity", 2)]
    ids = [1, 2, 3]
    online = cv.features.online({"customer_id": ids}, ["activity:spend", "activity:visits"])
    offline = cv.features.historical(
        pd.DataFrame({"customer_id": ids, "event_timestamp": [end] * 3}), ["spend", "visits"]
    )
    assert online["spend"] == [None if pd.isna(v) else v for v in offline["spend"]]
    assert online["visits"] == [None if pd.isna(v) else int(v) for v in offline["visits"]]


def test_materialization_is_incremental_idempotent_and_expires_by_ttl(ws: cv.Workspace):
    cv.features.materialize(end=at(1, 12))
    assert cv.features.online({"customer_id": [1, 2]}, ["spend"])["spend"] == [1.0, 100.0]
    second = cv.features.materialize(end=at(4, 11))  # from the last end: only newer rows
    assert second[0].start == at(1, 12)
    assert cv.features.online({"customer_id": [1, 2]}, ["spend"])["spend"] == [None, None]
    cv.features.materialize(end=at(6))
    again = cv.features.materialize(end=at(6))
    assert again[0].rows == 0
    found = cv.features.online({"customer_id": [1, 2]}, ["spend"], with_timestamps=True)
    assert found["spend"] == [5.0, None]
    assert found["activity__event_ts"] == [at(5), None]
    assert cv.features.freshness("activity") > timedelta(days=300)


def test_apply_versions_only_changed_definitions(ws: cv.Workspace):
    same = cv.features.apply([activity_view()])
    assert [(a.name, a.version, a.changed) for a in same] == [("activity", 1, False)]
    changed = cv.features.apply([activity_view(ttl="3d")])
    assert [(a.name, a.version, a.changed) for a in changed] == [("activity", 2, True)]


def test_training_data_is_lineage_of_the_run_that_asked_for_it(ws: cv.Workspace):
    with cv.start_run(experiment="train") as run:
        cv.features.historical(entity_rows(), ["spend"])
    graph = ws.lineage(ObjectRef("run", run.id), direction="upstream")
    assert any(n.kind == "feature_view_version" for n in graph.nodes())


def test_parquet_and_dataset_sources(ws: cv.Workspace, tmp_path: Path):
    ROWS.to_parquet(tmp_path / "activity.parquet")
    cv.data.add("activity_rows", ROWS)
    for source in (
        ParquetSource(str(tmp_path / "*.parquet")),
        DatasetSource("activity_rows@latest"),
    ):
        cv.features.apply([activity_view(source)])
        out = cv.features.historical(entity_rows(), ["spend"])
        assert [None if pd.isna(v) else v for v in out["spend"]] == [
            2.0,
            1.0,
            None,
            None,
            5.0,
            100.0,
        ]


# -- bad input -----------------------------------------------------------------------------


def test_an_unknown_feature_lists_the_views_features(ws: cv.Workspace):
    with pytest.raises(NotFoundError, match="no feature 'spent'; its features: spend, visits"):
        cv.features.historical(entity_rows(), ["activity:spent"])


def test_entity_rows_missing_the_key_or_a_real_timestamp_are_refused(ws: cv.Workspace):
    rows = entity_rows()
    with pytest.raises(InvalidArgumentError, match="lack the key column 'customer_id'"):
        cv.features.historical(rows.rename(columns={"customer_id": "id"}), ["spend"])
    with pytest.raises(InvalidArgumentError, match="no timestamp column 'event_timestamp'"):
        cv.features.historical(rows.rename(columns={"event_timestamp": "t"}), ["spend"])
    with pytest.raises(InvalidArgumentError, match="must hold timestamps"):
        cv.features.historical(rows.assign(event_timestamp="2026-01-02"), ["spend"])


def test_a_source_without_a_declared_field_names_it(ws: cv.Workspace):
    view = FeatureView(
        name="broken",
        entities=[customer],
        source=DataFrameSource(ROWS.drop(columns="visits")),
        features=[Field("visits", "int64")],
    )
    cv.features.apply([view])
    with pytest.raises(InvalidArgumentError, match="has no column 'visits'"):
        cv.features.historical(entity_rows(), ["broken:visits"])


def test_an_on_demand_function_that_raises_is_named(ws: cv.Workspace):
    @on_demand(inputs=["activity:spend"], outputs=[Field("boom")])
    def boom(df: pd.DataFrame, request: pd.DataFrame) -> pd.DataFrame:
        raise ZeroDivisionError("no")

    cv.features.apply([boom])
    with pytest.raises(FeatureComputeError, match="'boom' raised ZeroDivisionError"):
        cv.features.historical(entity_rows(), ["boom"])


def test_another_process_reads_online_values_of_a_dataframe_view(ws: cv.Workspace, tmp_path: Path):
    cv.features.materialize(end=at(6))
    other = cv.Workspace.from_settings(tmp_path, project="feats")  # knows only what is stored
    try:
        found = cv.features.online({"customer_id": [1]}, ["activity:spend"], workspace=other)
        assert found["spend"] == [5.0]
        with pytest.raises(InvalidArgumentError, match="reads a DataFrame in memory"):
            cv.features.historical(entity_rows(), ["activity:spend"], workspace=other)
        # materializing every view there passes it over; naming it says why not
        assert cv.features.materialize(end=at(7), workspace=other) == []
        with pytest.raises(InvalidArgumentError, match="reads a DataFrame in memory"):
            cv.features.materialize(["activity"], end=at(7), workspace=other)
    finally:
        other.close()


# -- what a careful review found ------------------------------------------------------------


def test_late_rows_with_a_created_time_reach_the_online_store(tmp_path: Path):
    cv.init(tmp_path, project="late-online")
    rows = pd.DataFrame(
        {"customer_id": [1], "event_ts": [at(1)], "created_ts": [at(1)], "spend": [1.0]}
    )
    source = DataFrameSource(rows, created_timestamp="created_ts")
    view = FeatureView(name="late", entities=[customer], source=source, features=[Field("spend")])
    cv.features.apply([customer, view])
    cv.features.materialize(end=at(2))
    rows.loc[1] = [1, at(1), at(3), 10.0]  # a correction of day 1, recorded on day 3
    cv.features.materialize(end=at(2, 12))  # not yet recorded by then
    assert cv.features.online({"customer_id": [1]}, ["late:spend"])["spend"] == [1.0]
    cv.features.materialize(end=at(4))
    assert cv.features.online({"customer_id": [1]}, ["spend"])["spend"] == [10.0]


def test_late_rows_in_new_or_rewritten_files_reach_the_online_store(tmp_path: Path):
    cv.init(tmp_path, project="late-files")
    folder = tmp_path / "activity"
    folder.mkdir()
    ROWS.to_parquet(folder / "day1.parquet")
    view = activity_view(ParquetSource(str(folder / "*.parquet")), ttl="30d")
    cv.features.apply([customer, view])
    cv.features.materialize(end=at(6))
    late = pd.DataFrame(
        {
            "customer_id": [2, 1, 3],
            "event_ts": [at(3), at(4), at(2)],  # all older than the last run's end
            "spend": [7.0, 4.0, 3.0],
            "visits": [7, 4, 3],
        }
    )
    late.to_parquet(folder / "late.parquet")  # arrives after the run
    cv.features.materialize(end=at(6, 12))
    online = cv.features.online({"customer_id": [1, 2, 3]}, ["spend"])
    assert online["spend"] == [5.0, 7.0, 3.0]  # newer than stored wins; older never does
    rewritten = ROWS.assign(spend=ROWS["spend"] * 10)  # a file corrected in place
    rewritten.loc[rewritten["customer_id"] == 2, "event_ts"] = at(3, 12)
    rewritten.to_parquet(folder / "day1.parquet")
    cv.features.materialize(end=at(7))
    assert cv.features.online({"customer_id": [2]}, ["spend"])["spend"] == [1000.0]


def test_a_single_file_source_rewritten_in_place_is_read_again(tmp_path: Path):
    cv.init(tmp_path, project="one-file")
    ROWS.to_parquet(tmp_path / "activity.parquet")
    cv.features.apply([customer, activity_view(ParquetSource("activity.parquet"), ttl="30d")])
    cv.features.materialize(end=at(6))
    late = pd.DataFrame({"customer_id": [3], "event_ts": [at(2)], "spend": [3.0], "visits": [3]})
    pd.concat([ROWS, late], ignore_index=True).to_parquet(tmp_path / "activity.parquet")
    cv.features.materialize(start=at(5), end=at(6, 12))  # an explicit start: still read whole
    assert cv.features.online({"customer_id": [1, 3]}, ["spend"])["spend"] == [5.0, 3.0]


def test_late_rows_in_a_new_dataset_version_reach_the_online_store(tmp_path: Path):
    cv.init(tmp_path, project="late-dataset")
    cv.data.add("activity_rows", ROWS)
    view = activity_view(DatasetSource("activity_rows@latest"), ttl="30d")
    cv.features.apply([customer, view])
    cv.features.materialize(end=at(6))
    late = pd.DataFrame({"customer_id": [3], "event_ts": [at(2)], "spend": [3.0], "visits": [3]})
    cv.data.add("activity_rows", pd.concat([ROWS, late], ignore_index=True))
    cv.features.materialize(end=at(6, 12))
    assert cv.features.online({"customer_id": [1, 3]}, ["spend"])["spend"] == [5.0, 3.0]


def test_the_memory_limit_setting_reaches_duckdb_and_a_bad_one_is_named(tmp_path: Path):
    from conveyor.features import offline

    con = offline.connect("300MB", tmp_path)
    try:
        limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        spill = con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    finally:
        con.close()
    assert limit in ("286.1 MiB", "300.0 MB", "286.1MiB")
    assert spill.startswith(str(tmp_path))
    with pytest.raises(InvalidArgumentError, match="query_memory_limit = 'lots'"):
        offline.connect("lots", tmp_path)
    offline.connect("4G", tmp_path).close()  # DuckDB's own spellings stay accepted


def test_a_new_definition_rebuilds_the_online_records(ws: cv.Workspace):
    cv.features.materialize(end=at(6))
    reordered = FeatureView(
        name="activity",
        entities=[customer],
        source=DataFrameSource(ROWS),
        features=[Field("visits", "int64"), Field("spend", "float64")],
        ttl="2d",
    )
    cv.features.apply([reordered])
    cv.features.materialize(end=at(6))
    found = cv.features.online({"customer_id": [1]}, ["spend", "visits"])
    assert (found["spend"], found["visits"]) == ([5.0], [50])


def test_an_end_with_an_offset_is_the_same_instant(ws: cv.Workspace):
    plus_two = timezone(timedelta(hours=2))
    cv.features.materialize(end=datetime(2026, 1, 5, 11, 30, tzinfo=plus_two))  # 09:30 UTC
    # Day 5's row (10:00 UTC) is still in the future; day 2's has expired (TTL 2 days).
    assert cv.features.online({"customer_id": [1]}, ["spend"])["spend"] == [None]


def test_float_keys_match_integer_keys_online(tmp_path: Path):
    cv.init(tmp_path, project="floats")
    rows = pd.DataFrame({"customer_id": [17.0], "event_ts": [at(1)], "spend": [3.0]})
    view = FeatureView(
        name="floaty", entities=[customer], source=DataFrameSource(rows), features=[Field("spend")]
    )
    cv.features.apply([customer, view])
    cv.features.materialize(end=at(2))
    assert cv.features.online({"customer_id": [17]}, ["spend"])["spend"] == [3.0]


def test_a_start_after_the_end_is_refused(ws: cv.Workspace):
    with pytest.raises(InvalidArgumentError, match="is after end"):
        cv.features.materialize(start=at(6), end=at(5))


def test_projects_sharing_an_online_file_keep_their_values_apart(ws: cv.Workspace, tmp_path: Path):
    cv.features.materialize(end=at(6))
    other = cv.init(tmp_path, project="other")
    rows = ROWS.assign(spend=ROWS["spend"] * 100)
    cv.features.apply([customer, activity_view(DataFrameSource(rows))], workspace=other)
    cv.features.materialize(end=at(6), workspace=other)
    assert cv.features.online({"customer_id": [1]}, ["spend"], workspace=other)["spend"] == [500.0]
    cv.init(tmp_path, project="feats")
    assert cv.features.online({"customer_id": [1]}, ["spend"])["spend"] == [5.0]


# -- found by a new user's audit -----------------------------------------------------------


def one_value(name: str, value: float, key: object = 1, ts: object = None) -> FeatureView:
    rows = pd.DataFrame({"k": [key], "event_ts": [ts or at(1)], "x": [value]})
    return FeatureView(name, [Entity("c", key="k")], DataFrameSource(rows), [Field("x")])


def test_an_on_demand_view_takes_two_inputs_of_the_same_name(tmp_path: Path):
    cv.init(tmp_path, project="feats")

    @on_demand(inputs=["a:x", "b:x"], outputs=[Field("s", "float64")])
    def summed(df: pd.DataFrame, request: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"s": df["a__x"] - df["b__x"]})

    cv.features.apply([Entity("c", key="k"), one_value("a", 1.0), one_value("b", 2.0), summed])
    rows = pd.DataFrame({"k": [1], "event_timestamp": [at(2)]})
    assert cv.features.historical(rows, ["summed:s"])["s"].tolist() == [-1.0]
    cv.features.materialize(["a", "b"], end=at(3))
    assert cv.features.online({"k": [1]}, ["summed:s"])["s"] == [-1.0]


def test_online_reads_take_features_by_name_from_the_layout_that_was_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from conveyor.features import service

    cv.init(tmp_path, project="feats")
    rows = pd.DataFrame(
        {"k": [1], "event_ts": [at(1)], "age": [30], "balance": [1000.0], "tier": [2]}
    )
    e = Entity("c", key="k")

    def acct(*fields: Field) -> FeatureView:
        return FeatureView("acct", [e], DataFrameSource(rows), list(fields))

    cv.features.apply([e, acct(Field("age", "int64"), Field("balance", "float64"))])
    cv.features.materialize(["acct"], end=at(2))
    server = cv.Workspace.from_settings(tmp_path, project="feats")  # another reader, running
    try:
        assert cv.features.online({"k": [1]}, ["acct:age"], workspace=server)["age"] == [30]
        # reordered, and a feature added: a new layout, not materialized yet
        cv.features.apply([acct(Field("balance", "float64"), Field("age", "int64"), Field("tier"))])
        before = cv.features.online({"k": [1]}, ["acct:age", "acct:balance", "acct:tier"])
        assert (before["age"], before["balance"], before["tier"]) == ([30], [1000.0], [None])
        cv.features.materialize(["acct"], end=at(2))
        after = cv.features.online({"k": [1]}, ["acct:age", "acct:balance", "acct:tier"])
        assert (after["age"], after["balance"], after["tier"]) == ([30], [1000.0], [2.0])
        monkeypatch.setattr(service, "PLAN_TTL_S", 0.0)  # the running reader's plan ages out
        again = cv.features.online({"k": [1]}, ["acct:age"], workspace=server)
        assert again["age"] == [30]
    finally:
        server.close()


def test_an_offset_in_a_text_timestamp_is_applied(tmp_path: Path):
    cv.init(tmp_path, project="feats")
    # 08:00 at UTC-5 is 13:00 UTC: after a label at noon UTC, so not its value
    rows = pd.DataFrame({"k": [1], "event_ts": ["2026-01-01T08:00:00-05:00"], "x": [1.0]})
    view = FeatureView("late", [Entity("c", key="k")], DataFrameSource(rows), [Field("x")])
    cv.features.apply([Entity("c", key="k"), view])
    labels = pd.DataFrame(
        {"k": [1, 1], "event_timestamp": [at(1, 12), at(1, 13)]}  # noon, then 13:00 UTC
    )
    assert cv.features.historical(labels, ["late:x"])["x"].tolist()[1] == 1.0
    assert pd.isna(cv.features.historical(labels, ["late:x"])["x"].tolist()[0])
    cv.features.materialize(["late"], end=at(2))
    got = cv.features.online({"k": [1]}, ["late:x"], with_timestamps=True)
    assert got["late__event_ts"] == [at(1, 13)]


def test_composite_keys_with_non_ascii_values_are_found_online(tmp_path: Path):
    cv.init(tmp_path, project="feats")
    rows = pd.DataFrame(
        {
            "city": ["münchen", "東京"],
            "who": ["zoë", "bob"],
            "event_ts": [at(1)] * 2,
            "x": [1.0, 2.0],
        }
    )
    place = Entity("place", key=["city", "who"])
    view = FeatureView("visits", [place], DataFrameSource(rows), [Field("x")])
    cv.features.apply([place, view])
    cv.features.materialize(["visits"], end=at(2))
    got = cv.features.online({"city": ["münchen", "東京"], "who": ["zoë", "bob"]}, ["visits:x"])
    assert got["x"] == [1.0, 2.0]


def test_entity_keys_of_another_kind_than_the_source_are_refused(tmp_path: Path):
    cv.init(tmp_path, project="feats")
    rows = pd.DataFrame({"k": ["007", "7"], "event_ts": [at(1)] * 2, "x": [7.0, 70.0]})
    view = FeatureView("acct", [Entity("c", key="k")], DataFrameSource(rows), [Field("x")])
    cv.features.apply([Entity("c", key="k"), view])
    with pytest.raises(InvalidArgumentError, match="entity key 'k' holds BIGINT values"):
        cv.features.historical(pd.DataFrame({"k": [7], "event_timestamp": [at(2)]}), ["acct:x"])
    text = pd.DataFrame({"k": ["007", "7"], "event_timestamp": [at(2)] * 2})
    assert cv.features.historical(text, ["acct:x"])["x"].tolist() == [7.0, 70.0]


def test_materializing_back_to_an_earlier_end_with_a_start_rebuilds(ws: cv.Workspace):
    cv.features.materialize(["activity"], end=at(6))
    assert cv.features.online({"customer_id": [1]}, ["spend"])["spend"] == [5.0]
    cv.features.materialize(["activity"], start=at(1, 0), end=at(4))
    assert cv.features.online({"customer_id": [1]}, ["spend"])["spend"] == [2.0]


def test_an_emptied_online_store_is_filled_again_by_the_next_run(ws: cv.Workspace):
    from conveyor.features.service import feature_service

    cv.features.materialize(["activity"], end=at(2, 12))
    feature_service(ws).close()
    (ws.settings.state_dir / "online.db").unlink()  # as a user clearing it might
    cv.features.materialize(["activity"], end=at(2, 12))
    assert cv.features.online({"customer_id": [1, 2]}, ["spend"])["spend"] == [2.0, 100.0]


def test_a_feature_column_never_replaces_a_column_of_the_entity_rows(ws: cv.Workspace):
    rows = pd.DataFrame({"customer_id": [1], "event_timestamp": [at(3)], "spend": ["label"]})
    with pytest.raises(InvalidArgumentError, match="already have a column 'spend'"):
        cv.features.historical(rows, ["activity:spend"])
    got = cv.features.historical(rows, ["activity:spend"], full_names=True)
    assert (got["spend"].tolist(), got["activity__spend"].tolist()) == (["label"], [2.0])


def test_records_written_before_layouts_named_them_are_still_read(ws: cv.Workspace):
    import sqlite3

    cv.features.materialize(["activity"], end=at(2, 12))
    from conveyor.features.service import feature_service

    feature_service(ws).close()
    db = sqlite3.connect(ws.settings.state_dir / "online.db")
    (table,) = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert table.endswith("activity__" + table.rsplit("__", 1)[1])
    db.execute(f'ALTER TABLE "{table}" RENAME TO "{table.rsplit("__", 1)[0]}"')  # as before
    db.commit()
    db.close()
    fresh = cv.Workspace.from_settings(ws.settings.root, project="feats")  # an upgraded reader
    try:
        got = cv.features.online({"customer_id": [1, 2]}, ["spend"], workspace=fresh)
        assert got["spend"] == [2.0, 100.0]
    finally:
        fresh.close()


def test_the_key_kinds_of_a_dataset_source_come_from_its_record_not_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from conveyor.data.service import DataService
    from conveyor.features.service import feature_service

    ws = cv.init(tmp_path, project="feats")
    rows = pd.DataFrame({"k": ["007"], "n": [7], "event_ts": [at(1)], "x": [1.0]})
    cv.data.add("accounts", rows)
    place = Entity("acct", key=["k", "n"])
    view = FeatureView("v", [place], DatasetSource("accounts@1"), [Field("x")])
    cv.features.apply([place, view])

    def no_rows(*args: object, **kwargs: object) -> None:
        raise AssertionError("the rows were read")

    monkeypatch.setattr(DataService, "load_arrow", no_rows)
    assert feature_service(ws).text_keys(["v:x"]) == ["k"]


def test_a_missing_key_names_no_entity_online_or_in_a_source(tmp_path: Path) -> None:
    import numpy as np

    cv.init(tmp_path, project="keys")
    person = Entity("person", key="name")
    rows = pd.DataFrame(
        {
            "name": ["None", "nan", "alice", None],  # text that looks like a missing value
            "event_ts": [at(1)] * 4,
            "score": [1.0, 2.0, 3.0, 4.0],
        }
    )
    view = FeatureView(
        "people", entities=[person], source=DataFrameSource(rows), features=[Field("score")]
    )
    cv.features.apply([person, view])
    cv.features.materialize(end=at(2))  # the row without a key is left out, not an error
    found = cv.features.online({"name": [None, float("nan"), "alice", "None"]}, ["people:score"])
    assert found["score"] == [None, None, 3.0, 1.0]
    entity_rows = pd.DataFrame(
        {"name": pd.Series([None, "alice"], dtype="str"), "event_timestamp": [at(2)] * 2}
    )
    offline = cv.features.historical(entity_rows, ["people:score"])["score"].tolist()
    assert np.isnan(offline[0])
    assert offline[1] == 3.0


def test_online_reads_give_timestamps_as_offline_reads_do(tmp_path: Path) -> None:
    cv.init(tmp_path, project="types")
    thing = Entity("thing", key="k")
    rows = pd.DataFrame(
        {
            "k": [1, 2],
            "event_ts": [at(1)] * 2,
            "seen": [datetime(2026, 1, 1, 5), datetime(2026, 1, 1, 6)],
        }
    )
    view = FeatureView(
        "things",
        entities=[thing],
        source=DataFrameSource(rows),
        features=[Field("seen", "timestamp")],
    )
    cv.features.apply([thing, view])
    cv.features.materialize(end=at(2))
    found = cv.features.online({"k": [1, 2]}, ["things:seen"])
    assert found["seen"] == [datetime(2026, 1, 1, 5), datetime(2026, 1, 1, 6)]


def test_a_ttl_is_positive_and_counted_to_the_microsecond_offline_as_online(
    tmp_path: Path,
) -> None:
    with pytest.raises(InvalidArgumentError, match="must be a positive duration"):
        activity_view(ttl="0s")
    cv.init(tmp_path, project="ttl")
    rows = pd.DataFrame({"customer_id": [1], "event_ts": [at(1)], "spend": [1.0], "visits": [1]})
    view = FeatureView(
        name="activity",
        entities=[customer],
        source=DataFrameSource(rows),
        features=[Field("spend", "float64")],
        ttl=timedelta(seconds=1.5),
    )
    cv.features.apply([customer, view])
    later = at(1) + timedelta(seconds=1.2)  # within 1.5 s, past 1 s
    entity_rows = pd.DataFrame({"customer_id": [1], "event_timestamp": [later]})
    assert cv.features.historical(entity_rows, ["activity:spend"])["spend"].tolist() == [1.0]
    cv.features.materialize(end=later)
    assert cv.features.online({"customer_id": [1]}, ["activity:spend"])["spend"] == [1.0]
