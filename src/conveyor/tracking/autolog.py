"""Automatic logging for scikit-learn, XGBoost and LightGBM.

``conveyor.autolog()`` wraps the libraries' training entry points (every scikit-learn
estimator's ``fit``, the XGBoost and LightGBM scikit-learn wrappers, ``xgboost.train`` and
``lightgbm.train``). A wrapped call logs the estimator's params, training metrics and the
fitted model to the active run, or to a run of its own when none is active.

Models are stored in safe formats only: scikit-learn estimators with skops (no pickle),
XGBoost and LightGBM boosters in their native JSON/text formats.

Autologging never breaks training: if logging fails the fit still returns, with a warning.
Fits nested inside an autologged fit (a Pipeline's steps, a grid search's candidates, the
booster inside an XGBClassifier) are not logged again, in any thread of the process.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import platform
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.core.errors import ConflictError, InvalidArgumentError
from conveyor.tracking import validation
from conveyor.tracking.runs import ActiveRun, active_run, tracker

__all__ = ["autolog"]

FLAVORS = ("sklearn", "xgboost", "lightgbm")
_MARK = "__conveyor_autolog_original__"


@dataclass
class _State:
    """Which flavors are patched, what was replaced, and how many fits are in progress."""

    enabled: set[str] = field(default_factory=set)
    patches: list[tuple[Any, str, Any]] = field(default_factory=list)
    log_models: bool = True
    experiment: str | None = None
    depth: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


_state = _State()


def autolog(
    *,
    sklearn: bool = True,
    xgboost: bool = True,
    lightgbm: bool = True,
    log_models: bool = True,
    experiment: str | None = None,
    disable: bool = False,
) -> list[str]:
    """Log params, training metrics and fitted models of supported libraries automatically.

    Returns the flavors now being logged (libraries that are not installed are skipped).
    ``disable=True`` restores the libraries' own functions.

    >>> import conveyor as cv
    >>> cv.autolog(xgboost=False, lightgbm=False)  # doctest: +SKIP
    ['sklearn']
    """
    with _state.lock:
        for owner, attr, original in reversed(_state.patches):
            setattr(owner, attr, original)
        _state.patches.clear()
        _state.enabled.clear()
        if disable:
            return []
        _state.log_models = log_models
        _state.experiment = experiment
        wanted = {"sklearn": sklearn, "xgboost": xgboost, "lightgbm": lightgbm}
        for flavor in FLAVORS:
            if wanted[flavor] and _PATCHERS[flavor]():
                _state.enabled.add(flavor)
        return sorted(_state.enabled)


# -- patching ------------------------------------------------------------------------------


def _patch(owner: Any, attr: str, wrapper_factory: Callable[[Any], Any]) -> None:
    original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
    if getattr(original, _MARK, None) is not None:
        return
    wrapped = wrapper_factory(original)
    setattr(wrapped, _MARK, original)
    setattr(owner, attr, wrapped)
    _state.patches.append((owner, attr, original))


def _import(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _patch_sklearn() -> bool:
    if _import("sklearn") is None:
        return False
    from sklearn.utils import all_estimators

    owners: set[type] = set()
    for _, cls in all_estimators():
        for klass in cls.__mro__:
            if "fit" in klass.__dict__ and klass.__module__.startswith("sklearn."):
                owners.add(klass)
                break
    for owner in sorted(owners, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        _patch(owner, "fit", lambda f: _estimator_fit(f, "sklearn"))
    return True


def _sklearn_wrappers(module_name: str, base_name: str) -> list[type]:
    module = _import(module_name)
    if module is None:
        return []
    base = getattr(module, base_name)
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, base) and "fit" in cls.__dict__
    ]


def _patch_xgboost() -> bool:
    xgb = _import("xgboost")
    if xgb is None:
        return False
    for cls in _sklearn_wrappers("xgboost.sklearn", "XGBModel"):
        _patch(cls, "fit", lambda f: _estimator_fit(f, "xgboost"))
    for module in (xgb, importlib.import_module("xgboost.training")):
        _patch(module, "train", lambda f: _booster_train(f, "xgboost"))
    return True


def _patch_lightgbm() -> bool:
    lgb = _import("lightgbm")
    if lgb is None:
        return False
    for cls in _sklearn_wrappers("lightgbm.sklearn", "LGBMModel"):
        _patch(cls, "fit", lambda f: _estimator_fit(f, "lightgbm"))
    for module in (lgb, importlib.import_module("lightgbm.engine")):
        _patch(module, "train", lambda f: _booster_train(f, "lightgbm"))
    return True


_PATCHERS: dict[str, Callable[[], bool]] = {
    "sklearn": _patch_sklearn,
    "xgboost": _patch_xgboost,
    "lightgbm": _patch_lightgbm,
}


# -- the wrapped calls ---------------------------------------------------------------------


_depth: ContextVar[int] = ContextVar("conveyor_autolog_depth", default=0)


@contextmanager
def _outermost() -> Iterator[bool]:
    """Yield whether this fit is not nested in another autologged fit.

    Nesting is tracked per context, so independent fits in parallel threads (tuning trials,
    each with its own active run) are all logged. A thread with no active run while another
    autologged fit is in progress is taken to be that fit's worker (joblib threads of a grid
    search) and is not logged again.
    """
    with _state.lock:
        _state.depth += 1
        others_busy = _state.depth > 1
    token = _depth.set(_depth.get() + 1)
    try:
        nested = _depth.get() > 1 or (others_busy and active_run() is None)
        yield not nested
    finally:
        _depth.reset(token)
        with _state.lock:
            _state.depth -= 1


@contextmanager
def _run_for(name: str) -> Iterator[ActiveRun]:
    """Yield the active run, or a run of its own that ends with the block."""
    run = active_run()
    if run is not None:
        yield run
        return
    with tracker().start_run(_state.experiment, name=name) as own:
        yield own


def _estimator_fit(original: Callable[..., Any], flavor: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if flavor not in _state.enabled:
            return original(self, *args, **kwargs)
        with _outermost() as outermost:
            if not outermost:
                return original(self, *args, **kwargs)
            with _run_for(type(self).__name__) as run:
                result = original(self, *args, **kwargs)
                _safely(
                    run, "the fitted estimator", _log_estimator, run, self, flavor, args, kwargs
                )
                return result

    return fit


def _booster_train(original: Callable[..., Any], flavor: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def train(params: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if flavor not in _state.enabled:
            return original(params, *args, **kwargs)
        with _outermost() as outermost:
            if not outermost:
                return original(params, *args, **kwargs)
            with _run_for(f"{flavor}.train") as run:
                history: dict[str, Any] = {}
                kwargs = _with_history(flavor, kwargs, history)
                booster = original(params, *args, **kwargs)
                _safely(run, "the booster", _log_booster, run, flavor, params, booster, history)
                return booster

    return train


def _with_history(flavor: str, kwargs: dict[str, Any], history: dict[str, Any]) -> dict[str, Any]:
    """Ask the library to record per-iteration evaluation results into ``history``."""
    kwargs = dict(kwargs)
    if flavor == "xgboost":
        if kwargs.get("evals_result") is None:
            kwargs["evals_result"] = history
    else:
        import lightgbm

        callbacks = list(kwargs.get("callbacks") or [])
        callbacks.append(lightgbm.record_evaluation(history))
        kwargs["callbacks"] = callbacks
    return kwargs


def _safely(run: ActiveRun, what: str, fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - logging must never break the user's training
        warnings.warn(
            f"conveyor.autolog could not log {what} to run {run.id}: {type(e).__name__}: {e}",
            stacklevel=3,
        )


# -- what gets logged ----------------------------------------------------------------------


def _log_params(run: ActiveRun, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if callable(value) or hasattr(value, "get_params"):
            value = type(value).__name__ if not isinstance(value, type) else value.__name__
        text = repr(value) if not isinstance(value, str) else value
        if len(text) > validation.MAX_PARAM_VALUE:
            text = text[: validation.MAX_PARAM_VALUE - 3] + "..."
        try:
            run.log_param(key, text)
        except (ConflictError, InvalidArgumentError) as e:
            warnings.warn(f"conveyor.autolog skipped param {key!r}: {e}", stacklevel=4)


def _xy(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    x = args[0] if args else kwargs.get("X", kwargs.get("x"))
    y = args[1] if len(args) > 1 else kwargs.get("y")
    return x, y


def _training_metrics(estimator: Any, x: Any, y: Any) -> dict[str, float]:
    from sklearn import metrics
    from sklearn.base import is_classifier, is_regressor

    out: dict[str, float] = {}
    if x is None or y is None:
        return out
    if is_classifier(estimator):
        predicted = estimator.predict(x)
        out["training_accuracy"] = metrics.accuracy_score(y, predicted)
        average = "binary" if len(getattr(estimator, "classes_", [])) == 2 else "weighted"
        out["training_precision"] = metrics.precision_score(
            y, predicted, average=average, zero_division=0
        )
        out["training_recall"] = metrics.recall_score(
            y, predicted, average=average, zero_division=0
        )
        out["training_f1"] = metrics.f1_score(y, predicted, average=average, zero_division=0)
        if hasattr(estimator, "predict_proba") and average == "binary":
            out["training_roc_auc"] = metrics.roc_auc_score(y, estimator.predict_proba(x)[:, 1])
    elif is_regressor(estimator):
        predicted = estimator.predict(x)
        out["training_r2"] = metrics.r2_score(y, predicted)
        out["training_mse"] = metrics.mean_squared_error(y, predicted)
        out["training_mae"] = metrics.mean_absolute_error(y, predicted)
    elif hasattr(estimator, "score"):
        out["training_score"] = float(estimator.score(x, y))
    return {k: float(v) for k, v in out.items()}


def _log_estimator(
    run: ActiveRun, estimator: Any, flavor: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    _log_params(run, estimator.get_params(deep=False))
    x, y = _xy(args, kwargs)
    run.log_metrics(_training_metrics(estimator, x, y))
    evals = getattr(estimator, "evals_result_", None) or {}
    _log_history(run, evals)
    if _state.log_models:
        _log_model(run, estimator, flavor)


def _log_history(run: ActiveRun, history: dict[str, Any]) -> None:
    """Log per-iteration evaluation results ``{dataset: {metric: [values]}}`` by step."""
    for dataset, by_metric in history.items():
        for metric, values in by_metric.items():
            key = f"{dataset}-{metric}"
            for step, value in enumerate(values):
                run.log_metric(key, float(value), step=step)


def _log_booster(
    run: ActiveRun, flavor: str, params: dict[str, Any], booster: Any, history: dict[str, Any]
) -> None:
    _log_params(run, dict(params or {}))
    _log_history(run, history)
    if _state.log_models:
        _log_model(run, booster, flavor)


def _log_model(run: ActiveRun, model: Any, flavor: str) -> None:
    """Store the model in a safe format with a small description of it."""
    with tempfile.TemporaryDirectory(prefix="conveyor-autolog-") as tmp:
        folder = Path(tmp)
        if flavor == "sklearn":
            import sklearn
            import skops.io

            path = folder / "model.skops"
            skops.io.dump(model, path)
            library_version = sklearn.__version__
            model_format = "skops"
        elif flavor == "xgboost":
            import xgboost

            path = folder / "model.json"
            (model.get_booster() if hasattr(model, "get_booster") else model).save_model(path)
            library_version = xgboost.__version__
            model_format = "xgboost-json"
        else:
            import lightgbm

            path = folder / "model.txt"
            (model.booster_ if hasattr(model, "booster_") else model).save_model(str(path))
            library_version = lightgbm.__version__
            model_format = "lightgbm-text"
        run.log_artifact(path, f"model/{path.name}")
        description = {
            "flavor": flavor,
            "format": model_format,
            "file": path.name,
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "library_version": library_version,
            "python_version": platform.python_version(),
            "n_features_in": getattr(model, "n_features_in_", None),
            "feature_names_in": [str(n) for n in getattr(model, "feature_names_in_", [])] or None,
        }
        run.log_text(json.dumps(description, indent=2), "model/conveyor-model.json")
