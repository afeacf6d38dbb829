"""import-mlflow reads MLflow model folders (as MLflow 3 writes them) without MLflow."""

from __future__ import annotations

import json
import pickle
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
    # Refused the same whether or not such a file exists: an uploaded folder cannot probe
    # which files the importing machine (a team server) has.
    for outside in ("../secret.json", "../no-such-file.json"):
        meta["saved_input_example_info"]["artifact_path"] = outside
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
