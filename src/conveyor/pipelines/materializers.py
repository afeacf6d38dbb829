"""How step outputs become bytes in the artifact store, and come back, by type.

A materializer is a small class: ``handles(value)`` says whether it stores a value,
``save(value)`` returns the files (name -> bytes) and a JSON-able ``info`` dict, and
``load(files, info)`` rebuilds the value. The first registered materializer that handles a
value stores it; yours go before the built-ins:

>>> class Csv(Materializer):
...     name = "csv-lines"
...     def handles(self, value): return isinstance(value, CsvLines)
...     def save(self, value): return {"data.csv": "\\n".join(value).encode()}, {}
...     def load(self, files, info): return CsvLines(files["data.csv"].decode().split("\\n"))
>>> register_materializer(Csv())   # doctest: +SKIP

Built-ins, in order: JSON for plain JSON values (``None``, bool, int, float, str, and lists
and string-keyed dicts of them), Parquet for pandas DataFrames and Series and Arrow tables,
``.npy`` for NumPy arrays (never pickled), the model flavors for scikit-learn, XGBoost,
LightGBM, ONNX and PyTorch models, and cloudpickle for anything else. Pickled outputs are
only loaded from the content-addressed store, whose digest is checked on every read and was
recorded by the step run that wrote it.
"""

from __future__ import annotations

import io
import json
import math
import sys
from typing import Any, ClassVar

from conveyor.core.errors import InvalidArgumentError

__all__ = [
    "Materializer",
    "get_materializer",
    "materializer_for",
    "register_materializer",
]


class Materializer:
    """Stores one kind of value as files; see the module docs."""

    name: ClassVar[str]

    def handles(self, value: Any) -> bool:
        raise NotImplementedError

    def save(self, value: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
        raise NotImplementedError

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        raise NotImplementedError


def _plain_json(value: Any, depth: int = 0) -> bool:
    if depth > 50:
        return False
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_plain_json(v, depth + 1) for v in value)
    if kind is dict:
        return all(type(k) is str and _plain_json(v, depth + 1) for k, v in value.items())
    return False


class JsonMaterializer(Materializer):
    name = "json"

    def handles(self, value: Any) -> bool:
        return _plain_json(value)

    def save(self, value: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
        return {"value.json": json.dumps(value, separators=(",", ":")).encode()}, {}

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        return json.loads(files["value.json"])


def _loaded(module: str, attr: str) -> type | None:
    """The class ``module.attr`` if ``module`` is imported already (a value of it can exist
    only then), so checking a value's type never imports pandas or NumPy."""
    mod = sys.modules.get(module)
    return getattr(mod, attr, None) if mod is not None else None


class PandasMaterializer(Materializer):
    name = "pandas"

    def handles(self, value: Any) -> bool:
        frame = _loaded("pandas", "DataFrame")
        series = _loaded("pandas", "Series")
        return frame is not None and series is not None and isinstance(value, (frame, series))

    def save(self, value: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
        import pandas as pd

        info: dict[str, Any] = {}
        if isinstance(value, pd.Series):
            info["series"] = value.name if value.name is None else str(value.name)
            value = value.to_frame(name="__series__")
        buffer = io.BytesIO()
        value.to_parquet(buffer)
        return {"data.parquet": buffer.getvalue()}, info

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        from conveyor.core.parquet import read_parquet

        frame = read_parquet(files["data.parquet"]).to_pandas()
        if "series" in info:
            return frame["__series__"].rename(info["series"])
        return frame


class ArrowMaterializer(Materializer):
    name = "arrow"

    def handles(self, value: Any) -> bool:
        table = _loaded("pyarrow", "Table")
        return table is not None and isinstance(value, table)

    def save(self, value: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(value, buffer)
        return {"data.parquet": buffer.getvalue()}, {}

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        from conveyor.core.parquet import read_parquet

        return read_parquet(files["data.parquet"])


class NumpyMaterializer(Materializer):
    name = "numpy"

    def handles(self, value: Any) -> bool:
        array = _loaded("numpy", "ndarray")
        return array is not None and isinstance(value, array) and not value.dtype.hasobject  # type: ignore[attr-defined]

    def save(self, value: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return {"array.npy": buffer.getvalue()}, {}

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        import numpy as np

        return np.load(io.BytesIO(files["array.npy"]), allow_pickle=False)


_MODEL_ROOTS = {"sklearn", "xgboost", "lightgbm", "onnx", "torch"}


class ModelMaterializer(Materializer):
    """Models through the registry's flavors (skops for scikit-learn: no pickle)."""

    name = "model"

    def handles(self, value: Any) -> bool:
        roots = {(c.__module__ or "").split(".", 1)[0] for c in type(value).__mro__}
        if not roots & _MODEL_ROOTS:
            return False
        from conveyor.models.flavors import flavor_for

        try:
            return flavor_for(value).name != "python"
        except InvalidArgumentError:
            return False

    def save(self, value: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
        from conveyor.models.flavors import flavor_for

        flavor = flavor_for(value)
        files, info = flavor.save(value)
        return files, {"flavor": flavor.name, "flavor_info": info}

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        from conveyor.models.flavors import get_flavor

        return get_flavor(info["flavor"]).load(files, info["flavor_info"])


class PickleMaterializer(Materializer):
    """Anything else, with cloudpickle (loaded only from the digest-checked store)."""

    name = "pickle"

    def handles(self, value: Any) -> bool:
        return True

    def save(self, value: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
        import cloudpickle

        try:
            return {"value.pkl": cloudpickle.dumps(value)}, {}
        except Exception as e:
            raise InvalidArgumentError(
                f"A {type(value).__module__}.{type(value).__qualname__} cannot be stored: "
                f"no materializer handles it and it cannot be pickled ({e}).",
                hint="Register a Materializer for this type with "
                "cv.pipelines.register_materializer().",
            ) from e

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        import cloudpickle

        return cloudpickle.loads(files["value.pkl"])


_BUILTINS: list[Materializer] = [
    JsonMaterializer(),
    PandasMaterializer(),
    ArrowMaterializer(),
    NumpyMaterializer(),
    ModelMaterializer(),
    PickleMaterializer(),
]
_registered: list[Materializer] = []


def register_materializer(materializer: Materializer) -> Materializer:
    """Add ``materializer`` ahead of the built-ins (and of those registered before it).

    Register it at import time of the module that defines your steps, so worker processes
    (which import that module) know it too.
    """
    if not isinstance(materializer, Materializer):
        raise InvalidArgumentError(
            f"register_materializer takes a Materializer instance; got {materializer!r}."
        )
    name = getattr(materializer, "name", None)
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"{type(materializer).__name__} needs a class attribute name.")
    if name in {m.name for m in _BUILTINS}:
        raise InvalidArgumentError(f"{name!r} is a built-in materializer's name; pick another.")
    _registered[:] = [m for m in _registered if m.name != name]
    _registered.insert(0, materializer)
    return materializer


def materializer_for(value: Any) -> Materializer:
    """Return the first materializer that handles ``value``."""
    for materializer in (*_registered, *_BUILTINS):
        if materializer.handles(value):
            return materializer
    raise AssertionError("unreachable: the pickle materializer handles everything")


def get_materializer(name: str) -> Materializer:
    """Return the materializer called ``name`` (to load a stored output)."""
    for materializer in (*_registered, *_BUILTINS):
        if materializer.name == name:
            return materializer
    raise InvalidArgumentError(
        f"This output was stored by the materializer {name!r}, which is not registered here.",
        hint="Import the module that registers it before loading the output.",
    )
