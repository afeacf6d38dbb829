"""One served model version: its parser, its predict function (native or ONNX), its batcher."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np

from conveyor.models.loaded import LoadedModel
from conveyor.serving.batching import Batcher
from conveyor.serving.payloads import InputParser

__all__ = ["OPTIMIZERS", "ModelRuntime"]

log = logging.getLogger("conveyor.serving")

OPTIMIZERS = ("none", "onnx")


class ModelRuntime:
    """A loaded model version ready to serve: ``predict(input, want) -> {output: array}``.

    ``optimize="onnx"`` converts a scikit-learn model with skl2onnx, checks it predicts like
    the original on the stored input example, and runs it with onnxruntime; when conversion
    or the check fails it keeps the native model and says why in ``optimize_note``.

    ``example`` is the stored input example, or a function that reads it: it is read only
    when needed (a numeric scikit-learn model warms up on zeros, so serving it never loads
    pandas).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        example: Any = None,
        optimize: str = "none",
        extra: str = "reject",
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        on_batch: Any = None,
    ) -> None:
        if optimize not in OPTIMIZERS:
            raise ValueError(f"optimize must be one of {', '.join(OPTIMIZERS)}, not {optimize!r}")
        self.loaded = loaded
        self.version = loaded.version
        self.ref = loaded.version.ref
        self.name = loaded.version.name
        self.parser = InputParser(loaded.signature, extra=extra)
        self.classes = loaded.version.info.get("classes")
        # Feature-store features the model takes: requests may give entity keys instead.
        self.features: list[str] = list(loaded.version.info.get("features") or [])
        self.has_proba = bool(
            loaded.version.info.get("has_predict_proba", hasattr(loaded.model, "predict_proba"))
        )
        # A scikit-learn model fitted on a DataFrame checks the column names of each call,
        # which costs more than the prediction of a small forest. The parser has already put
        # the columns in the model's own order, so the array goes in as it is.
        self._read_example = example if callable(example) else lambda: example
        self._as_array = (
            loaded.flavor.name == "sklearn"
            and self.parser.numeric
            and loaded.version.info.get("feature_names") == self.parser.columns
        )
        if self._as_array:
            _quiet_feature_names_warning()
            self._as_array = self._takes_arrays()
        self._onnx: Any = None
        self._onnx_input = ""
        self.runtime = "native"
        self.optimize_note = ""
        self.warm_error = ""
        if optimize == "onnx":
            self._try_onnx(self._example())
        #: The model computes in float32 (an ONNX graph; scikit-learn's trees and forests,
        #: which refuse a finite value past float32's range): requests are checked for such
        #: values, which get a 422 instead of the model's failure (a 500).
        self.float32 = self._onnx is not None or _computes_in_float32(loaded)
        self.batcher = Batcher(
            self.predict,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            name=self.ref.replace("/", "-"),
            on_batch=on_batch,
        )

    def __repr__(self) -> str:
        return f"ModelRuntime({self.ref!r}, runtime={self.runtime!r})"

    def _takes_arrays(self) -> bool:
        """Whether the model predicts from a bare array: one that picks columns by name (a
        ColumnTransformer given names, a function reading df["age"]) needs a DataFrame."""
        import numpy as np

        flavor, model = self.loaded.flavor, self.loaded.model
        try:
            flavor.predict(model, np.zeros((1, len(self.parser.columns))))
        except Exception:  # noqa: BLE001 - zeros may be what fails (a log): try real rows
            zeros_failed = True
        else:
            zeros_failed = False
        if not zeros_failed:
            return True
        example = self._example()  # a DataFrame (pandas), read only when zeros failed
        if example is None or not hasattr(example, "columns"):
            return False
        try:
            rows = np.asarray(example[self.parser.columns].head(2), dtype=np.float64)
            flavor.predict(model, rows)
        except Exception:  # noqa: BLE001 - any failure: requests go in as DataFrames
            return False
        return True

    # -- prediction -------------------------------------------------------------------------

    def _example(self) -> Any:
        try:
            return self._read_example()
        except Exception as e:  # noqa: BLE001 - an unreadable example only costs the warm-up
            log.warning("%s: its input example cannot be read (%s)", self.ref, e)
            return None

    def _frame(self, data: Any) -> Any:
        if isinstance(data, np.ndarray) and self.parser.columns:
            import pandas as pd

            return pd.DataFrame(data, columns=self.parser.columns, copy=False)
        return data

    def predict(self, data: Any, want: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Run the model on validated ``data``; ``want`` may ask for ``proba`` too."""
        if self._onnx is not None:
            x = np.asarray(data, dtype=np.float32)
            outputs = self._onnx.run(None, {self._onnx_input: x})
            result = {"predictions": np.asarray(outputs[0]).ravel()}
            if "proba" in want and len(outputs) > 1:
                result["proba"] = np.asarray(outputs[1])
            return result
        flavor, model = self.loaded.flavor, self.loaded.model
        frame = data if self._as_array and isinstance(data, np.ndarray) else self._frame(data)
        if "proba" not in want:
            return {"predictions": np.asarray(flavor.predict(model, frame))}
        if not self.has_proba:
            raise ValueError(f"{self.ref} gives no probabilities (it has no predict_proba)")
        predictions, proba = flavor.predict_and_proba(model, frame)
        return {"predictions": np.asarray(predictions), "proba": np.asarray(proba)}

    def warm_up(self) -> float:
        """Run one prediction so the first request pays no first-call costs; return seconds."""
        if not self._as_array:  # its requests build DataFrames: pandas now, not in the first
            import pandas  # noqa: F401
        sample = self.sample_input()
        if sample is None:
            return 0.0
        started = time.perf_counter()
        block = self.parser.parse({"instances": sample})
        self.predict(block.data, frozenset({"proba"}) if self.has_proba else frozenset())
        return time.perf_counter() - started

    def sample_input(self) -> list[dict[str, Any]] | None:
        """A record or two to call the model with: the stored example, else zeros (always
        zeros for a model served from arrays, which need not read it)."""
        example = None if self._as_array else self._example()
        if example is not None and self.parser.columns and hasattr(example, "to_dict"):
            records = example[self.parser.columns].head(2).to_dict(orient="records")
            return [{k: _plain(v) for k, v in r.items()} for r in records]
        if not self.parser.specs:
            return None
        row: dict[str, Any] = {}
        for spec, kind in zip(self.parser.specs, self.parser.kinds, strict=True):
            assert spec.name is not None
            row[spec.name] = {"int": 0, "float": 0.0, "bool": False}.get(kind, "")
            if kind == "datetime64":
                row[spec.name] = "2026-01-01T00:00:00"
        return [row]

    # -- ONNX -------------------------------------------------------------------------------

    def _try_onnx(self, example: Any) -> None:
        if self.loaded.flavor.name != "sklearn":
            self.optimize_note = (
                f"ONNX: only scikit-learn models convert; this is {self.loaded.flavor.name}"
            )
            log.warning("%s: serving natively (%s)", self.ref, self.optimize_note)
            return
        if example is None and self.parser.specs:
            import pandas as pd

            sample = self.sample_input()
            example = pd.DataFrame(sample) if sample else None
        if example is None:
            self.optimize_note = "ONNX: the model has no signature or input example to check it on"
            log.warning("%s: serving natively (%s)", self.ref, self.optimize_note)
            return
        try:
            import onnxruntime

            from conveyor.models.onnx_export import convert_and_check

            onnx_model, report = convert_and_check(self.loaded, example)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # noqa: BLE001 - any failure means: serve natively, say why
            self.optimize_note = f"ONNX conversion failed: {e}"
            log.warning("%s: serving natively (%s)", self.ref, self.optimize_note)
            return
        self._onnx = session
        self._onnx_input = session.get_inputs()[0].name
        self.runtime = "onnx"
        self.optimize_note = f"ONNX: predictions match on {report['rows_checked']} example row(s)"
        log.info("%s: serving with onnxruntime (%s)", self.ref, self.optimize_note)

    def close(self) -> None:
        self.batcher.close()


def _quiet_feature_names_warning() -> None:
    """Silence scikit-learn's warning for arrays given to a model fitted on named columns.

    Installed only in a process that serves such a model, for that one message: the server
    has checked the names and their order against the model's own before building the array.
    """
    warnings.filterwarnings(
        "ignore", message="X does not have valid feature names", category=UserWarning
    )


def _plain(value: Any) -> Any:
    import pandas as pd  # (a value from a DataFrame: pandas is loaded)

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


#: Where scikit-learn keeps the estimators that cast their input to float32 (trees, forests,
#: gradient boosting, isolation forests): found in a model's classes, or in its steps.
_FLOAT32_MODULES = (
    "sklearn.tree.",
    "sklearn.ensemble._forest",
    "sklearn.ensemble._gb",
    "sklearn.ensemble._iforest",
)


def _computes_in_float32(loaded: LoadedModel) -> bool:
    """Whether a scikit-learn model (or a step of its pipeline) casts its input to float32."""
    if loaded.flavor.name != "sklearn":
        return False
    pending, seen = [loaded.model], 0
    while pending and seen < 100:
        model = pending.pop()
        seen += 1
        if any(str(c.__module__).startswith(_FLOAT32_MODULES) for c in type(model).__mro__):
            return True
        steps = getattr(model, "steps", None)  # a Pipeline: [(name, step), ...]
        if isinstance(steps, list):
            pending.extend(step for _, step in steps if hasattr(step, "fit"))
    return False
