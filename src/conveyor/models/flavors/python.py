"""Any Python model: subclass :class:`PythonModel`, stored with cloudpickle.

Unpickling runs code from the file, so loading one needs ``trust=True`` (or a project that
sets ``trust_pickled_models``); the bytes are checked against the digest recorded at save.
"""

from __future__ import annotations

from typing import Any, ClassVar

from conveyor.models.flavors import Flavor

__all__ = ["PythonFlavor", "PythonModel"]

FILE = "model.cloudpickle"


class PythonModel:
    """Base class for custom models: implement ``predict(df)`` (and ``predict_proba``)."""

    def predict(self, data: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement predict(data).")


class PythonFlavor(Flavor):
    name: ClassVar[str] = "python"
    packages: ClassVar[tuple[str, ...]] = ("cloudpickle", "numpy", "pandas")
    executes_code: ClassVar[bool] = True

    def handles(self, model: Any) -> bool:
        return isinstance(model, PythonModel)

    def save(self, model: Any, example: Any = None) -> tuple[dict[str, bytes], dict[str, Any]]:
        import cloudpickle

        info = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
        return {FILE: cloudpickle.dumps(model)}, info

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        import pickle

        return pickle.loads(files[FILE])  # noqa: S301 - the caller checked trust and digest
