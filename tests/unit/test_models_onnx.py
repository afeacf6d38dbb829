"""ONNX: export a scikit-learn version (checked against the original), load and serve it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import conveyor as cv
from conveyor.core.errors import InvalidArgumentError

pytest.importorskip("skl2onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier


def test_export_checks_writes_and_registers_an_onnx_version(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    with cv.init(tmp_path / "p", project="onnx") as ws:
        cv.models.log(model, "rf", input_example=X[:20])
        result = cv.models.export("rf/1", path=str(tmp_path / "rf.onnx"), register="rf-onnx")
        assert (result["labels_equal"], result["registered"]) == (True, "rf-onnx/1")
        assert result["max_proba_diff"] < 1e-4
        import onnx

        assert onnx.load(str(tmp_path / "rf.onnx")).graph.input[0].name == "X"
        onnx_version = cv.models.load("rf-onnx")
        assert onnx_version.flavor.name == "onnx"
        np.testing.assert_array_equal(onnx_version.predict(X), model.predict(X))
        np.testing.assert_allclose(onnx_version.predict_proba(X), model.predict_proba(X), atol=1e-5)
        source = cv.models.get("rf/1")
        downstream = ws.lineage(cv.ObjectRef("model_version", source.id), direction="downstream")
        assert [e.relation for e in downstream.edges] == ["exported_as"]


def test_an_onnx_classifier_names_its_classes_as_the_original_does(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    labels = y.map({0: "malignant", 1: "benign"})
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, labels)
    with cv.init(tmp_path / "p", project="onnx"):
        cv.models.log(model, "rf", input_example=X[:20])
        cv.models.export("rf/1", register="rf-onnx")
        onnx_version = cv.models.load("rf-onnx")
        assert onnx_version.version.info["classes"] == list(model.classes_)
        np.testing.assert_array_equal(onnx_version.predict(X[:50]), model.predict(X[:50]))


def test_a_linear_onnx_classifier_names_its_classes_too(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=5000).fit(X, y + 3)  # classes 3 and 4
    with cv.init(tmp_path / "p", project="onnx"):
        cv.models.log(model, "lr", input_example=X[:20])
        cv.models.export("lr/1", register="lr-onnx")
        assert cv.models.load("lr-onnx").version.info["classes"] == [3, 4]


def test_export_needs_an_input_example(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    with cv.init(tmp_path / "p", project="onnx"):
        cv.models.log(RandomForestClassifier(n_estimators=2).fit(X, y), "rf")
        with pytest.raises(InvalidArgumentError, match="no input example"):
            cv.models.export("rf/1", path=str(tmp_path / "x.onnx"))
        assert not (tmp_path / "x.onnx").exists()


def test_the_cli_exports_to_a_file(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    (tmp_path / "conveyor.toml").write_text('project = "onnx"\n')
    with cv.init(tmp_path):
        cv.models.log(RandomForestClassifier(n_estimators=3).fit(X, y), "rf", input_example=X[:5])
    out = subprocess.run(
        [sys.executable, "-m", "conveyor", "models", "export", "rf/1", "--format", "onnx"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Wrote rf-1.onnx: predictions checked on 5 example rows" in out.stdout
    assert (tmp_path / "rf-1.onnx").stat().st_size > 0


def _reads_a_file(location: str) -> object:
    """An ONNX model whose output is a tensor it says is kept in the file ``location``."""
    from onnx import TensorProto, helper

    weights = TensorProto(name="W", data_type=TensorProto.UINT8, dims=[6])
    weights.data_location = TensorProto.EXTERNAL
    weights.external_data.add(key="location", value=location)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["W"], ["Y"])],
        "leak",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("Y", TensorProto.UINT8, [6])],
        initializer=[weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_model_that_keeps_a_tensor_in_another_file_is_refused(tmp_path: Path) -> None:
    from conveyor.core.errors import IntegrityError
    from conveyor.models.flavors import get_flavor

    (tmp_path / "secret.txt").write_bytes(b"SECRET")  # beside where the model is loaded
    model = _reads_a_file("secret.txt")
    with cv.init(tmp_path / "p", project="onnx"), pytest.raises(InvalidArgumentError, match="'W'"):
        cv.models.log(model, "leak")
    flavor = get_flavor("onnx")
    for crafted in (model, _reads_a_file_in_a_function_default("secret.txt")):
        files = {"model.onnx": crafted.SerializeToString()}  # as an upload, or a store, has it
        with pytest.raises(IntegrityError, match="external file"):
            flavor.check_upload(files, {})
        with pytest.raises(IntegrityError, match="external file"):
            flavor.load(files, {})


def _reads_a_file_in_a_function_default(location: str) -> Any:
    """The same, the tensor being the default value of a local function's attribute."""
    from onnx import AttributeProto, TensorProto, helper

    weights = TensorProto(name="W", data_type=TensorProto.UINT8, dims=[6])
    weights.data_location = TensorProto.EXTERNAL
    weights.external_data.add(key="location", value=location)
    constant = helper.make_node("Constant", [], ["y"])
    constant.attribute.append(
        helper.make_attribute_ref("value", AttributeProto.TENSOR, ref_attr_name="val")
    )
    function = helper.make_function(
        "local", "leak", [], ["y"], [constant], [helper.make_opsetid("", 17)], attributes=[]
    )
    function.attribute_proto.append(helper.make_attribute("val", weights))
    graph = helper.make_graph(
        [helper.make_node("leak", [], ["Y"], domain="local")],
        "leak",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("Y", TensorProto.UINT8, [6])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    return helper.make_model(graph, functions=[function], opset_imports=opsets)
