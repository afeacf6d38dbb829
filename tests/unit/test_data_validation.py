"""Inferring schemas from awkward tables, validating against them and comparing versions."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import conveyor as cv
from conveyor.core.errors import InvalidArgumentError
from conveyor.data.validation import infer_schema, schema_from_yaml, schema_to_yaml, validate_frame
from conveyor.store.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    ws = cv.init(
        tmp_path / "project",
        project="checks",
        store_uri=f"sqlite:///{tmp_path / 'meta.db'}",
        artifact_uri=str(tmp_path / "objects"),
    )
    yield ws
    ws.close()


def test_a_version_of_dates_and_bytes_passes_its_own_schema(ws: Workspace) -> None:
    # One distinct value: few enough for a check of allowed values, which compared them
    # with their text ('2024-01-01') and so failed every row of the reference itself.
    frame = pd.DataFrame({"day": [datetime.date(2024, 1, 1)] * 12, "blob": [b"x", b"y"] * 6})
    cv.data.add("drops", frame)
    cv.data.infer_schema("drops@1")
    report = cv.data.validate("drops@1")
    assert report.passed, report.summary()


def test_categories_that_are_numbers_are_checked_by_value() -> None:
    frame = pd.DataFrame(
        {"stars": pd.Categorical([1, 2, 3] * 4), "ratio": pd.Categorical([0.5, 1.0, 1.5] * 4)}
    )
    schema = schema_from_yaml(schema_to_yaml(infer_schema(frame)))
    assert validate_frame(frame, schema).passed
    checks = {name: column.checks[0].statistics for name, column in schema.columns.items()}
    assert checks["stars"]["allowed_values"] == [1, 2, 3]
    assert checks["ratio"]["allowed_values"] == [0.5, 1.0, 1.5]
    bad = frame.assign(stars=pd.Categorical([1, 2, 4] * 4))
    report = validate_frame(bad, schema)
    assert [(f.column, f.check, f.failures) for f in report.failures] == [
        ("stars", "isin([1, 2, 3])", 4)
    ]


def test_a_frame_whose_index_labels_repeat_is_checked_and_its_rows_named_by_position() -> None:
    reference = pd.DataFrame({"id": range(20), "plan": ["basic", "pro"] * 10})
    schema = infer_schema(reference)
    stacked = pd.concat([reference, reference.head(1)])  # labels 0..19, then 0 again
    report = validate_frame(stacked, schema)
    assert not report.passed
    assert {f.check for f in report.failures} >= {"no duplicate rows", "field_uniqueness"}
    assert {r["_row"] for r in report.failing_rows} == {0, 20}


def test_a_missing_column_is_reported_on_that_column() -> None:
    reference = pd.DataFrame({"id": range(20), "plan": ["basic", "pro"] * 10, "spend": 1.5})
    schema = infer_schema(reference)
    renamed = reference.rename(columns={"plan": "tier", "spend": "amount"})
    report = validate_frame(renamed, schema)
    assert [(f.column, f.check, f.failures) for f in report.failures] == [
        ("plan", "column_in_dataframe", 1),
        ("spend", "column_in_dataframe", 1),
    ]
    assert "plan: column_in_dataframe (1), spend: column_in_dataframe (1)" in report.summary()
    strict = infer_schema(reference.drop(columns=["spend"]))
    strict.strict = True
    extra = validate_frame(reference, strict)
    assert [(f.column, f.check) for f in extra.failures] == [("spend", "column_in_schema")]


def test_the_same_data_from_a_csv_file_passes_the_schema_of_a_version(
    ws: Workspace, tmp_path: Path
) -> None:
    # A version added from a DataFrame reads back integers and booleans with nulls as Int64
    # and boolean, times in microseconds; a CSV file of the same values reads as float64,
    # object and seconds.
    frame = pd.DataFrame(
        {
            "visits": pd.array([3, None, 5, 8] * 5, dtype="Int64"),
            "paid": pd.array([True, None, False, True] * 5, dtype="boolean"),
            "seen": pd.date_range("2024-03-01 09:00", periods=20, freq="h", tz="UTC"),
        }
    )
    cv.data.add("visits", frame)
    schema = cv.data.infer_schema("visits@1")
    frame.to_csv(tmp_path / "visits.csv", index=False)
    report = cv.data.validate(tmp_path / "visits.csv", schema)
    assert report.passed, report.summary()
    cv.data.add("visits-csv", tmp_path / "visits.csv")  # and the other way round
    assert cv.data.validate(frame, cv.data.infer_schema("visits-csv@1")).passed
    # What differs in the values still fails: fractions, and another time zone.
    frame.assign(visits=[3.5, None, 5, 8] * 5).to_csv(tmp_path / "halves.csv", index=False)
    halves = cv.data.validate(tmp_path / "halves.csv", schema)
    assert [f.column for f in halves.failures] == ["visits"]
    tokyo = frame.assign(seen=frame.seen.dt.tz_convert("Asia/Tokyo"))
    assert [f.column for f in cv.data.validate(tokyo, schema).failures] == ["seen"]


def test_a_csv_file_without_the_gaps_of_the_reference_passes_its_schema(
    ws: Workspace, tmp_path: Path
) -> None:
    # With gaps, whole numbers read as float64 and booleans as objects; without, as
    # int64 and bool: the same values, which must not fail the reference's dtypes.
    rows = [f"{i},{'' if i % 3 == 0 else i},{'' if i % 4 == 0 else 'true'}" for i in range(1, 21)]
    (tmp_path / "visits.csv").write_text("id,n,ok\n" + "\n".join(rows) + "\n")
    cv.data.add("visits", tmp_path / "visits.csv")
    cv.data.infer_schema("visits@1")
    full = [f"{i},{i},true" for i in range(1, 21)]
    (tmp_path / "visits.csv").write_text("id,n,ok\n" + "\n".join(full) + "\n")
    cv.data.add("visits", tmp_path / "visits.csv")
    report = cv.data.validate("visits@2")
    assert report.passed, report.summary()


def test_a_table_of_durations_is_profiled_and_checked(ws: Workspace) -> None:
    waits = pd.DataFrame({"wait": pd.to_timedelta([1, None, 86400] * 4, unit="s")})
    version = cv.data.add("waits", waits)
    assert version.profile["columns"]["wait"]["max"] == "1 day, 0:00:00"
    cv.data.infer_schema("waits@1")
    assert cv.data.validate("waits@1").passed


def test_a_column_parquet_cannot_hold_is_named(ws: Workspace) -> None:
    offsets = pd.DataFrame({"every": [pd.DateOffset(months=1)] * 2})
    with pytest.raises(InvalidArgumentError, match=r"its column 'every' \(month_day_nano"):
        cv.data.add("offsets", offsets)


def test_a_check_that_cannot_run_is_an_error_not_a_failure_of_the_data() -> None:
    frame = pd.DataFrame({"id": range(20), "plan": ["basic", "pro"] * 10})
    edited = schema_to_yaml(infer_schema(frame)).replace("min_rows: 10", "min_rows: ten")
    with pytest.raises(InvalidArgumentError, match=r"row_count.* on the table could not run"):
        validate_frame(frame, schema_from_yaml(edited), schema_source="s.yaml")
    words = "columns:\n  id:\n    dtype: int64\n    ge: zero\n"
    with pytest.raises(InvalidArgumentError, match=r"on column 'id' could not run") as caught:
        validate_frame(frame, schema_from_yaml(words), schema_source="s.yaml")
    assert "schema of s.yaml" in caught.value.hint
    # On a column of the wrong type, the dtype failure explains it: still a failure.
    report = validate_frame(frame.assign(id=frame.id.astype(str)), schema_from_yaml(words))
    assert ("id", "dtype('int64')") in [(f.column, f.check) for f in report.failures]


def test_a_report_names_a_check_by_its_edited_arguments() -> None:
    frame = pd.DataFrame({"id": range(40)})
    written = schema_to_yaml(infer_schema(frame))
    assert "error: row_count(min_rows=20, max_rows=80)" in written  # as pandera writes it
    edited = schema_from_yaml(written.replace("min_rows: 20", "min_rows: 50"))
    report = validate_frame(frame, edited)
    assert [f.check for f in report.failures] == ["row_count(min_rows=50, max_rows=80)"]
    assert schema_to_yaml(schema_from_yaml(written)) == written  # unedited: the same text
    labelled = written.replace("row_count(min_rows=20, max_rows=80)", "too few rows")
    relabelled = validate_frame(
        frame, schema_from_yaml(labelled.replace("min_rows: 20", "min_rows: 50"))
    )
    assert [f.check for f in relabelled.failures] == ["too few rows"]  # the user's own label


def test_diff_shows_a_moved_range_of_times(ws: Workspace) -> None:
    frame = pd.DataFrame({"at": pd.date_range("2024-01-01", periods=30, freq="D", tz="UTC")})
    cv.data.add("events", frame)
    cv.data.add("events", frame.assign(at=frame["at"] + pd.Timedelta(days=365)))
    shifts = {(s.statistic, s.before, s.after) for s in cv.data.diff("events@1", "events@2").shifts}
    assert shifts == {
        ("min", "2024-01-01 00:00:00+00:00", "2024-12-31 00:00:00+00:00"),
        ("median", "2024-01-15 00:00:00+00:00", "2025-01-14 00:00:00+00:00"),
        ("max", "2024-01-30 00:00:00+00:00", "2025-01-29 00:00:00+00:00"),
    }


def test_diff_lists_new_vanished_and_moved_categories_by_share(ws: Workspace) -> None:
    cv.data.add("orders", pd.DataFrame({"plan": ["basic"] * 6 + ["pro"] * 3 + ["team"]}))
    cv.data.add("orders", pd.DataFrame({"plan": ["basic"] * 3 + ["pro"] * 3 + ["gold"] * 4}))
    moved = [
        (c.value, c.status, c.before, c.after)
        for c in cv.data.diff("orders@1", "orders@2").categories
    ]
    assert moved == [
        ("gold", "new", 0.0, 0.4),
        ("team", "vanished", 0.1, 0.0),
        ("basic", "moved", 0.6, 0.3),
    ]


def test_diff_takes_no_category_missing_from_a_partial_list_for_new_or_vanished(
    ws: Workspace,
) -> None:
    # 30 cities; a profile lists the 20 most frequent. c19 leaves that list, c25 enters it.
    before = {f"c{i:02}": 3 if i < 20 else 1 for i in range(30)}
    after = {**before, "c19": 1, "c25": 3}
    for counts in (before, after):
        cities = [city for city, n in counts.items() for _ in range(n)]
        cv.data.add("visits", pd.DataFrame({"city": cities}))
    assert cv.data.diff("visits@1", "visits@2").categories == []


def test_diff_takes_another_arrow_layout_of_the_same_values_for_no_retyping(
    ws: Workspace, tmp_path: Path
) -> None:
    # A CSV file reads as `string`; a DataFrame of pandas strings stores `large_string`.
    (tmp_path / "plans.csv").write_text("plan,n\nbasic,1\npro,2\n")
    cv.data.add("plans", tmp_path / "plans.csv")
    frame = pd.DataFrame({"plan": pd.Series(["basic", "team"], dtype="string[pyarrow]")})
    cv.data.add("plans", frame.assign(n=["1", "2"]))  # and `n` does change type
    cv.data.add("blobs", pa.table({"b": pa.array([b"x"]), "l": pa.array([[1]])}))
    cv.data.add(
        "blobs",
        pa.table(
            {
                "b": pa.array([b"y"], pa.large_binary()),
                "l": pa.array([[2]], pa.large_list(pa.int64())),
            }
        ),
    )
    retyped = {
        **cv.data.diff("plans@1", "plans@2").columns_retyped,
        **cv.data.diff("blobs@1", "blobs@2").columns_retyped,
    }
    assert retyped == {"n": ("int64", "large_string")}


def test_diff_takes_times_in_another_unit_for_no_retyping(ws: Workspace, tmp_path: Path) -> None:
    # A DataFrame's times are stored in microseconds, a CSV file's read in seconds: the same
    # instants. Another time zone is another type.
    seen = pd.date_range("2024-03-01 09:00", periods=4, freq="h", tz="UTC", unit="us")
    frame = pd.DataFrame({"seen": seen, "day": seen.date})
    cv.data.add("visits", frame)
    frame.to_csv(tmp_path / "visits.csv", index=False)
    cv.data.add("visits", tmp_path / "visits.csv")
    cv.data.add("visits", frame.assign(seen=seen.tz_convert("Asia/Tokyo")))
    assert cv.data.diff("visits@1", "visits@2").columns_retyped == {}
    assert cv.data.diff("visits@2", "visits@3").columns_retyped == {
        "seen": ("timestamp[s, tz=UTC]", "timestamp[us, tz=Asia/Tokyo]")
    }


def infinities() -> pa.Table:
    inf, nan = float("inf"), float("nan")
    return pa.table(
        {
            "ratio": pa.array([1.0, inf, -inf, nan, None, 3.0]),
            "odd": pa.array([inf, -inf, nan, inf, None, nan]),
        }
    )


def test_a_float_columns_infinities_and_nans_are_counted_apart_from_its_range(
    ws: Workspace,
) -> None:
    columns = cv.data.add("ratios", infinities()).profile["columns"]
    ratio, odd = columns["ratio"], columns["odd"]
    assert (ratio["infinite"], ratio["nan"], ratio["min"], ratio["max"]) == (2, 1, 1.0, 3.0)
    assert (odd["infinite"], odd["nan"], odd["count"], "min" in odd) == (3, 2, 5, False)


def test_a_table_with_infinities_passes_its_own_schema(ws: Workspace) -> None:
    cv.data.add("ratios", infinities())
    cv.data.infer_schema("ratios@1")
    report = cv.data.validate("ratios@1")
    assert report.passed, report.summary()


def test_a_column_of_the_wrong_dtype_fails_its_dtype_not_its_range(ws: Workspace) -> None:
    reference = pd.DataFrame({"age": [31, 45, 27, 52] * 5, "plan": ["a", "b", "a", "a"] * 5})
    cv.data.add("people", reference)
    cv.data.infer_schema("people@1")
    bad = reference.assign(age=["31", "n/a", "27", "52"] * 5)
    report = cv.data.validate(bad, cv.data.schema("people@1"))
    assert [(f.column, f.check) for f in report.failures] == [("age", "dtype('int64')")]


def test_a_table_check_that_cannot_read_a_column_of_the_wrong_dtype_says_so_plainly() -> None:
    import pandera.pandas as pandera

    ordered = pandera.Check(lambda df: df["start"] <= df["end"], name="start_before_end")
    schema = pandera.DataFrameSchema(
        {"start": pandera.Column(int), "end": pandera.Column(int)}, checks=[ordered]
    )
    report = validate_frame(pd.DataFrame({"start": ["1", "2"], "end": [3, 4]}), schema)
    table = next(f for f in report.failures if f.column is None)
    assert table.examples == ["not run: 'start' is of the wrong dtype"]


def categories() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stars": pd.Categorical([3, 1, 2, None] * 5),
            "size": pd.Categorical(np.array([10, 20, 30, 20] * 5, dtype="int16"), ordered=True),
            "day": pd.Categorical(pd.to_datetime(["2024-01-02", "2024-01-01"] * 10)),
            "plan": pd.Categorical(["pro", "basic"] * 10),
        }
    )


def test_a_dataframe_with_categoricals_of_numbers_and_times_loads_back_as_added(
    ws: Workspace,
) -> None:
    # Parquet keeps a dictionary only of text: the others read back as plain columns.
    cv.data.add("ratings", categories())
    pd.testing.assert_frame_equal(cv.data.load("ratings@1"), categories())


def test_categoricals_pass_the_schema_inferred_from_their_version(ws: Workspace) -> None:
    cv.data.add("ratings", categories())
    report = cv.data.validate(categories(), cv.data.infer_schema("ratings@1"))
    assert report.passed, report.summary()


def test_a_report_of_rows_with_lists_and_infinities_is_json(ws: Workspace) -> None:
    import json

    reference = pd.DataFrame({"x": [float(i) for i in range(20)], "tags": [["a", "b"]] * 20})
    cv.data.add("tagged", reference)
    schema = cv.data.infer_schema("tagged@1")
    bad = reference.assign(x=[float("inf"), float("-inf"), *range(2, 20)])
    report = json.loads(json.dumps(cv.data.validate(bad, schema).to_dict(), allow_nan=False))
    assert report["failures"][0]["examples"] == ["inf", "-inf"]
    assert report["failing_rows"][0] == {"_row": 0, "x": "inf", "tags": ["a", "b"]}


def test_the_ci_gate_fails_validation_with_a_schema_that_cannot_check(ws: Workspace) -> None:
    from conveyor.loop.gate import _run_check

    frame = pd.DataFrame({"id": range(20)})
    cv.data.add("holdout", frame)

    def validation() -> tuple[str, str]:
        found = _run_check(ws, "validation", "m/1", None, "holdout@1", None, frame)
        return found["status"], found["detail"]

    assert validation()[0] == "skipped"  # no schema saved: nothing to check with
    cv.data.set_schema("holdout@1", "columns:\n  id:\n    dtype: int64\n    ge: zero\n")
    status, detail = validation()
    assert status == "failed"
    assert "could not run" in detail


def test_a_failure_is_on_its_column_when_the_schema_has_that_columns_name() -> None:
    reference = pd.DataFrame({"plan": ["basic", "pro"] * 10, "n": range(20)})
    schema = schema_from_yaml(schema_to_yaml(infer_schema(reference, name="plan")))
    report = validate_frame(reference.assign(plan="gold"), schema)
    assert [(f.column, f.failures) for f in report.failures] == [("plan", 20)]
    too_few = validate_frame(reference.head(2), schema)
    assert [f.column for f in too_few.failures] == [None]  # the row count: the table's


def test_a_schema_inferred_from_an_empty_table_checks_columns_not_rows(ws: Workspace) -> None:
    reference = pd.DataFrame({"id": pd.Series([], dtype="int64"), "plan": pd.Series([], dtype=str)})
    cv.data.add("template", reference)
    schema = cv.data.infer_schema("template@1")
    filled = pd.DataFrame({"id": range(30), "plan": ["basic", "pro"] * 15})
    assert cv.data.validate(filled, schema).passed
    assert cv.data.validate(filled.drop(columns=["plan"]), schema).failures[0].column == "plan"


def test_integers_of_another_width_fail_the_dtype_check_not_wrapped_into_it() -> None:
    schema = infer_schema(pd.DataFrame({"level": pd.Series([0, 100] * 10, dtype="int8")}))
    wide = pd.DataFrame({"level": pd.Series([300, 5] * 10, dtype="int64")})
    report = validate_frame(wide, schema)
    # Cast to int8, 300 would wrap to 44 and pass the range check as well.
    assert [(f.column, f.check) for f in report.failures] == [
        ("level", "dtype('int8')"),
        ("level", "in_range(0, 100)"),
    ]
    nullable = pd.DataFrame({"level": pd.array([0, 100] * 10, dtype="Int8")})
    assert validate_frame(nullable, schema).passed  # the same width, nullable: the same values


def test_a_schema_that_checks_the_index_sees_repeated_labels() -> None:
    import pandera.pandas as pa

    schema = pa.DataFrameSchema(
        {"n": pa.Column(int)}, index=pa.Index(str, pa.Check.isin(["x", "y"]), unique=True)
    )
    report = validate_frame(pd.DataFrame({"n": [1, 2, 3]}, index=["x", "y", "x"]), schema)
    assert [(f.column, f.check, f.failures, f.examples) for f in report.failures] == [
        (None, "field_uniqueness", 2, ["x"])  # two rows, one label: shown once
    ]


def test_a_table_check_that_cannot_read_a_column_of_the_wrong_dtype_is_a_failure() -> None:
    import pandera.pandas as pa

    ordered = pa.Check(lambda df: df["start"] <= df["end"], name="start_before_end")
    schema = pa.DataFrameSchema({"start": pa.Column(int), "end": pa.Column(int)}, checks=[ordered])
    report = validate_frame(pd.DataFrame({"start": ["1", "2"], "end": [3, 4]}), schema)
    assert ("start", "dtype('int64')") in [(f.column, f.check) for f in report.failures]
    indexed = pa.DataFrameSchema({"n": pa.Column(int)}, index=pa.Index(int, pa.Check.ge("zero")))
    with pytest.raises(InvalidArgumentError, match=r"on the index could not run"):
        validate_frame(pd.DataFrame({"n": [1]}), indexed)


def test_a_version_of_parquet_files_with_more_categories_together_than_one_has_loads(
    ws: Workspace, tmp_path: Path
) -> None:
    # Each file's pandas metadata gives its categoricals 8-bit codes (100 categories); the
    # files together have 200, which 8-bit codes cannot number.
    parts = tmp_path / "parts"
    parts.mkdir()
    for start in (0, 100):
        frame = pd.DataFrame({"shop": pd.Categorical(range(start, start + 100))})
        frame.to_parquet(parts / f"part-{start}.parquet", index=False)
    cv.data.add("shops", parts)
    loaded = cv.data.load("shops@1")["shop"]
    assert list(loaded.cat.categories) == list(range(200))
    assert loaded.tolist() == list(range(200))


def test_a_parquet_file_of_a_dataframe_with_categoricals_passes_its_versions_schema(
    ws: Workspace, tmp_path: Path
) -> None:
    # The version loads its categoricals of numbers and times back as categoricals, so its
    # schema expects them; a Parquet file written from the same DataFrame must read so too.
    cv.data.add("ratings", categories())
    schema = cv.data.infer_schema("ratings@1")
    categories().to_parquet(tmp_path / "ratings.parquet", index=False)
    report = cv.data.validate(tmp_path / "ratings.parquet", schema)
    assert report.passed, report.summary()


def test_booleans_fail_the_dtype_of_a_column_of_dates_or_bytes(ws: Workspace) -> None:
    # Dates and bytes read into pandas as objects, as booleans with gaps do; only a column
    # the schema knows to hold booleans (its allowed values) may take booleans instead.
    days = [datetime.date(2024, 1, d) for d in range(1, 21)]
    reference = pd.DataFrame({"day": days, "blob": [f"b{i}".encode() for i in range(20)]})
    schema = infer_schema(reference)
    flags = [True, False] * 10
    report = validate_frame(pd.DataFrame({"day": flags, "blob": flags}), schema)
    dtypes = [f.column for f in report.failures if f.check.startswith("dtype")]
    assert dtypes == ["day", "blob"], report.summary()


def test_a_categorical_of_times_in_a_time_zone_loads_back_as_the_same_instants(
    ws: Workspace,
) -> None:
    # pandas makes a categorical of Arrow's dictionary of zoned times without the zone:
    # 00:00 in Paris would come back as a plain 23:00.
    days = pd.to_datetime(["2024-01-01", "2024-01-02"]).tz_localize("Europe/Paris")
    cv.data.add("opens", pd.DataFrame({"day": pd.Categorical(days)}))
    assert list(cv.data.load("opens@1")["day"]) == list(days)
