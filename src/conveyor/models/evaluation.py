"""Evaluate a model on labelled data: task metrics, per slice, fairness, feature importance.

Pure computation on a DataFrame; the service stores the result as an evaluation record linked
to the model version and the dataset version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.errors import InvalidArgumentError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PRIMARY_METRIC", "Evaluation", "compute_evaluation", "infer_task"]

#: The metric promotion checks compare, and whether higher is better.
PRIMARY_METRIC = {"classification": ("roc_auc", True), "regression": ("rmse", False)}
MAX_SLICE_VALUES = 20
MAX_IMPORTANCE_ROWS = 5000


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A model version's evaluation on one dataset (version)."""

    id: str
    model: str
    version: int
    dataset: str  # "customers@4", or "<frame>" for an unversioned DataFrame
    target: str
    task: str
    rows: int
    metrics: dict[str, float | None]
    slices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fairness: dict[str, dict[str, Any]] = field(default_factory=dict)
    importance: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime | None = None
    created_by: str = ""

    @property
    def primary(self) -> tuple[str, float | None, bool]:
        """The metric promotion checks compare: name, value, higher-is-better."""
        name, higher = PRIMARY_METRIC[self.task]
        value = self.metrics.get(name)
        if value is None and self.task == "classification":
            name, value = "accuracy", self.metrics.get("accuracy")
        return name, value, higher

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "dataset": self.dataset,
            "target": self.target,
            "task": self.task,
            "rows": self.rows,
            "metrics": dict(self.metrics),
            "slices": self.slices,
            "fairness": self.fairness,
            "importance": self.importance,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "created_by": self.created_by,
        }


def infer_task(y: pd.Series, has_proba: bool) -> str:
    """Classification when the model gives probabilities or the target is not float."""
    import pandas as pd

    if has_proba:
        return "classification"
    if pd.api.types.is_float_dtype(y) and y.nunique() > 20:
        return "regression"
    return "classification" if not pd.api.types.is_float_dtype(y) else "regression"


def _check_labels(target: str, y: np.ndarray, pred: np.ndarray) -> None:
    """Refuse a classification whose target or predictions are continuous numbers (a
    regression given task="classification"), saying so instead of a metrics error."""
    for what, values in ((f"the target {target!r}", y), ("the model's predictions", pred)):
        if np.issubdtype(values.dtype, np.floating):
            finite = values[np.isfinite(values)]
            if finite.size and not np.all(finite == np.round(finite)):
                raise InvalidArgumentError(
                    f"task='classification', but {what} are continuous numbers (for example "
                    f"{finite[~(finite == np.round(finite))][0]!r}).",
                    hint="Use task='regression' (--task regression), or leave the task out "
                    "to let it be inferred.",
                )


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _classification_metrics(
    y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray | None
) -> dict[str, float | None]:
    from sklearn import metrics

    labels = np.unique(np.concatenate([y, pred]))
    binary = len(labels) <= 2 and (classes is None or len(classes) == 2)
    average = "binary" if binary and len(labels) == 2 else "macro"
    pos = _positive(classes, labels) if average == "binary" else 1
    out: dict[str, float | None] = {
        "accuracy": _finite(metrics.accuracy_score(y, pred)),
        "precision": _finite(
            metrics.precision_score(y, pred, average=average, pos_label=pos, zero_division=0)
        ),
        "recall": _finite(
            metrics.recall_score(y, pred, average=average, pos_label=pos, zero_division=0)
        ),
        "f1": _finite(metrics.f1_score(y, pred, average=average, pos_label=pos, zero_division=0)),
        "roc_auc": None,
        "log_loss": None,
    }
    if proba is not None and classes is not None and len(np.unique(y)) > 1:
        try:
            if len(classes) == 2:
                p = proba[:, 1]
                truth = (y == classes[1]).astype(int)
                out["roc_auc"] = _finite(metrics.roc_auc_score(truth, p))
                out["brier"] = _finite(metrics.brier_score_loss(truth, p))
                out["calibration_error"] = _calibration_error(truth, p)
            else:
                out["roc_auc"] = _finite(
                    metrics.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
                )
            out["log_loss"] = _finite(metrics.log_loss(y, proba, labels=classes))
        except ValueError:  # labels the model never saw: leave the probability metrics out
            pass
    return out


def _positive(classes: np.ndarray | None, labels: np.ndarray) -> Any:
    source = classes if classes is not None and len(classes) == 2 else labels
    return source[-1]


def _calibration_error(truth: np.ndarray, p: np.ndarray, bins: int = 10) -> float | None:
    """Expected calibration error: the count-weighted gap between confidence and frequency."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(p[mask].mean() - truth[mask].mean())
    return _finite(total / len(p))


def _regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    from sklearn import metrics

    return {
        "mae": _finite(metrics.mean_absolute_error(y, pred)),
        "rmse": _finite(np.sqrt(metrics.mean_squared_error(y, pred))),
        "r2": _finite(metrics.r2_score(y, pred)) if len(y) > 1 else None,
    }


class _Scorer:
    def __init__(self, loaded: Any, task: str, classes: np.ndarray | None) -> None:
        self.loaded = loaded
        self.task = task
        self.classes = classes
        self.has_proba = task == "classification" and classes is not None

    def predict(self, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        pred = np.asarray(self.loaded.predict(x))
        proba = None
        if self.has_proba:
            try:
                proba = np.asarray(self.loaded.predict_proba(x))
            except InvalidArgumentError:
                self.has_proba = False
        return pred, proba

    def metrics(self, x: pd.DataFrame, y: np.ndarray) -> dict[str, float | None]:
        pred, proba = self.predict(x)
        if self.task == "classification":
            return _classification_metrics(y, pred, proba, self.classes)
        return _regression_metrics(y, pred)


def compute_evaluation(
    loaded: Any,
    frame: pd.DataFrame,
    target: str,
    *,
    slices: list[str] | None = None,
    sensitive: list[str] | None = None,
    task: str | None = None,
    importance: bool = True,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Return the evaluation's values: task, rows, metrics, slices, fairness, importance."""
    slices = [slices] if isinstance(slices, str) else slices  # one column, not its letters
    sensitive = [sensitive] if isinstance(sensitive, str) else sensitive
    if target not in frame.columns:
        raise InvalidArgumentError(
            f"The data has no target column {target!r}; columns: "
            f"{', '.join(map(str, frame.columns[:20]))}."
        )
    for kind, columns in (("slice", slices or []), ("sensitive", sensitive or [])):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InvalidArgumentError(
                f"The {kind} column(s) {', '.join(map(repr, missing))} are not in the data."
            )
    if frame.empty:
        raise InvalidArgumentError("Cannot evaluate on an empty table.")
    unlabelled = int(frame[target].isna().sum())
    if unlabelled:
        raise InvalidArgumentError(
            f"The target column {target!r} has no value on {unlabelled:,} of {len(frame):,} "
            "rows: every row evaluated needs its label.",
            hint="Drop those rows first (frame.dropna(subset=[target])), or add a version "
            "without them.",
        )
    y = frame[target].to_numpy()
    # Slice and sensitive columns the model does not take are for grouping only: a model
    # with tensor inputs would otherwise get them as features.
    signature = loaded.version.signature
    inputs = {c.name for c in signature.inputs} if signature is not None else set(frame.columns)
    grouping = [c for c in (*(slices or []), *(sensitive or [])) if c not in inputs]
    x = frame.drop(columns=list(dict.fromkeys([target, *grouping])))
    classes = loaded.version.info.get("classes")
    classes = np.asarray(classes) if classes else None
    has_proba = classes is not None or loaded.version.info.get("has_predict_proba", False)
    task = task or infer_task(frame[target], bool(has_proba))
    if task not in PRIMARY_METRIC:
        raise InvalidArgumentError(f"task must be 'classification' or 'regression'; got {task!r}.")
    scorer = _Scorer(loaded, task, classes)
    pred, proba = scorer.predict(x)
    if task == "classification":
        _check_labels(target, y, pred)
    metrics = (
        _classification_metrics(y, pred, proba, classes)
        if task == "classification"
        else _regression_metrics(y, pred)
    )
    out: dict[str, Any] = {"task": task, "rows": len(frame), "metrics": metrics}
    out["slices"] = {
        column: _slice_metrics(frame[column], y, pred, proba, task, classes)
        for column in slices or []
    }
    if task == "classification":
        positive = _positive(classes, np.unique(np.concatenate([y, pred])))
        out["fairness"] = {
            column: _fairness(frame[column], y, pred, positive) for column in sensitive or []
        }
    else:
        out["fairness"] = {}
    out["importance"] = (
        _permutation_importance(scorer, x, y, metrics, task, repeats, seed, _inputs(loaded, x))
        if importance
        else []
    )
    return out


def _inputs(loaded: Any, x: pd.DataFrame) -> list[Any]:
    """The columns of ``x`` the model takes: those its signature names, when it has one by
    name (the others, a slice column say, cannot change a prediction); else all of them."""
    signature = loaded.version.signature
    names = {c.name for c in signature.inputs if c.name} if signature is not None else set()
    taken = [c for c in x.columns if str(c) in names]
    return taken or list(x.columns)


def _slice_metrics(
    column: pd.Series,
    y: np.ndarray,
    pred: np.ndarray,
    proba: np.ndarray | None,
    task: str,
    classes: np.ndarray | None,
) -> list[dict[str, Any]]:
    values = column.astype("object").where(column.notna(), "(missing)")
    rows = []
    for value, count in values.value_counts().head(MAX_SLICE_VALUES).items():
        mask = (values == value).to_numpy()
        if task == "classification":
            part = _classification_metrics(
                y[mask], pred[mask], proba[mask] if proba is not None else None, classes
            )
        else:
            part = _regression_metrics(y[mask], pred[mask])
        rows.append({"value": _jsonable(value), "rows": int(count), **part})
    return rows


def _fairness(column: pd.Series, y: np.ndarray, pred: np.ndarray, positive: Any) -> dict[str, Any]:
    values = column.astype("object").where(column.notna(), "(missing)")
    groups = []
    for value, count in values.value_counts().head(MAX_SLICE_VALUES).items():
        mask = (values == value).to_numpy()
        chosen = pred[mask] == positive
        actual = y[mask] == positive
        groups.append(
            {
                "group": _jsonable(value),
                "rows": int(count),
                "selection_rate": _finite(chosen.mean()),
                "tpr": _finite(chosen[actual].mean()) if actual.any() else None,
                "fpr": _finite(chosen[~actual].mean()) if (~actual).any() else None,
            }
        )

    def gap(key: str) -> float | None:
        seen = [g[key] for g in groups if g[key] is not None]
        return _finite(max(seen) - min(seen)) if len(seen) > 1 else None

    return {
        "positive": _jsonable(positive),
        "groups": groups,
        "demographic_parity_difference": gap("selection_rate"),
        "tpr_gap": gap("tpr"),
        "fpr_gap": gap("fpr"),
    }


def _permutation_importance(
    scorer: _Scorer,
    x: pd.DataFrame,
    y: np.ndarray,
    metrics: dict[str, float | None],
    task: str,
    repeats: int,
    seed: int,
    columns: list[Any],
) -> list[dict[str, Any]]:
    """How much the primary metric worsens when each of ``columns`` is shuffled (mean of
    repeats)."""
    name, higher = PRIMARY_METRIC[task]
    if metrics.get(name) is None:
        name, higher = ("accuracy", True) if task == "classification" else ("rmse", False)
    rng = np.random.default_rng(seed)
    if len(x) > MAX_IMPORTANCE_ROWS:
        keep = rng.choice(len(x), MAX_IMPORTANCE_ROWS, replace=False)
        x, y = x.iloc[keep], y[keep]
    baseline = scorer.metrics(x, y)[name]
    if baseline is None:
        return []
    found: list[dict[str, Any]] = []
    for column in columns:
        drops = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[column] = rng.permutation(shuffled[column].to_numpy())
            value = scorer.metrics(shuffled, y)[name]
            if value is not None:
                drops.append(baseline - value if higher else value - baseline)
        if drops:
            found.append(
                {
                    "feature": str(column),
                    "importance": _snap(float(np.mean(drops))),
                    "std": _snap(float(np.std(drops))),
                }
            )
    found.sort(key=lambda f: float(f["importance"]), reverse=True)
    return [{"metric": name, **f} for f in found]


def _snap(value: float) -> float:
    """Round float noise (1e-17 from subtracting equal scores) to zero."""
    return 0.0 if abs(value) < 1e-12 else value


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
