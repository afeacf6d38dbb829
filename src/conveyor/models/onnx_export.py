"""Convert a scikit-learn model to ONNX (skl2onnx) and prove it predicts the same."""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.core.errors import IntegrityError, InvalidArgumentError

__all__ = ["convert_and_check"]


def convert_and_check(
    loaded: Any, example: Any, *, tolerance: float = 1e-4
) -> tuple[Any, dict[str, Any]]:
    """Return the ONNX model of ``loaded`` and how its predictions compare on ``example``."""
    try:
        import onnxruntime
        from skl2onnx import to_onnx
    except ImportError as e:
        raise InvalidArgumentError(
            "Exporting to ONNX needs skl2onnx and onnxruntime.",
            hint="pip install 'conveyor-mlops[onnx]'",
        ) from e
    signature = loaded.signature
    if any(not c.dtype.startswith(("float", "int", "bool")) for c in signature.inputs):
        raise InvalidArgumentError(
            "ONNX export converts models on numeric inputs; this one takes "
            + ", ".join(c.describe() for c in signature.inputs if c.dtype[0] not in "fib")
            + "."
        )
    x = np.asarray(signature.prepare(example), dtype=np.float32)
    model = loaded.model
    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    try:
        onnx_model = to_onnx(model, x[:1], options=options, target_opset=None)
    except Exception as e:
        raise InvalidArgumentError(
            f"skl2onnx cannot convert this {type(model).__name__}: {e}"
        ) from e
    session = onnxruntime.InferenceSession(
        onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    expected = np.asarray(loaded.predict(example))
    labels_equal = bool(np.array_equal(np.asarray(outputs[0]).ravel(), expected.ravel()))
    report: dict[str, Any] = {"rows_checked": len(x), "labels_equal": labels_equal}
    if not labels_equal and expected.dtype.kind == "f":
        diff = float(np.max(np.abs(np.asarray(outputs[0]).ravel() - expected.ravel())))
        report["max_abs_diff"] = diff
        labels_equal = diff <= tolerance * max(1.0, float(np.max(np.abs(expected))))
        report["labels_equal"] = labels_equal
    if len(outputs) > 1 and hasattr(model, "predict_proba"):
        proba = np.asarray(loaded.predict_proba(example))
        report["max_proba_diff"] = float(np.max(np.abs(np.asarray(outputs[1]) - proba)))
    if not report["labels_equal"] or report.get("max_proba_diff", 0.0) > tolerance:
        raise IntegrityError(
            f"The ONNX conversion does not predict like the original on the input example: "
            f"{report}.",
            hint="Nothing was written. The model may use an operator skl2onnx converts "
            "approximately; raise tolerance= if the difference is acceptable.",
        )
    return onnx_model, report
