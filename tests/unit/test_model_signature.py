"""Signatures: inference from data, checks of input, and differences between versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conveyor.models import ColumnSpec, Signature, SignatureError, infer_signature


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [31, 45, 52],
            "income": [1.5, None, 3.0],
            "plan": ["a", "b", "a"],
            "active": [True, False, True],
        }
    )


def test_inference_names_dtypes_and_nullability() -> None:
    sig = infer_signature(frame(), np.array([0, 1, 1]))
    assert [(c.name, c.dtype, c.nullable) for c in sig.inputs] == [
        ("age", "int64", False),
        ("income", "float64", True),
        ("plan", "string", False),
        ("active", "bool", False),
    ]
    assert sig.outputs == (ColumnSpec(None, "int64", False, (-1,)),)
    assert Signature.from_dict(sig.to_dict()) == sig


def test_prepare_orders_columns_drops_extras_and_widens_safely() -> None:
    sig = infer_signature(frame())
    given = frame()[["plan", "active", "income", "age"]].assign(extra=0)
    given["age"] = given["age"].astype("int32")
    prepared = sig.prepare(given)
    assert list(prepared.columns) == ["age", "income", "plan", "active"]


def test_every_problem_is_reported_at_once() -> None:
    sig = infer_signature(frame())
    bad = pd.DataFrame({"age": [1.5], "income": [1.0], "active": [None]})
    with pytest.raises(SignatureError) as caught:
        sig.prepare(bad)
    assert caught.value.problems == [
        "column 'age': expected int64, got float64",
        "column 'plan': missing",
        "column 'active': expected bool, got string",
    ]


def test_missing_values_in_a_column_signed_without_them_are_a_problem() -> None:
    sig = infer_signature(frame())
    with_nulls = frame().assign(age=[1.0, None, 2.0])
    sig_float = Signature(tuple(ColumnSpec(c.name, "float64") for c in sig.inputs[:1]))
    assert sig_float.problems(with_nulls) == [
        "column 'age': 1 missing value(s), but the model was signed with none "
        "(fill them, or sign it with nullable=True)"
    ]


def test_tensor_signatures_check_dtype_and_shape() -> None:
    sig = infer_signature(np.zeros((4, 3), dtype="float32"))
    assert sig.is_tensor
    assert sig.problems(np.zeros((2, 3), dtype="float32")) == []
    assert sig.problems(np.zeros((2, 5), dtype="float32")) == [
        "tensor: dimension 1 must be 3, got 5"
    ]


def test_diff_lists_removed_added_and_changed_inputs() -> None:
    a = infer_signature(frame())
    b = infer_signature(frame().drop(columns="plan").assign(age=[1.0, 2.0, 3.0], new=1))
    assert a.diff(b) == [
        "input 'new' added",
        "input 'plan' removed",
        "input age: int64 -> age: float64",
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_the_cli_reads_text_columns_of_a_file_as_text(tmp_path: Path, suffix: str) -> None:
    from conveyor.cli.models import _read_rows

    signature = Signature((ColumnSpec("zip", "string"), ColumnSpec("n", "int64")))
    path = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        path.write_text("zip,n\n01234,1\n")
    else:
        path.write_text('{"zip": "01234", "n": 1}\n')
    frame = _read_rows(path, suffix, signature)
    assert frame["zip"].tolist() == ["01234"]
    assert signature.prepare(frame)["zip"].tolist() == ["01234"]
