"""A loaded model version: one interface whatever the flavor, with its signature enforced."""

from __future__ import annotations

from typing import Any

from conveyor.models.flavors import Flavor
from conveyor.models.records import ModelVersion
from conveyor.models.signature import Signature, SignatureError, to_frame_or_array

__all__ = ["LoadedModel"]


class LoadedModel:
    """A model ready to call: ``predict`` and ``predict_proba`` check input against the signature.

    ``model`` is the flavor's own object (the scikit-learn estimator, the XGBoost model, ...),
    for anything beyond predictions.
    """

    def __init__(self, version: ModelVersion, flavor: Flavor, model: Any) -> None:
        self.version = version
        self.flavor = flavor
        self.model = model

    def __repr__(self) -> str:
        return f"LoadedModel({self.version.ref!r}, flavor={self.flavor.name!r})"

    @property
    def signature(self) -> Signature | None:
        return self.version.signature

    @property
    def metadata(self) -> dict[str, Any]:
        """What the registry knows of the version: ref, digest, flavor, run, requirements."""
        return self.version.to_dict() | {"info": dict(self.version.info)}

    def _input(self, data: Any) -> Any:
        if self.signature is not None:
            return self.signature.prepare(data)
        data = to_frame_or_array(data)
        names = self.version.info.get("feature_names")
        if names and hasattr(data, "columns"):
            # No signature, but the model knows its columns: pass those, in its order.
            missing = [n for n in names if n not in data.columns]
            if missing:
                raise SignatureError(
                    f"The input lacks column(s) the model was fitted on: "
                    f"{', '.join(map(repr, missing[:10]))}.",
                    [f"column {n!r}: missing" for n in missing],
                )
            return data[names]
        return data

    def predict(self, data: Any) -> Any:
        """Return the model's predictions for ``data`` (a DataFrame, an array or records)."""
        return self.flavor.predict(self.model, self._input(data))

    def predict_proba(self, data: Any) -> Any:
        """Return class probabilities for ``data`` (classifiers only)."""
        return self.flavor.predict_proba(self.model, self._input(data))
