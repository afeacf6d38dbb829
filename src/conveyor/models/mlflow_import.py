"""Read an MLflow model directory (its ``MLmodel`` file) so users can move their models over.

Supported: the ``sklearn`` flavor (pickle, cloudpickle or skops serialization) and
``python_function`` models whose loader is ``mlflow.sklearn``. The model is re-stored with
Conveyor's scikit-learn flavor (skops, types recorded), with its signature and input example
converted (a table or an array, as Conveyor keeps examples; an example that cannot be kept is
named in the import's notes, never dropped silently). A skops file loads with the types MLflow
recorded as trusted; unpickling runs code from the file, so a pickle needs ``trust=True``.
MLflow itself is not needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.core.errors import InvalidArgumentError, PermissionDeniedError
from conveyor.models.signature import ColumnSpec, Signature

__all__ = ["MlflowModel", "read_mlflow_model"]

# MLflow's column types, as the dtypes Conveyor's signatures use.
_COLUMN_TYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "string",
    "datetime": "datetime64[ns]",
    "binary": "object",
}


@dataclass
class MlflowModel:
    """What was read: the model object, its signature and example, and where it came from."""

    model: Any
    signature: Signature | None
    input_example: Any
    description: str
    source: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what was not kept, and why


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise InvalidArgumentError(f"Cannot read {path}: {e}.") from e
    if not isinstance(data, dict) or "flavors" not in data:
        raise InvalidArgumentError(f"{path} is not an MLflow MLmodel file (it has no flavors).")
    return data


def _inside(root: Path, name: str) -> Path:
    """Return ``root/name``, refusing a name that leads outside ``root``."""
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise InvalidArgumentError(f"The MLmodel file names {name!r}, outside {root}.")
    if not path.exists():
        raise InvalidArgumentError(f"The MLmodel file names {name!r}, which is not in {root}.")
    return path


def _signature(raw: dict[str, Any] | None) -> Signature | None:
    if not raw or not raw.get("inputs"):
        return None

    def specs(text: str | None) -> tuple[ColumnSpec, ...]:
        if not text:
            return ()
        out = []
        for item in json.loads(text):
            if item.get("type") == "tensor":
                tensor = item.get("tensor-spec", {})
                out.append(
                    ColumnSpec(
                        name=item.get("name"),
                        dtype=str(tensor.get("dtype", "float64")),
                        shape=tuple(int(n) for n in tensor.get("shape", [-1])),
                    )
                )
            else:
                out.append(
                    ColumnSpec(
                        name=item.get("name"),
                        dtype=_COLUMN_TYPES.get(item.get("type", ""), "object"),
                        nullable=not item.get("required", True),
                    )
                )
        return tuple(out)

    try:
        return Signature(inputs=specs(raw.get("inputs")), outputs=specs(raw.get("outputs")))
    except (ValueError, TypeError, KeyError) as e:
        raise InvalidArgumentError(f"Cannot read the MLflow signature: {e}.") from e


class _Unkept(Exception):
    """An input example in a form Conveyor cannot keep; the message says why."""


_MAX_DENSE_CELLS = 1_000_000  # a sparse example is kept dense: refuse a huge one


def _input_example(
    root: Path, info: dict[str, Any] | None, signature: Signature | None
) -> tuple[Any, list[str]]:
    """Read the MLflow input example as Conveyor keeps examples, a DataFrame or a NumPy array.

    Returns it (None when there is none or it cannot be kept) and notes for the user saying
    what was left out and why. MLflow writes a table as split JSON, an array as nested lists
    (wrapped in ``{"inputs": ...}`` by MLflow before 2.16, marked ``format: tf-serving``), a
    dict of arrays as a dict of nested lists, a sparse matrix as its CSR/CSC parts.
    """
    if not info:
        return None, []
    name = str(info.get("artifact_path", "input_example.json"))
    if not (root / name).is_file():
        return None, [f"the input example the MLmodel names, {name}, is not in the folder"]
    path = _inside(root, name)  # refuses a name that leads outside the model folder
    kind = str(info.get("type", "dataframe"))
    notes: list[str] = []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return None, [f"the input example {name} is not JSON ({e}), so it was not kept"]
    if str(info.get("params", "")).lower() == "true" and isinstance(data, dict):
        data = data.get("inputs")
        notes.append("the input example's inference params were not kept (an example is input)")
    try:
        if kind == "ndarray":
            if info.get("format") == "tf-serving" and isinstance(data, dict) and "inputs" in data:
                data = data["inputs"]
            example = _ndarray_example(data, signature)
        elif kind in ("sparse_matrix_csr", "sparse_matrix_csc"):
            example = _sparse_example(data, kind)
            notes.append("the sparse input example was kept as a dense array")
        elif kind in ("dataframe", "json_object"):
            example = _table_example(data, signature)
        else:
            raise _Unkept(f"its type {kind!r} is not one import-mlflow knows")
    except _Unkept as e:
        return None, [*notes, f"the input example ({kind}) was not kept: {e}"]
    if signature is not None:  # else logging it would refuse the whole import
        try:
            signature.prepare(example)
        except InvalidArgumentError as e:
            return None, [*notes, f"the input example was not kept: {e.message}"]
    return example, notes


def _ndarray_example(data: Any, signature: Signature | None) -> Any:
    """An array, or a dict of arrays (a table when they are columns of one length)."""
    if isinstance(data, dict):
        import pandas as pd

        arrays = {str(k): _array(v, None) for k, v in data.items()}
        lengths = {len(a) for a in arrays.values() if a.ndim == 1}
        if arrays and len(lengths) == 1 and all(a.ndim == 1 for a in arrays.values()):
            return pd.DataFrame(arrays)
        shapes = ", ".join(f"{k} {list(a.shape)}" for k, a in list(arrays.items())[:5])
        raise _Unkept(
            f"it is {len(arrays)} named arrays ({shapes}); an example is one table or one array"
        )
    spec = signature.inputs[0] if signature is not None and signature.is_tensor else None
    return _array(data, spec.dtype if spec is not None else None)


def _array(data: Any, dtype: str | None) -> Any:
    """``data`` (nested lists, None for a missing number) as a NumPy array of plain values."""
    import numpy as np

    try:
        want = np.dtype(dtype) if dtype else None
    except TypeError:
        want = None
    if want is not None and want.kind not in "biuf":  # strings, objects: as the values are
        want = None
    try:
        array = np.asarray(data, dtype=want)
        if array.dtype.kind == "O":  # None stands for NaN in MLflow's JSON
            array = array.astype("float64")
    except (TypeError, ValueError) as e:
        raise _Unkept(
            f"its values do not make one array of {want or 'numbers or strings'} "
            f"(rows of different lengths, or mixed values: {e})"
        ) from e
    if array.ndim == 0:
        raise _Unkept("it is a single value, not an array of rows")
    return array


def _sparse_example(data: Any, kind: str) -> Any:
    """A CSR or CSC matrix, as MLflow writes one, made dense."""
    import numpy as np

    try:
        rows, cols = (int(n) for n in data["shape"])
        values = np.asarray(data["data"], dtype="float64")
        indices = np.asarray(data["indices"], dtype="int64")
        pointers = np.asarray(data["indptr"], dtype="int64")
    except (KeyError, TypeError, ValueError) as e:
        raise _Unkept(f"it is not a sparse matrix as MLflow writes one ({e})") from e
    if rows * cols > _MAX_DENSE_CELLS:
        raise _Unkept(f"{rows}x{cols} is too large to keep as a dense array")
    dense = np.zeros((rows, cols), dtype="float64")
    csr = kind == "sparse_matrix_csr"
    try:
        for line in range(len(pointers) - 1):
            span = slice(pointers[line], pointers[line + 1])
            if csr:
                dense[line, indices[span]] = values[span]
            else:
                dense[indices[span], line] = values[span]
    except IndexError as e:
        raise _Unkept(f"its indices do not fit its shape {rows}x{cols}") from e
    return dense


def _table_example(data: Any, signature: Signature | None) -> Any:
    """A table: split JSON (with or without column names), records, or one row of values."""
    import pandas as pd

    if isinstance(data, dict) and "dataframe_split" in data:
        data = data["dataframe_split"]
    if isinstance(data, dict) and "data" in data and isinstance(data["data"], list):
        rows = data["data"]
        columns = data.get("columns")
        if columns is None:  # MLflow leaves out default column names (0, 1, ...)
            width = len(rows[0]) if rows and isinstance(rows[0], list) else 0
            named = signature.columns if signature is not None else []
            columns = named if len(named) == width else [str(i) for i in range(width)]
        return pd.DataFrame(rows, columns=[str(c) for c in columns])
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return pd.DataFrame(data)
    if isinstance(data, dict) and data and all(_scalar(v) for v in data.values()):
        return pd.DataFrame([data])  # one row, as MLflow reads such a dict
    raise _Unkept("it is free-form JSON, not a table or an array")


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _load_skops(file: Path, trust: bool) -> Any:
    """Load a skops file. Without trust, only the types skops trusts and scikit-learn,
    XGBoost and LightGBM estimators load: the types the folder's MLmodel lists as trusted
    come from the same folder, so they are not trusted for it."""
    import skops.io

    from conveyor.models.flavors.sklearn import check_trees, foreign_types

    data = file.read_bytes()
    allowed, refused = foreign_types(data)
    if refused and not trust:
        raise PermissionDeniedError(
            f"{file} holds types that run code or are not known to be safe to load: "
            f"{', '.join(refused[:5])}.",
            hint="If you trust where the model came from, pass trust=True (CLI: --trust).",
        )
    model = skops.io.loads(data, trusted=allowed + refused)
    if not trust:
        check_trees(model)
    return model


def read_mlflow_model(path: str | Path, *, trust: bool = False) -> MlflowModel:
    """Read the MLflow model at ``path`` (a folder holding ``MLmodel``)."""
    root = Path(path)
    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        raise InvalidArgumentError(
            f"{root} is not an MLflow model folder: it has no MLmodel file.",
            hint="Point at the folder mlflow.sklearn.save_model wrote (or a run's model "
            "artifact folder).",
        )
    meta = _read_yaml(mlmodel)
    flavors = meta["flavors"]
    sk = flavors.get("sklearn")
    pyfunc = flavors.get("python_function", {})
    if sk is None and pyfunc.get("loader_module") == "mlflow.sklearn":
        sk = {"pickled_model": pyfunc.get("model_path", "model.pkl"), "serialization_format": ""}
    if sk is None:
        raise InvalidArgumentError(
            f"{root} holds an MLflow model with the flavors {', '.join(flavors)}; "
            "import-mlflow reads the sklearn flavor.",
            hint="For other models, load them with MLflow and log them with cv.models.log "
            "(wrap custom pyfunc models in a cv.models.PythonModel).",
        )
    file = _inside(root, str(sk.get("pickled_model", "model.pkl")))
    fmt = str(sk.get("serialization_format") or ("skops" if file.suffix == ".skops" else ""))
    if fmt == "skops":
        model = _load_skops(file, trust)
    else:
        if not trust:
            raise PermissionDeniedError(
                f"{file} is a pickled ({fmt or 'pickle'}) MLflow model: reading it runs code "
                "from the file, so it needs your explicit trust.",
                hint="If you trust where the model came from, pass trust=True (CLI: --trust).",
            )
        import pickle

        model = pickle.loads(file.read_bytes())  # noqa: S301 - the user passed trust=True
    created = meta.get("utc_time_created", "")
    source = {
        "format": "mlflow",
        "path": str(root.resolve()),
        "run_id": meta.get("run_id"),
        "model_uuid": meta.get("model_uuid"),
        "mlflow_version": meta.get("mlflow_version"),
        "sklearn_version": sk.get("sklearn_version"),
        "created": str(created),
    }
    signature = _signature(meta.get("signature"))
    example, notes = _input_example(root, meta.get("saved_input_example_info"), signature)
    if notes:
        source["notes"] = notes
    return MlflowModel(
        model=model,
        signature=signature,
        input_example=example,
        description=f"Imported from the MLflow model at {root.resolve()}"
        + (f" (MLflow run {meta['run_id']})" if meta.get("run_id") else "")
        + ".",
        source=source,
        notes=notes,
    )
