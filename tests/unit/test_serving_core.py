"""Serving's building blocks: request parsing, adaptive batching, traffic splits, the log."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from conveyor.models.signature import ColumnSpec, Signature
from conveyor.serving.batching import Batcher
from conveyor.serving.payloads import Block, InputParser, PayloadError, check_unique_keys
from conveyor.serving.predlog import ParquetLog, PredictionEntry, read_log
from conveyor.serving.traffic import bucket, pick

SIG = Signature(
    (
        ColumnSpec("age", "int64"),
        ColumnSpec("income", "float64"),
        ColumnSpec("score", "float64", nullable=True),
    )
)
MIXED = Signature((ColumnSpec("age", "int64"), ColumnSpec("plan", "string")))


# -- parsing ---------------------------------------------------------------------------------


def test_records_and_split_bodies_give_the_same_ordered_array() -> None:
    parser = InputParser(SIG)
    records = parser.parse(
        {
            "instances": [
                {"score": 0.5, "income": 2.5, "age": 31},
                {"age": 40, "income": 1.0, "score": None},
            ]
        }
    )
    split = parser.parse(
        {"columns": ["age", "income", "score"], "data": [[31, 2.5, 0.5], [40, 1.0, None]]}
    )
    assert records.rows == split.rows == 2
    np.testing.assert_array_equal(records.data, split.data)
    assert records.data[0].tolist() == [31.0, 2.5, 0.5]
    assert np.isnan(records.data[1, 2])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"instances": [{"age": 1, "income": 2.0}]}, "column 'score': missing"),
        (
            {"instances": [{"age": 1, "income": 2.0, "score": 1.0, "zip": "x"}]},
            "column 'zip': not an input of this model",
        ),
        (
            {
                "instances": [
                    {"age": 1, "income": 2.0, "score": 1.0},
                    {"age": "x", "income": 1.0, "score": 1.0},
                ]
            },
            "column 'age', row 1: expected a number (int64), got the string 'x'",
        ),
        (
            {"columns": ["age", "income", "score"], "data": [[1, None, 1.0]]},
            "column 'income', row 0: null, but the model takes no missing values here",
        ),
        (
            {"columns": ["age", "income", "score"], "data": [[1.5, 2.0, 1.0]]},
            "column 'age', row 0: expected an integer (int64), got 1.5",
        ),
        (
            {"columns": ["age", "income", "score"], "data": [[1, 2.0]]},
            "data[0]: expected a row of 3 values",
        ),
        ({"rows": []}, 'The body needs "instances"'),
        (
            {"instances": [{"age": [1, 2], "income": 2.0, "score": 1.0}]},
            "column 'age', row 0: expected a number (int64), got a JSON array",
        ),
        (
            {
                "instances": [
                    {"age": 1, "income": 2.0, "score": 1.0},
                    {"age": [3], "income": [1, [2]], "score": 1.0},
                ]
            },
            "column 'income', row 1: expected a number (float64), got a JSON array",
        ),
        ({"instances": []}, '"instances" must be a non-empty list'),
        (
            {"columns": ["age", "age", "income", "score"], "data": [[1, 77, 2.0, 1.0]]},
            "\"columns\" names 'age' twice",
        ),
    ],
)
def test_each_bad_input_is_named_with_its_column_and_row(body: dict, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        InputParser(SIG).parse(body)
    assert message in str(caught.value)
    assert caught.value.status == 422


def test_a_boolean_column_takes_true_false_0_and_1_only() -> None:
    parser = InputParser(Signature((ColumnSpec("vip", "bool"), ColumnSpec("x", "float64"))))
    assert parser.parse({"columns": ["vip", "x"], "data": [[True, 1.5], [0, 2.0]]}).rows == 2
    with pytest.raises(PayloadError, match="column 'vip', row 0: expected true or false"):
        parser.parse({"columns": ["vip", "x"], "data": [[0.7, 1.5]]})


def test_extra_columns_are_dropped_when_asked() -> None:
    block = InputParser(SIG, extra="drop").parse(
        {"instances": [{"age": 1, "income": 2.0, "score": 1.0, "zip": "x"}]}
    )
    assert block.dropped == ("zip",)
    assert block.data.tolist() == [[1.0, 2.0, 1.0]]


def test_mixed_signatures_give_a_typed_dataframe() -> None:
    block = InputParser(MIXED).parse({"instances": [{"age": 3, "plan": "gold"}]})
    assert isinstance(block.data, pd.DataFrame)
    assert block.data.to_dict("records") == [{"age": 3.0, "plan": "gold"}]
    with pytest.raises(PayloadError, match="column 'plan', row 0: expected a string"):
        InputParser(MIXED).parse({"instances": [{"age": 3, "plan": 7}]})


def test_a_time_column_takes_text_epochs_and_datetimes() -> None:
    from datetime import datetime

    timed = Signature((ColumnSpec("seen", "datetime64[ns]"),))
    rows = [
        {"seen": "2026-01-01T05:00:00"},
        {"seen": datetime(2026, 1, 1, 6)},  # what an online timestamp feature reads as
    ]
    block = InputParser(timed).parse({"instances": rows})
    assert [str(t) for t in block.data["seen"]] == ["2026-01-01 05:00:00", "2026-01-01 06:00:00"]


def test_v2_inputs_are_one_tensor_per_column() -> None:
    parser = InputParser(SIG)
    block = parser.parse_v2(
        {
            "inputs": [
                {"name": "age", "shape": [2], "datatype": "INT64", "data": [1, 2]},
                {"name": "income", "shape": [2, 1], "datatype": "FP64", "data": [[1.0], [2.0]]},
                {"name": "score", "shape": [2], "datatype": "FP64", "data": [0.1, 0.2]},
            ]
        }
    )
    assert block.data.tolist() == [[1.0, 1.0, 0.1], [2.0, 2.0, 0.2]]
    with pytest.raises(PayloadError, match="shape \\[3\\] says 3 rows, data has 2"):
        parser.parse_v2({"inputs": [{"name": "age", "shape": [3], "data": [1, 2]}]})
    with pytest.raises(PayloadError, match="inputs name 'age' twice"):
        parser.parse_v2({"inputs": [{"name": "age", "data": [1]}, {"name": "age", "data": [2]}]})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"instances": [{"age": 1, "age": 2, "income": 1.0}]}', "instances[0] names 'age' twice"),
        (  # in a later row, with blanks before the colons and a time of day in the row
            b'{"instances": [{"age": 1, "at": "10:00"}, {"age" : 1, "at": "10:00", "age" : 2}]}',
            "instances[1] names 'age' twice",
        ),
        (b'{"instances": [{"age": 1}], "instances": [{"age": 2}]}', "The body names 'instances'"),
        (
            b'{"inputs": [{"name": "age", "data": [1], "name": "income"}]}',
            "inputs[0] names 'name' twice",
        ),
        (b'{"data": [[{"a": 1, "b": 2, "a": 3}]]}', "data[0][0] names 'a' twice"),
    ],
)
def test_a_key_given_twice_in_one_json_object_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        check_unique_keys(raw, orjson.loads(raw))
    assert message in str(caught.value)
    assert "give each key once" in str(caught.value)
    assert caught.value.status == 422


@pytest.mark.parametrize(
    "raw",
    [
        b'{"columns": ["age", "income"], "data": [[1, 2.0], [3, 4.0]]}',
        b'{"instances": [{"age": 1, "at": "2026-01-01T10:00:00"}, {"age": 2, "at": "a\\": "}]}',
        b'{"instances": [{"age": 1, "note": {"x": 1, "y": "\\" :"}}], "return": ["proba"]}',
        b'[{"prediction_id": "p1", "label": 1}, {"prediction_id": "p2", "label": 0}]',
    ],
)
def test_keys_given_once_pass_even_with_colons_in_strings(raw: bytes) -> None:
    check_unique_keys(raw, orjson.loads(raw))  # no error


# -- batching --------------------------------------------------------------------------------


def _rows(*values: float) -> Block:
    return Block(np.array([[v] for v in values]), len(values))


def test_a_lone_request_is_not_held_back() -> None:
    calls: list[int] = []

    def predict(data: np.ndarray, want: frozenset[str]) -> dict:
        calls.append(len(data))
        return {"predictions": data[:, 0] * 2}

    async def main() -> float:
        batcher = Batcher(predict, max_batch=64, max_wait_ms=500)
        started = time.perf_counter()
        result = await batcher.submit(_rows(3.0))
        elapsed = time.perf_counter() - started
        assert result.outputs["predictions"].tolist() == [6.0]
        batcher.close()
        return elapsed

    assert asyncio.run(main()) < 0.25  # far below the 500 ms max wait
    assert calls == [1]


def test_concurrent_requests_share_model_calls_and_get_their_own_rows() -> None:
    calls: list[int] = []

    def predict(data: np.ndarray, want: frozenset[str]) -> dict:
        calls.append(len(data))
        time.sleep(0.02)  # a slow model: requests pile up while it runs
        return {"predictions": data[:, 0] * 10}

    async def main() -> list[list[float]]:
        batcher = Batcher(predict, max_batch=16, max_wait_ms=1)
        results = await asyncio.gather(
            *(batcher.submit(_rows(float(i), float(i) + 0.5)) for i in range(30))
        )
        batcher.close()
        return [r.outputs["predictions"].tolist() for r in results]

    answers = asyncio.run(main())
    assert answers == [[i * 10.0, i * 10.0 + 5.0] for i in range(30)]
    assert len(calls) < 30  # coalesced
    assert max(calls) <= 16  # never past max_batch
    assert sum(calls) == 60


def test_a_failing_request_fails_alone() -> None:
    def predict(data: np.ndarray, want: frozenset[str]) -> dict:
        time.sleep(0.005)
        if (data < 0).any():
            raise ValueError("negative input")
        return {"predictions": data[:, 0]}

    async def main() -> list[object]:
        batcher = Batcher(predict, max_batch=64)
        values = [1.0, 2.0, -1.0, 3.0, 4.0, -2.0, 5.0]
        out = await asyncio.gather(
            *(batcher.submit(_rows(v)) for v in values), return_exceptions=True
        )
        batcher.close()
        return out

    outcomes = asyncio.run(main())
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, ValueError)]
    assert failed == [2, 5]
    assert [
        o.outputs["predictions"].tolist() for o in outcomes if not isinstance(o, Exception)
    ] == [
        [1.0],
        [2.0],
        [3.0],
        [4.0],
        [5.0],
    ]


# -- traffic ---------------------------------------------------------------------------------


def test_weights_split_traffic_in_proportion() -> None:
    picks = [pick([90.0, 10.0]) for _ in range(20_000)]
    share = picks.count(1) / len(picks)
    assert 0.08 < share < 0.12


def test_a_key_always_gets_the_same_side_and_keys_split_by_weight() -> None:
    sides = {f"customer-{i}": pick([50.0, 50.0], f"customer-{i}") for i in range(4000)}
    assert all(pick([50.0, 50.0], k) == side for k, side in list(sides.items())[:200])
    assert 0.45 < sum(sides.values()) / len(sides) < 0.55
    assert 0 <= bucket("x") < 100


# -- the prediction log ----------------------------------------------------------------------


def _entry(n: int, deployment: str = "prod") -> PredictionEntry:
    return PredictionEntry(
        at=time.time(),
        deployment=deployment,
        revision=1,
        model="m",
        version=2,
        role="primary",
        ids=[f"p{i}" for i in range(n)],
        inputs=np.arange(n * 2, dtype=float).reshape(n, 2),
        columns=["a", "b"],
        outputs={"predictions": np.arange(n)},
        latency_ms=1.5,
    )


def test_the_log_writes_every_row_it_accepts(tmp_path: Path) -> None:
    sink = ParquetLog(str(tmp_path / "logs"), "predictions", flush_rows=50, flush_seconds=60)
    for _ in range(30):
        assert sink.add(_entry(7))
    sink.close()
    frame = read_log(str(tmp_path / "logs"))
    assert len(frame) == 210 == sink.logged_rows
    assert set(frame.columns) >= {"prediction_id", "ts", "model_version", "inputs.a", "inputs.b"}
    assert not list((tmp_path / "logs").rglob(".*.tmp"))  # no half-written files


def test_a_file_uri_log_is_read_back_from_the_same_uri(tmp_path: Path) -> None:
    uri = (tmp_path / "a b").as_uri()  # file:///.../a%20b: the writer and the readers agree
    sink = ParquetLog(uri, "predictions", flush_seconds=60)
    assert sink.add(_entry(3))
    sink.close()
    assert len(read_log(uri)) == 3


def test_logged_columns_keep_their_nulls_and_text(tmp_path: Path) -> None:
    # Columns are built from their buffers (no pandas); nulls and non-ASCII text survive.
    first, second = _entry(2), _entry(1, deployment="canary")
    first.revision = None
    first.outputs = {"predictions": np.array(["oui", None], dtype=object)}
    second.outputs = {"predictions": np.array(["né"], dtype=object)}
    second.ids = ["q0"]
    sink = ParquetLog(str(tmp_path), "predictions", flush_seconds=60)
    sink.add(first)
    sink.add(second)
    sink.close()
    frame = read_log(str(tmp_path)).sort_values("prediction_id", kind="stable")
    rows = frame[["deployment", "revision", "prediction"]].to_dict("records")
    assert [r["deployment"] for r in rows] == ["prod", "prod", "canary"]
    assert [_or_none(r["prediction"]) for r in rows] == ["oui", None, "né"]
    assert [_or_none(r["revision"]) for r in rows] == [None, None, 1]


def test_failures_feature_ages_and_empty_outputs_build_their_columns() -> None:
    import pyarrow as pa

    from conveyor.serving.predlog import FailureEntry, build_failures, build_predictions

    failures = [
        FailureEntry(1.5, "prod", None, "m", 2, "primary", 422, 0.25, "e1"),
        FailureEntry(2.5, "prod", 3, "m", 2, "canary", 500, 1.0, "e2"),
    ]
    table = build_failures(failures)
    assert table.column("revision").to_pylist() == [None, 3]
    assert table.column("status").to_pylist() == [422, 500]
    assert table.column("status").type == pa.int16()
    assert table.column("role").to_pylist() == ["primary", "canary"]
    entry = _entry(2)
    entry.outputs = {"predictions": np.zeros((2, 0))}  # a model that outputs no columns
    entry.feature_age_s = [0.5, None]
    table = build_predictions([entry])
    assert table.column("prediction").to_pylist() == [[], []]
    assert table.column("feature_age_s").to_pylist() == [0.5, None]


def _or_none(value: object) -> object:
    return None if pd.isna(value) else value


def test_a_log_read_can_take_only_some_inputs(tmp_path: Path) -> None:
    sink = ParquetLog(str(tmp_path), "predictions", flush_seconds=60)
    sink.add(_entry(4))
    sink.close()
    frame = read_log(str(tmp_path), inputs=["b", "not-logged"])
    assert "inputs.a" not in frame.columns
    assert frame["inputs.b"].tolist() == [1.0, 3.0, 5.0, 7.0]
    assert {"prediction_id", "ts", "latency_ms"} <= set(frame.columns)


def test_logged_inputs_read_a_column_at_a_time_match_the_whole_read(tmp_path: Path) -> None:
    from conveyor.store.logs import LogInputs

    sink = ParquetLog(str(tmp_path), "predictions", flush_seconds=60)
    sink.add(_entry(4))
    shadow = _entry(3)
    shadow.role = "shadow"
    sink.add(shadow)
    sink.flush()
    later = _entry(2)
    later.columns = ["a", "c"]  # another model version logs other inputs, in another file
    sink.add(later)
    sink.close()
    whole = read_log(str(tmp_path))
    served = whole[whole["role"] != "shadow"].reset_index(drop=True)
    lazy = LogInputs(str(tmp_path), "predictions", deployment=None, start=None, end=None)
    assert len(lazy) == len(served) == 6
    assert sorted(lazy.columns) == ["a", "b", "c"]
    for name in ("a", "b", "c"):
        pd.testing.assert_series_equal(lazy[name], served[f"inputs.{name}"], check_names=False)


def test_a_failing_sink_keeps_rows_up_to_the_bound_and_counts_the_rest(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log folder should be")
    sink = ParquetLog(str(blocker), "predictions", max_buffer_rows=10, flush_seconds=60)
    assert sink.add(_entry(6))
    assert sink.flush() == 0  # the write failed...
    assert sink.failed_writes == 1
    assert sink.buffered_rows == 6  # ...and the rows are still held
    assert sink.add(_entry(4))
    assert not sink.add(_entry(3))  # past the bound: refused and counted
    assert sink.dropped_rows == 3
    closed = threading.Thread(target=sink.close)
    closed.start()
    closed.join(10)
    assert sink.dropped_rows == 13  # what could never be written is reported, not hidden


def test_two_dimensional_outputs_and_mixed_probability_widths_are_logged(tmp_path: Path) -> None:
    sink = ParquetLog(str(tmp_path), "predictions", flush_seconds=60)
    regressor = _entry(3)
    regressor.outputs = {"predictions": np.ones((3, 1))}  # a torch regressor's (n, 1)
    two = _entry(2)
    two.outputs = {"predictions": np.array([0, 1]), "proba": np.array([[0.9, 0.1], [0.2, 0.8]])}
    three = _entry(1)
    three.outputs = {"predictions": np.array([2]), "proba": np.array([[0.1, 0.1, 0.8]])}
    for entry in (regressor, two, three):
        sink.add(entry)
    sink.close()
    assert sink.dropped_rows == 0
    frame = read_log(str(tmp_path))
    assert len(frame) == 6
    assert [list(p) for p in frame["proba"].dropna()] == [[0.9, 0.1], [0.2, 0.8], [0.1, 0.1, 0.8]]


def test_an_entry_that_cannot_be_stored_is_dropped_without_blocking_the_rest(
    tmp_path: Path,
) -> None:
    sink = ParquetLog(str(tmp_path), "predictions", flush_seconds=60)
    broken = _entry(4)
    broken.outputs = {"predictions": np.array([object(), object(), object(), object()])}
    broken.ids = ["x"] * 3  # and its ids do not match its rows
    sink.add(_entry(5))
    sink.add(broken)
    sink.add(_entry(6))
    assert sink.flush() == 11
    sink.close()
    assert sink.dropped_rows == 3
    assert len(read_log(str(tmp_path))) == 11


def test_groups_already_written_are_not_written_again_after_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = ParquetLog(str(tmp_path), "predictions", flush_seconds=60)
    original = sink._put
    calls: list[str] = []

    def flaky(folder: str, name: str, table: object) -> None:
        calls.append(folder)
        if "deployment=b" in folder and len(calls) <= 2:
            raise OSError("the sink blinked")
        original(folder, name, table)  # type: ignore[arg-type]

    monkeypatch.setattr(sink, "_put", flaky)
    sink.add(_entry(2, deployment="a"))
    sink.add(_entry(3, deployment="b"))
    assert sink.flush() == 2  # a written; b kept
    assert sink.buffered_rows == 3
    assert sink.flush() == 3
    sink.close()
    frame = read_log(str(tmp_path))
    assert sorted(frame.groupby("deployment").size().to_dict().items()) == [("a", 2), ("b", 3)]


def test_a_model_that_returns_the_wrong_number_of_rows_fails_its_requests_not_hangs() -> None:
    def predict(data: np.ndarray, want: frozenset[str]) -> dict:
        return {"predictions": np.array([1.0])}  # one answer, whatever the rows

    async def main() -> list[object]:
        batcher = Batcher(predict)
        out = await asyncio.wait_for(
            asyncio.gather(batcher.submit(_rows(1.0, 2.0)), return_exceptions=True), 5
        )
        scalar = Batcher(lambda data, want: {"predictions": 3.0})
        out += await asyncio.wait_for(
            asyncio.gather(scalar.submit(_rows(1.0)), return_exceptions=True), 5
        )
        batcher.close()
        scalar.close()
        return out

    first, second = asyncio.run(main())
    assert isinstance(first, ValueError)
    assert "returned 1 predictions for 2 input row(s)" in str(first)
    assert isinstance(second, ValueError)
    assert "single value" in str(second)


def test_a_key_given_twice_cannot_hide_behind_deep_nesting() -> None:
    # orjson reads 1,024 levels; the exact check's parser stops sooner: such a body was let
    # through unchecked, repeated key and all.
    pad = b"[" * 1000 + b"]" * 1000
    raw = b'{"instances": [{"a": 1, "a": 999}], "pad": ' + pad + b"}"
    with pytest.raises(PayloadError, match="nests too deeply"):
        check_unique_keys(raw, orjson.loads(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b'[{"prediction_id": "p1", "label": 1}, {"prediction_id": "p2", "label": 0}]',
        b'{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1], "data": [1.0],'
        b' "parameters": {"content_type": "np"}}]}',
        b'{"instances": [{"age": 1, "note": {"x": {"y": 1}}}]}',
    ],
)
def test_common_bodies_are_settled_without_parsing_them_again(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from conveyor.serving import payloads

    def no_second_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(payloads, "json", type("json", (), {"loads": no_second_parse}))
    check_unique_keys(raw, json.loads(raw))  # settled by counting
