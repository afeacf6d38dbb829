"""ONNX models, run with onnxruntime: a graph of operators, no code in the file.

A model with one input gets the signed columns as one float32 (or the graph's type) matrix;
a model with one input per column gets each column. ``predict`` is the first output;
``predict_proba`` the second (skl2onnx classifiers converted without ZipMap give a matrix).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from conveyor.core.errors import IntegrityError, InvalidArgumentError
from conveyor.models.flavors import Flavor, module_roots

__all__ = ["OnnxFlavor"]

FILE = "model.onnx"
_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.str_,
}


class OnnxFlavor(Flavor):
    name: ClassVar[str] = "onnx"
    packages: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime", "numpy")

    def handles(self, model: Any) -> bool:
        return "onnx" in module_roots(model) and type(model).__name__ == "ModelProto"

    def save(self, model: Any, example: Any = None) -> tuple[dict[str, bytes], dict[str, Any]]:
        import onnx

        for name in _external_tensors(model, onnx.TensorProto.EXTERNAL):
            raise InvalidArgumentError(
                f"This ONNX model keeps tensor {name!r} in an external file; Conveyor stores "
                "only self-contained models.",
                hint="Load it with its tensors (onnx.load(path, load_external_data=True)) "
                "before logging it.",
            )
        graph = model.graph
        info = {
            "inputs": [i.name for i in graph.input],
            "outputs": [o.name for o in graph.output],
            "opset": [o.version for o in model.opset_import],
        }
        classes = _class_labels(graph)
        if classes is not None:  # what the probability columns are, as for scikit-learn
            info["classes"] = classes
        return {FILE: model.SerializeToString()}, info

    def check_upload(self, files: dict[str, bytes], info: dict[str, Any]) -> dict[str, Any]:
        if set(files) != {FILE}:
            raise InvalidArgumentError(f"An ONNX model upload is one file, {FILE!r}.")
        _refuse_external_data(files[FILE])
        return info

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        import onnxruntime

        _refuse_external_data(files[FILE])
        try:
            session = onnxruntime.InferenceSession(files[FILE], providers=["CPUExecutionProvider"])
        except Exception as e:
            raise IntegrityError(f"onnxruntime cannot read the stored model: {e}") from e
        return _Session(session)

    def predict(self, model: Any, data: Any) -> Any:
        return model.run(data)[0]

    def predict_proba(self, model: Any, data: Any) -> Any:
        outputs = model.run(data)
        if len(outputs) < 2:
            raise InvalidArgumentError("This ONNX model has one output: no probabilities.")
        return np.asarray(outputs[1])


def _refuse_external_data(data: bytes) -> None:
    """Refuse a model that keeps a tensor in another file.

    Conveyor stores an ONNX model as one file. A tensor whose data is "in an external file"
    would be read by onnxruntime from a path the file names, relative to the folder the
    model is loaded in (a project's ``.env``, its metadata store), and could come back as a
    prediction.
    """
    try:
        import onnx
    except ImportError as e:
        raise InvalidArgumentError(
            "Loading an ONNX model needs the onnx package, to check the model before "
            "onnxruntime reads it.",
            hint="pip install onnx",
        ) from e
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - what does not parse is not a model
        raise IntegrityError(f"The stored file is not an ONNX model: {e}") from None
    for name in _external_tensors(model, onnx.TensorProto.EXTERNAL):
        raise IntegrityError(
            f"The ONNX model keeps tensor {name!r} in an external file; Conveyor loads "
            "only self-contained models.",
            hint="Save the model with all tensors inside (onnx.save_model with "
            "save_as_external_data=False) and log it again.",
        )


def _external_tensors(model: Any, external: int) -> Iterator[str]:
    """The names of the tensors of ``model`` whose data lives outside the file.

    Every tensor anywhere in the model: the walk follows every message field the installed
    onnx package knows (graphs, nodes, attributes and their defaults, functions, training
    info), not a list of the places tensors are known to be. Type descriptions, which hold
    no tensors, are skipped (they are most of a large graph's messages).
    """
    from onnx import TensorProto, TypeProto, ValueInfoProto

    pending = [model]
    while pending:
        message = pending.pop()
        if isinstance(message, TensorProto):
            if message.data_location == external or len(message.external_data):
                yield message.name or "<unnamed>"
            continue
        if isinstance(message, ValueInfoProto | TypeProto):
            continue
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if hasattr(value, "ListFields"):  # one message
                pending.append(value)
            else:  # a repeated field of messages
                pending.extend(value)


def _class_labels(graph: Any) -> list[Any] | None:
    """The class labels of the graph's classifier (an ``ai.onnx.ml`` ``*Classifier`` node,
    as converters such as skl2onnx write them), in the order of its probability columns;
    None when it has no such node, or more than one."""
    found = [
        node
        for node in graph.node
        if node.domain == "ai.onnx.ml" and node.op_type.endswith("Classifier")
    ]
    if len(found) != 1:
        return None
    for attribute in found[0].attribute:
        # TreeEnsembleClassifier names them classlabels_int64s, LinearClassifier and
        # SVMClassifier classlabels_ints; strings are classlabels_strings in all.
        if attribute.name in ("classlabels_int64s", "classlabels_ints") and attribute.ints:
            return [int(v) for v in attribute.ints]
        if attribute.name == "classlabels_strings" and attribute.strings:
            return [v.decode() for v in attribute.strings]
    return None


class _Session:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.inputs = session.get_inputs()

    def _feeds(self, data: Any) -> dict[str, Any]:
        if len(self.inputs) == 1:
            spec = self.inputs[0]
            array: Any = np.asarray(data, dtype=_TYPES.get(spec.type, np.float32))
            if array.ndim == 1:
                array = array.reshape(-1, 1)
            return {spec.name: array}
        if not hasattr(data, "columns"):
            raise InvalidArgumentError(
                "This ONNX model takes one input per column: give a DataFrame with columns "
                + ", ".join(i.name for i in self.inputs)
                + "."
            )
        return {
            i.name: np.asarray(data[i.name], dtype=_TYPES.get(i.type, np.float32)).reshape(-1, 1)
            for i in self.inputs
        }

    def run(self, data: Any) -> list[Any]:
        return list(self.session.run(None, self._feeds(data)))
