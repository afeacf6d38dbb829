"""Read an MLflow model directory (its ``MLmodel`` file) so users can move their models over.

Supported: the ``sklearn`` flavor (pickle, cloudpickle or skops serialization) and
``python_function`` models whose loader is ``mlflow.sklearn``. The model is re-stored with
Conveyor's scikit-learn flavor (skops, types recorded), with its signature and input example
converted. A skops file loads with the types MLflow recorded as trusted; unpickling runs
code from the file, so a pickle needs ``trust=True``. MLflow itself is not needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


def _input_example(root: Path, info: dict[str, Any] | None) -> Any:
    if not info:
        return None
    name = str(info.get("artifact_path", "input_example.json"))
    path = (root / name).resolve()
    # A name leading outside the folder is refused before anything is looked up there: an
    # uploaded folder must not learn which files the importing machine has.
    if not path.is_relative_to(root.resolve()):
        raise InvalidArgumentError(f"The MLmodel file names {name!r}, outside {root}.")
    if not path.is_file():
        return None
    import pandas as pd

    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "columns" in data and "data" in data:
        return pd.DataFrame(data["data"], columns=data["columns"])
    if isinstance(data, dict) and "dataframe_split" in data:
        split = data["dataframe_split"]
        return pd.DataFrame(split["data"], columns=split.get("columns"))
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return pd.DataFrame(data)
    return None


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
    return MlflowModel(
        model=model,
        signature=_signature(meta.get("signature")),
        input_example=_input_example(root, meta.get("saved_input_example_info")),
        description=f"Imported from the MLflow model at {root.resolve()}"
        + (f" (MLflow run {meta['run_id']})" if meta.get("run_id") else "")
        + ".",
        source=source,
    )
