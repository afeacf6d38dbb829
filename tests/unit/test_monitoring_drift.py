"""Drift detection on generated data with known shifts, and the edge cases users hit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import conveyor as cv


def tables(rows: int, seed: int, *, shifted: bool) -> pd.DataFrame:
    """20 numeric and 5 categorical columns; with ``shifted``, num_00, num_07 and cat_2 move."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for j in range(20):
        scale = 1.0 + j / 10
        column = rng.normal(10.0 * j, scale, rows)
        if shifted and j == 0:
            column = column + 0.5 * scale  # half a standard deviation
        if shifted and j == 7:
            column = rng.normal(10.0 * j, 1.6 * scale, rows)  # wider, same mean
        data[f"num_{j:02d}"] = column
    for j, k in enumerate((3, 5, 10, 20, 50)):
        p = np.linspace(1, 2, k)
        if shifted and j == 2:
            p = p[::-1] ** 2  # the common categories become rare
        data[f"cat_{j}"] = rng.choice([f"c{i}" for i in range(k)], size=rows, p=p / p.sum())
    return pd.DataFrame(data)


@pytest.mark.parametrize("rows", [10_000, 1_000_000])
def test_exactly_the_shifted_columns_are_found(rows: int) -> None:
    report = cv.monitoring.drift(tables(rows, 1, shifted=False), tables(rows, 2, shifted=True))
    assert report.drifted_columns == ["num_00", "num_07", "cat_2"]
    assert report.dataset_drifted is False  # 3 of 25 columns
    assert report.share_drifted == pytest.approx(3 / 25)


@pytest.mark.parametrize("rows", [10_000, 1_000_000])
def test_two_samples_of_one_distribution_raise_no_alarm(rows: int) -> None:
    report = cv.monitoring.drift(tables(rows, 3, shifted=False), tables(rows, 4, shifted=False))
    assert report.drifted_columns == []


def test_small_samples_use_tests_corrected_for_many_columns() -> None:
    flagged = 0
    for seed in range(20):
        ref, cur = tables(500, seed, shifted=False), tables(500, 100 + seed, shifted=False)
        report = cv.monitoring.drift(ref, cur)
        assert {c.test for c in report.columns} == {"ks", "chi2"}
        flagged += len(report.drifted_columns)
    # 500 column comparisons without drift: the false-discovery control keeps alarms rare
    assert flagged <= 5
    shifted = cv.monitoring.drift(tables(500, 1, shifted=False), tables(500, 2, shifted=True))
    assert {"num_00", "cat_2"} <= set(shifted.drifted_columns)


def test_edge_cases_give_a_result_not_an_exception() -> None:
    ref = pd.DataFrame(
        {
            "plan": ["a", "b"] * 500,
            "empty": [None] * 1000,
            "flat": [1.0] * 1000,
            "x": np.arange(1000.0),
        }
    )
    cur = pd.DataFrame(
        {"plan": ["a", "z"] * 500, "empty": [None] * 1000, "flat": [1.0] * 1000, "x": 1.0}
    )
    report = cv.monitoring.drift(ref, cur)
    by = {c.column: c for c in report.columns}
    assert by["plan"].drifted is True
    assert "not in the reference: z" in by["plan"].note
    assert by["empty"].drifted is None
    assert "no values" in by["empty"].note
    assert by["flat"].drifted is False
    assert by["x"].drifted is True
    nothing = cv.monitoring.drift(ref, ref.head(0))
    assert nothing.dataset_drifted is None
    assert {c.drifted for c in nothing.columns} == {None}
    assert nothing.to_dict()["columns"][0]["note"]


def test_tests_and_thresholds_can_be_chosen_per_column() -> None:
    ref, cur = tables(20_000, 5, shifted=False), tables(20_000, 6, shifted=True)
    report = cv.monitoring.drift(
        ref,
        cur,
        columns=["num_00", "num_01"],
        tests={"num_00": "psi"},
        thresholds={"num_00": 5.0},
    )
    by = {c.column: c for c in report.columns}
    assert (by["num_00"].test, by["num_00"].threshold, by["num_00"].drifted) == ("psi", 5.0, False)
    assert by["num_01"].test == "wasserstein"
    table = report.table()
    assert list(table["column"]) == ["num_00", "num_01"]
    with pytest.raises(cv.InvalidArgumentError, match="Unknown drift test"):
        cv.monitoring.drift(ref, cur, tests="anova")
    with pytest.raises(cv.InvalidArgumentError, match="'nope'"):
        cv.monitoring.drift(ref, cur, columns=["nope"])


def test_dictionary_encoded_tables_give_the_same_report(tmp_path: Path) -> None:
    ref, cur = tables(20_000, 7, shifted=False), tables(20_000, 8, shifted=True)
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    lean_ref = cv.monitoring.read_table(tmp_path / "ref.parquet")
    lean_cur = cv.monitoring.read_table(tmp_path / "cur.parquet")
    assert str(lean_ref["cat_0"].dtype) == "category"
    plain = cv.monitoring.drift(ref, cur).table()
    lean = cv.monitoring.drift(lean_ref, lean_cur).table()
    pd.testing.assert_frame_equal(plain, lean)


def test_the_distances_equal_scipy_with_ties_and_unequal_sizes() -> None:
    from scipy.stats import ks_2samp, wasserstein_distance

    from conveyor.monitoring.stats import _distances

    rng = np.random.default_rng(0)
    for n, m in [(1000, 300), (5000, 5000), (777, 1234)]:
        r = np.sort(np.round(rng.normal(size=n), 1))  # rounded: many ties, across samples too
        c = np.sort(np.round(rng.normal(0.2, 1.1, size=m), 1))
        ks, w = _distances(r, c)
        assert ks == pytest.approx(ks_2samp(r, c).statistic, abs=1e-12)
        assert w == pytest.approx(wasserstein_distance(r, c), rel=1e-9)


def test_text_in_a_numeric_column_tiny_samples_and_mismatched_tests_are_handled() -> None:
    ref = pd.DataFrame({"x": np.arange(2000.0), "plan": ["a", "b"] * 1000, "one": [1.0] * 2000})
    cur = pd.DataFrame(
        {"x": ["12", "oops", 7.5] * 10, "plan": ["a", "a", "b"] * 10, "one": [1.0] * 30}
    )
    report = cv.monitoring.drift(ref, cur, tests="ks")  # ks asked of every column
    by = {c.column: c for c in report.columns}
    assert "not numbers" in by["x"].note
    assert by["x"].current_rows == 20  # the 10 "oops" left out
    assert by["plan"].test == "chi2"  # the categorical counterpart of ks
    tiny = cv.monitoring.drift(ref.head(1), cur.head(1).assign(x=1.0))
    assert all(c.p_value is None or np.isfinite(c.p_value) for c in tiny.columns)


def test_performance_reads_the_task_from_the_values_and_keeps_class_order() -> None:
    from conveyor.monitoring.checks import performance

    window = pd.DataFrame(
        {
            "prediction_id": [str(i) for i in range(40)],
            "prediction": [[v + 0.5] for v in range(40)],  # an (n, 1) regressor's output
        }
    )
    labels = pd.DataFrame({"prediction_id": [str(i) for i in range(40)], "label": list(range(40))})
    regression = performance(window, labels)
    assert regression["task"] == "regression"
    assert regression["mae"] == pytest.approx(0.5)
    classes = pd.DataFrame(
        {
            "prediction_id": [str(i) for i in range(40)],
            "prediction": [10, 9] * 20,
            "proba": [[0.2, 0.8], [0.9, 0.1]] * 20,  # columns in the model's order: 9, 10
        }
    )
    truth = pd.DataFrame({"prediction_id": [str(i) for i in range(40)], "label": [10, 9] * 20})
    scored = performance(classes, truth)
    assert scored["accuracy"] == 1.0
    assert scored["roc_auc"] == 1.0  # 10 is the positive class, not "10" < "9" as text


def test_histograms_bin_both_samples_alike_for_the_report() -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 4000), "c": rng.choice(list("abcdefghijklm"), 4000)})
    cur = pd.DataFrame({"x": rng.normal(2, 1, 1000), "c": ["z"] * 1000})
    x, c = cv.monitoring.drift(ref, cur).columns
    assert x.histogram is not None
    assert c.histogram is not None
    assert len(x.histogram["edges"]) == 21
    assert sum(x.histogram["reference"]) == pytest.approx(1.0)
    assert sum(x.histogram["current"]) == pytest.approx(1.0)
    # the current sample sits to the right: most of its mass in the upper half of the bins
    assert sum(x.histogram["current"][10:]) > 0.8 > sum(x.histogram["reference"][10:])
    assert c.histogram["categories"][0] == "z"  # the most frequent of both, first
    assert c.histogram["categories"][-1] == "(other)"  # past the 10 shown
    assert sum(c.histogram["reference"]) == pytest.approx(1.0)
    assert "histogram" not in cv.monitoring.drift(ref, cur).table().columns


def test_volume_is_judged_against_the_usual_rate_of_earlier_windows() -> None:
    from conveyor.monitoring.checks import volume

    hours = [(1200, 3600.0), (1000, 3600.0), (1100, 3600.0)]
    assert volume(500, 1800.0, hours)["ratio"] == pytest.approx(500 / 550)  # half a window
    assert volume(500, 1800.0, hours)["anomaly"] is False
    assert volume(5000, 3600.0, hours)["anomaly"] is True  # a flood
    assert volume(0, 3600.0, hours)["anomaly"] is True  # an outage
    assert volume(10, 3600.0, hours[:2])["anomaly"] is None  # too little history


@pytest.mark.parametrize("rows", [10_000, 200_000])
def test_a_stored_profile_judges_drift_like_the_data_it_describes(rows: int) -> None:
    import pyarrow as pa

    from conveyor.data.tables import profile_table
    from conveyor.monitoring.stats import drift_from_profile, profiled

    reference = tables(rows, 1, shifted=False)
    profile = profile_table(pa.Table.from_pandas(reference, preserve_index=False))
    columns = [c for c in reference.columns if profiled(profile, c)]
    assert "cat_4" not in columns  # 50 categories: more than the profile counts
    for current, expected in (
        (tables(rows // 2, 2, shifted=True), ["num_00", "num_07", "cat_2"]),
        (tables(rows // 2, 3, shifted=False), []),
    ):
        exact = cv.monitoring.drift(reference[columns], current[columns])
        approx = drift_from_profile(profile, current, columns=columns)
        assert approx.drifted_columns == exact.drifted_columns == expected
        for a, b in zip(approx.columns, exact.columns, strict=True):
            if a.kind == "numeric" and a.test == "wasserstein":
                assert a.statistic == pytest.approx(b.statistic, abs=0.02)  # binned reference


def test_a_profile_judges_a_skewed_column_like_its_data() -> None:
    import pyarrow as pa

    from conveyor.data.tables import profile_table
    from conveyor.monitoring.stats import drift_from_profile

    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"income": rng.lognormal(10, 1.5, 3000)})  # most in one bin
    profile = profile_table(pa.Table.from_pandas(reference, preserve_index=False))
    later = rng.lognormal(10, 1.5, 2000)
    for current, drifted in ((later, []), (later * 1.5, ["income"])):
        frame = pd.DataFrame({"income": current})
        for test in ("ks", "wasserstein"):
            exact = cv.monitoring.drift(reference, frame, tests={"income": test})
            approx = drift_from_profile(profile, frame, columns=["income"], tests={"income": test})
            assert approx.drifted_columns == exact.drifted_columns == drifted, test
            assert approx.columns[0].statistic == pytest.approx(
                exact.columns[0].statistic, abs=0.025
            )


def test_a_profile_of_whole_numbers_does_not_see_drift_in_their_steps() -> None:
    import pyarrow as pa

    from conveyor.data.tables import profile_table
    from conveyor.monitoring.stats import drift_from_profile

    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"calls": rng.poisson(2.0, 4000), "days": rng.poisson(9.0, 4000)})
    profile = profile_table(pa.Table.from_pandas(reference, preserve_index=False))
    same = pd.DataFrame({"calls": rng.poisson(2.0, 800), "days": rng.poisson(9.0, 800)})
    more = pd.DataFrame({"calls": rng.poisson(3.0, 800), "days": rng.poisson(9.0, 800)})
    assert drift_from_profile(profile, same, columns=["calls", "days"]).drifted_columns == []
    assert drift_from_profile(profile, more, columns=["calls", "days"]).drifted_columns == ["calls"]
