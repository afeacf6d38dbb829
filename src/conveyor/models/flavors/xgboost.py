"""XGBoost models in XGBoost's own binary JSON (UBJSON) format: no pickle."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from conveyor.core.errors import IntegrityError
from conveyor.models.flavors import Flavor, module_roots

__all__ = ["XGBoostFlavor"]

FILE = "model.ubj"
_CLASSES = {
    "XGBClassifier",
    "XGBRegressor",
    "XGBRanker",
    "XGBRFClassifier",
    "XGBRFRegressor",
    "Booster",
}


class XGBoostFlavor(Flavor):
    name: ClassVar[str] = "xgboost"
    packages: ClassVar[tuple[str, ...]] = ("xgboost-cpu", "xgboost", "numpy", "scikit-learn")

    def handles(self, model: Any) -> bool:
        return "xgboost" in module_roots(model) and type(model).__name__ in _CLASSES

    def save(self, model: Any, example: Any = None) -> tuple[dict[str, bytes], dict[str, Any]]:
        # The scikit-learn wrappers keep their own attributes (classes, objective) in the
        # file only when they write it themselves, which they do to a path.
        with tempfile.TemporaryDirectory(prefix="conveyor-xgb-") as tmp:
            path = Path(tmp) / FILE
            model.save_model(os.fspath(path))
            data = path.read_bytes()
        classes = getattr(model, "classes_", None)
        info = {
            "class": type(model).__name__,
            "classes": [c.item() if hasattr(c, "item") else c for c in classes]
            if classes is not None
            else None,
        }
        return {FILE: data}, info

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        import xgboost

        name = info.get("class", "Booster")
        if name not in _CLASSES:
            raise IntegrityError(f"The stored XGBoost model names an unknown class {name!r}.")
        model = getattr(xgboost, name)()
        model.load_model(bytearray(files[FILE]))
        return model

    def predict(self, model: Any, data: Any) -> Any:
        if type(model).__name__ == "Booster":
            import xgboost

            return model.predict(xgboost.DMatrix(data))
        return model.predict(data)
