"""LightGBM models in LightGBM's own text format: no pickle.

The scikit-learn wrappers cannot be rebuilt from that text, so a loaded wrapper is served by
its booster: ``predict_proba`` is the booster's output, ``predict`` maps it to the classes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from conveyor.core.errors import InvalidArgumentError
from conveyor.models.flavors import Flavor, module_roots

__all__ = ["LightGBMFlavor"]

FILE = "model.txt"


class LightGBMFlavor(Flavor):
    name: ClassVar[str] = "lightgbm"
    packages: ClassVar[tuple[str, ...]] = ("lightgbm", "numpy", "scikit-learn")

    def handles(self, model: Any) -> bool:
        return "lightgbm" in module_roots(model) and (
            hasattr(model, "booster_") or type(model).__name__ == "Booster"
        )

    def save(self, model: Any, example: Any = None) -> tuple[dict[str, bytes], dict[str, Any]]:
        booster = model if type(model).__name__ == "Booster" else model.booster_
        classes = getattr(model, "classes_", None)
        info = {
            "class": type(model).__name__,
            "is_classifier": classes is not None,
            "classes": [c.item() if hasattr(c, "item") else c for c in classes]
            if classes is not None
            else None,
        }
        return {FILE: booster.model_to_string().encode()}, info

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        import lightgbm

        booster = lightgbm.Booster(model_str=files[FILE].decode())
        return _Served(booster, info.get("classes") if info.get("is_classifier") else None)

    def predict(self, model: Any, data: Any) -> Any:
        return model.predict(data)

    def predict_proba(self, model: Any, data: Any) -> Any:
        return model.predict_proba(data)


class _Served:
    """A LightGBM booster answering like the scikit-learn wrapper it was saved from."""

    def __init__(self, booster: Any, classes: list[Any] | None) -> None:
        self.booster = booster
        self.classes_ = np.asarray(classes) if classes is not None else None

    def predict_proba(self, data: Any) -> Any:
        if self.classes_ is None:
            raise InvalidArgumentError(
                "This LightGBM model is a regressor: it has no predict_proba."
            )
        raw = np.asarray(self.booster.predict(data))
        if raw.ndim == 1:  # binary: the probability of the second class
            return np.column_stack([1.0 - raw, raw])
        return raw

    def predict(self, data: Any) -> Any:
        if self.classes_ is None:
            return self.booster.predict(data)
        return self.classes_[np.argmax(self.predict_proba(data), axis=1)]
