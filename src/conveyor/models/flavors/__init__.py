"""Model flavors: how one kind of model is saved, loaded and called.

Each flavor is a small module with one class implementing :class:`Flavor`. They are found by
name through :data:`FLAVORS`, so a new flavor is a new file plus one line here (or, from
another package, an entry point in the ``conveyor.model_flavors`` group). Flavors import
their library only when they are used, so ``import conveyor`` stays light.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Any, ClassVar

from conveyor.core.errors import InvalidArgumentError

__all__ = ["FLAVORS", "Flavor", "flavor_for", "get_flavor", "module_roots", "requirements_of"]

#: Built-in flavors in the order they are tried: specific libraries before the general ones
#: (an XGBoost classifier is also a scikit-learn estimator).
FLAVORS: dict[str, str] = {
    "xgboost": "conveyor.models.flavors.xgboost:XGBoostFlavor",
    "lightgbm": "conveyor.models.flavors.lightgbm:LightGBMFlavor",
    "sklearn": "conveyor.models.flavors.sklearn:SklearnFlavor",
    "onnx": "conveyor.models.flavors.onnx:OnnxFlavor",
    "pytorch": "conveyor.models.flavors.pytorch:PyTorchFlavor",
    "python": "conveyor.models.flavors.python:PythonFlavor",
}


class Flavor:
    """Saves, loads and calls one kind of model. Files are bytes, so any artifact store works.

    ``save`` returns the files and a JSON-able ``info`` dict that ``load`` gets back (it gets
    the input example, if any, for formats that trace the model); ``load`` returns an object
    that ``predict`` and ``predict_proba`` call.
    """

    name: ClassVar[str]
    #: Distributions whose installed versions are recorded as the version's requirements.
    packages: ClassVar[tuple[str, ...]] = ()
    #: True when loading runs arbitrary code from the file (pickle): it then needs trust.
    executes_code: ClassVar[bool] = False
    #: How the file can run code, for the messages that ask for trust.
    code_reason: ClassVar[str] = "stored with pickle"

    def handles(self, model: Any) -> bool:
        raise NotImplementedError

    def save(self, model: Any, example: Any = None) -> tuple[dict[str, bytes], dict[str, Any]]:
        raise NotImplementedError

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        raise NotImplementedError

    def check_upload(self, files: dict[str, bytes], info: dict[str, Any]) -> dict[str, Any]:
        """Return ``info`` fit to store for files someone else saved (a team server's upload).

        Whatever ``load`` trusts from ``info`` must be recomputed here from the files, never
        taken from the uploader. A flavor whose loading runs code refuses uploads.
        """
        if self.executes_code:
            from conveyor.core.errors import PermissionDeniedError

            raise PermissionDeniedError(
                f"A {self.name} model is {self.code_reason}, and loading it can run code from "
                "the file: a team server does not take it from an upload.",
                hint="Log a safe flavor (scikit-learn, XGBoost, LightGBM, ONNX; a PyTorch module "
                "exported to ONNX), or log this one where its store is (trust then stays with "
                "you).",
            )
        return info

    def predict(self, model: Any, data: Any) -> Any:
        return model.predict(data)

    def predict_proba(self, model: Any, data: Any) -> Any:
        if not hasattr(model, "predict_proba"):
            raise InvalidArgumentError(
                f"This {self.name} model ({type(model).__name__}) has no predict_proba: "
                "it is not a probabilistic classifier."
            )
        return model.predict_proba(data)

    def predict_and_proba(self, model: Any, data: Any) -> tuple[Any, Any]:
        """Both predictions and probabilities (a flavor may get both from one pass)."""
        return self.predict(model, data), self.predict_proba(model, data)


def module_roots(model: Any) -> set[str]:
    """Return the top-level packages of the classes ``model`` is an instance of."""
    return {(cls.__module__ or "").split(".", 1)[0] for cls in type(model).__mro__}


_plugins: dict[str, str] | None = None


def _targets() -> dict[str, str]:
    global _plugins
    if _plugins is None:  # entry points are read once: scanning them costs ms per call
        _plugins = {ep.name: ep.value for ep in entry_points(group="conveyor.model_flavors")}
    # Built-ins first, in their order; a plugin adds a flavor but cannot replace one.
    return {**FLAVORS, **{n: t for n, t in _plugins.items() if n not in FLAVORS}}


_instances: dict[str, Flavor] = {}


def get_flavor(name: str) -> Flavor:
    """Return the flavor called ``name``."""
    if name in _instances:
        return _instances[name]
    targets = _targets()
    target = targets.get(name)
    if target is None:
        raise InvalidArgumentError(
            f"There is no model flavor called {name!r}; flavors: {', '.join(targets)}."
        )
    module_name, _, attr = target.partition(":")
    flavor = getattr(importlib.import_module(module_name), attr)()
    _instances[name] = flavor
    return flavor


def flavor_for(model: Any) -> Flavor:
    """Return the first flavor that handles ``model``, or say which exist and what to do."""
    for name in _targets():
        flavor = get_flavor(name)
        if flavor.handles(model):
            return flavor
    raise InvalidArgumentError(
        f"No model flavor can store a {type(model).__module__}.{type(model).__qualname__}; "
        f"flavors: {', '.join(_targets())}.",
        hint="Wrap it in a subclass of cv.models.PythonModel that implements predict(df).",
    )


def requirements_of(flavor: Flavor) -> dict[str, str]:
    """Return the installed versions of the packages ``flavor`` needs (and of Python)."""
    import platform

    found = {"python": platform.python_version()}
    for package in flavor.packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
