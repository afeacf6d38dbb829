"""import-mlflow reads MLflow model folders (as MLflow 3 writes them) without MLflow."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import conveyor as cv
from conveyor.core.errors import InvalidArgumentError, PermissionDeniedError
from tests.fixtures.skops_files import skops_call

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed")
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402


def mlflow_folder(root: Path, model: object, X: pd.DataFrame, fmt: str) -> Path:
    """Write what mlflow.sklearn.save_model writes: MLmodel, the model, the input example."""
    import skops.io

    root.mkdir(parents=True)
    if fmt == "skops":
        file = "model.skops"
        (root / file).write_bytes(skops.io.dumps(model))
    else:
        file = "model.pkl"
        (root / file).write_bytes(pickle.dumps(model))
    columns = [{"type": "double", "name": c, "required": True} for c in X.columns]
    outputs = [{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]
    sk: dict = {"pickled_model": file, "serialization_format": fmt, "sklearn_version": "1.9.1"}
    if fmt == "skops":
        sk["skops_trusted_types"] = ["sklearn.tree._tree.Tree"]
    meta = {
        "flavors": {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": file},
            "sklearn": sk,
        },
        "mlflow_version": "3.17.2",
        "model_uuid": "5488f1bf51684bb2994134d898e84e55",
        "run_id": "abc123",
        "saved_input_example_info": {"artifact_path": "input_example.json", "type": "dataframe"},
        "signature": {"inputs": json.dumps(columns), "outputs": json.dumps(outputs)},
    }
    (root / "MLmodel").write_text(yaml.safe_dump(meta))
    example = {"columns": list(X.columns), "data": X[:3].to_numpy().tolist()}
    (root / "input_example.json").write_text(json.dumps(example))
    return root


@pytest.fixture
def fitted() -> tuple[RandomForestClassifier, pd.DataFrame]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y), X


def test_a_skops_model_imports_with_the_types_mlflow_trusted(
    tmp_path: Path, fitted: tuple[RandomForestClassifier, pd.DataFrame]
) -> None:
    model, X = fitted
    folder = mlflow_folder(tmp_path / "rf", model, X, "skops")
    with cv.init(tmp_path / "p", project="imp"):
        v = cv.models.import_mlflow(str(folder), "rf")
        assert (v.ref, v.flavor) == ("rf/1", "sklearn")
        assert v.signature is not None
        assert v.signature.columns == list(X.columns)
        assert v.info["imported_from"]["run_id"] == "abc123"
        np.testing.assert_array_equal(cv.models.load("rf").predict(X), model.predict(X))
        assert cv.models.input_example("rf").shape == (3, 30)


def test_the_types_an_mlmodel_lists_as_trusted_are_not_trusted_for_its_own_file(
    tmp_path: Path, fitted: tuple[RandomForestClassifier, pd.DataFrame]
) -> None:
    model, X = fitted
    folder = mlflow_folder(tmp_path / "rf", model, X, "skops")
    made = tmp_path / "made-by-the-model"
    (folder / "model.skops").write_bytes(skops_call("os", "makedirs", [str(made)]))
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    meta["flavors"]["sklearn"]["skops_trusted_types"] = ["os.makedirs"]
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    with (
        cv.init(tmp_path / "p", project="imp"),
        pytest.raises(PermissionDeniedError, match=r"os\.makedirs"),
    ):
        cv.models.import_mlflow(str(folder), "rf")
    assert not made.exists()


def test_a_pickled_model_needs_trust(
    tmp_path: Path, fitted: tuple[RandomForestClassifier, pd.DataFrame]
) -> None:
    model, X = fitted
    folder = mlflow_folder(tmp_path / "rf", model, X, "cloudpickle")
    with cv.init(tmp_path / "p", project="imp"):
        with pytest.raises(PermissionDeniedError, match="trust"):
            cv.models.import_mlflow(str(folder), "rf")
        v = cv.models.import_mlflow(str(folder), "rf", trust=True)
        np.testing.assert_array_equal(cv.models.load(v.ref).predict(X), model.predict(X))


def test_a_folder_that_is_not_an_mlflow_model_says_so(tmp_path: Path) -> None:
    with cv.init(tmp_path / "p", project="imp"):
        with pytest.raises(InvalidArgumentError, match="no MLmodel file"):
            cv.models.import_mlflow(str(tmp_path), "rf")
        (tmp_path / "MLmodel").write_text(
            yaml.safe_dump({"flavors": {"sklearn": {"pickled_model": "../../etc/passwd"}}})
        )
        with pytest.raises(InvalidArgumentError, match="outside"):
            cv.models.import_mlflow(str(tmp_path), "rf", trust=True)


def test_an_input_example_outside_the_folder_is_refused(
    tmp_path: Path, fitted: tuple[RandomForestClassifier, pd.DataFrame]
) -> None:
    model, X = fitted
    folder = mlflow_folder(tmp_path / "rf", model, X, "skops")
    (tmp_path / "secret.json").write_text('{"columns": ["token"], "data": [["hunter2"]]}')
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    meta["saved_input_example_info"]["artifact_path"] = "../secret.json"
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    with (
        cv.init(tmp_path / "p", project="imp"),
        pytest.raises(InvalidArgumentError, match="outside"),
    ):
        cv.models.import_mlflow(str(folder), "rf")


def test_the_cli_imports_a_folder(
    tmp_path: Path, fitted: tuple[RandomForestClassifier, pd.DataFrame]
) -> None:
    model, X = fitted
    folder = mlflow_folder(tmp_path / "rf", model, X, "skops")
    project = tmp_path / "p"
    project.mkdir()
    cmd = [sys.executable, "-m", "conveyor", "--root", str(project)]
    subprocess.run([*cmd, "init"], check=True, capture_output=True, timeout=120)
    out = subprocess.run(
        [*cmd, "models", "import-mlflow", str(folder), "--name", "rf"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "as rf/1 (sklearn" in out.stdout


def with_example(folder: Path, info: dict, content: object) -> Path:
    """Replace the folder's input example with ``content`` as MLflow wrote it, ``info`` its
    ``saved_input_example_info``."""
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    meta["saved_input_example_info"] = {"artifact_path": "input_example.json", **info}
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    (folder / "input_example.json").write_text(json.dumps(content))
    return folder


def tensor_signed(folder: Path, dtype: str, width: int) -> Path:
    """Sign the folder's model with one tensor input, as MLflow does for array inputs."""
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    inputs = [{"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": [-1, width]}}]
    meta["signature"]["inputs"] = json.dumps(inputs)
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    return folder


def test_an_ndarray_example_is_kept_as_an_array(
    tmp_path: Path, fitted: tuple[RandomForestClassifier, pd.DataFrame]
) -> None:
    model, X = fitted
    rows = X[:3].to_numpy()
    folder = mlflow_folder(tmp_path / "rf", model, X, "skops")
    with_example(folder, {"type": "ndarray"}, rows.tolist())  # as MLflow 2.16 and later
    with cv.init(tmp_path / "p", project="imp"):
        v = cv.models.import_mlflow(str(folder), "rf")
        example = cv.models.input_example(v.ref)
        assert isinstance(example, np.ndarray)
        np.testing.assert_array_equal(example, rows)
        assert "notes" not in v.info["imported_from"]


def test_a_tf_serving_example_takes_the_dtype_of_its_tensor_signature(
    tmp_path: Path, fitted: tuple[RandomForestClassifier, pd.DataFrame]
) -> None:
    model, X = fitted
    rows = X[:3].to_numpy()
    folder = tensor_signed(mlflow_folder(tmp_path / "rf", model, X, "skops"), "float32", 30)
    info = {"type": "ndarray", "format": "tf-serving"}  # as MLflow before 2.16
    with_example(folder, info, {"inputs": rows.tolist()})
    with cv.init(tmp_path / "p", project="imp"):
        v = cv.models.import_mlflow(str(folder), "rf")
        example = cv.models.input_example(v.ref)
        assert (example.dtype, example.shape) == (np.dtype("float32"), (3, 30))
        np.testing.assert_allclose(example, rows, rtol=1e-6)
        assert v.signature is not None
        assert v.signature.is_tensor


def test_an_example_saved_with_inference_params_keeps_its_input(
    tmp_path: Path, fitted: tuple[RandomForestClassifier, pd.DataFrame]
) -> None:
    model, X = fitted
    rows = X[:2].to_numpy()
    folder = mlflow_folder(tmp_path / "rf", model, X, "skops")
    content = {"inputs": rows.tolist(), "params": {"threshold": 0.3}}
    with_example(folder, {"type": "ndarray", "params": "true"}, content)
    with cv.init(tmp_path / "p", project="imp"):
        v = cv.models.import_mlflow(str(folder), "rf")
        np.testing.assert_array_equal(cv.models.input_example(v.ref), rows)
        assert v.info["imported_from"]["notes"] == [
            "the input example's inference params were not kept (an example is input)"
        ]


def test_a_dict_of_one_dimensional_arrays_is_kept_as_a_table(
    tmp_path: Path, fitted: tuple[RandomForestClassifier, pd.DataFrame]
) -> None:
    model, X = fitted
    folder = mlflow_folder(tmp_path / "rf", model, X, "skops")
    with_example(folder, {"type": "ndarray"}, {c: X[c][:4].tolist() for c in X.columns})
    with cv.init(tmp_path / "p", project="imp"):
        v = cv.models.import_mlflow(str(folder), "rf")
        pd.testing.assert_frame_equal(
            cv.models.input_example(v.ref), X[:4].reset_index(drop=True), check_dtype=False
        )


def test_a_sparse_example_is_kept_dense_and_the_import_says_so(
    tmp_path: Path, fitted: tuple[RandomForestClassifier, pd.DataFrame]
) -> None:
    model, X = fitted
    dense = X[:3].to_numpy() * (np.arange(30) % 3 == 0)  # two columns in three are zero
    rows, cols = np.nonzero(dense)
    csr = {
        "data": dense[rows, cols].tolist(),
        "indices": cols.tolist(),
        "indptr": np.searchsorted(rows, np.arange(4)).tolist(),
        "shape": [3, 30],
    }
    folder = mlflow_folder(tmp_path / "rf", model, X, "skops")
    with_example(folder, {"type": "sparse_matrix_csr"}, csr)
    with cv.init(tmp_path / "p", project="imp"):
        v = cv.models.import_mlflow(str(folder), "rf")
        np.testing.assert_array_equal(cv.models.input_example(v.ref), dense)
        assert v.info["imported_from"]["notes"] == [
            "the sparse input example was kept as a dense array"
        ]


@pytest.mark.parametrize(
    ("info", "content", "why"),
    [
        (
            {"type": "ndarray"},
            {"image": [[[0.0, 1.0]]], "mask": [[1, 0]]},
            r"the input example \(ndarray\) was not kept: it is 2 named arrays "
            r"\(image \[1, 1, 2\], mask \[1, 2\]\); an example is one table or one array",
        ),
        (
            {"type": "ndarray"},
            [[1.0, 2.0], [3.0]],
            r"the input example \(ndarray\) was not kept: its values do not make one array",
        ),
        (
            {"type": "json_object"},
            {"messages": [{"role": "user", "content": "hi"}]},
            r"the input example \(json_object\) was not kept: it is free-form JSON",
        ),
        (
            {"type": "ndarray"},
            [[1.0, 2.0]],
            r"the input example was not kept: The input does not match the model's signature",
        ),
    ],
    ids=["named-tensors", "ragged", "chat", "not-the-signature"],
)
def test_an_example_that_cannot_be_kept_is_named_in_the_import_notes(
    tmp_path: Path,
    fitted: tuple[RandomForestClassifier, pd.DataFrame],
    info: dict,
    content: object,
    why: str,
) -> None:
    model, X = fitted
    folder = with_example(mlflow_folder(tmp_path / "rf", model, X, "skops"), info, content)
    with cv.init(tmp_path / "p", project="imp"):
        v = cv.models.import_mlflow(str(folder), "rf")
        assert cv.models.input_example(v.ref) is None
        (note,) = v.info["imported_from"]["notes"]
        assert re.match(why, note), note


def test_the_cli_says_what_of_the_example_it_did_not_keep(
    tmp_path: Path, fitted: tuple[RandomForestClassifier, pd.DataFrame]
) -> None:
    model, X = fitted
    folder = mlflow_folder(tmp_path / "rf", model, X, "skops")
    (folder / "input_example.json").unlink()
    project = tmp_path / "p"
    project.mkdir()
    cmd = [sys.executable, "-m", "conveyor", "--root", str(project)]
    subprocess.run([*cmd, "init"], check=True, capture_output=True, timeout=120)
    out = subprocess.run(
        [*cmd, "models", "import-mlflow", str(folder), "--name", "rf"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "as rf/1 (sklearn" in out.stdout
    assert "Note: the input example the MLmodel names, input_example.json, is not in the" in (
        " ".join(out.stderr.split())
    )
