"""The checks of one monitoring window besides drift: data quality, performance, service."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["freshness", "performance", "quality", "quality_from_profile", "service", "volume"]

VOLUME_FACTOR = 3.0  # a window is anomalous below 1/3 or above 3x the usual rows
VOLUME_HISTORY = 3  # windows needed before the usual volume is trusted


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def quality(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    """Per column: missing-rate change, share of values outside the reference range, unseen
    categories; and the schema: columns the reference has that the window lacks."""
    per_column: dict[str, Any] = {}
    for name in columns:
        ref, cur = reference[name], current[name]
        entry: dict[str, Any] = {
            "reference_missing": _number(ref.isna().mean()) if len(ref) else None,
            "current_missing": _number(cur.isna().mean()) if len(cur) else None,
        }
        numeric = pd.api.types.is_numeric_dtype(ref.dtype) and not pd.api.types.is_bool_dtype(
            ref.dtype
        )
        if numeric and pd.api.types.is_numeric_dtype(cur.dtype) and len(cur):
            low, high = ref.min(), ref.max()
            values = cur.dropna()
            outside = ((values < low) | (values > high)).mean() if len(values) else 0.0
            entry["reference_range"] = [_number(low), _number(high)]
            entry["out_of_range"] = _number(outside)
        elif not numeric and len(cur):
            known = set(ref.dropna().unique().tolist())
            unseen = cur.dropna()[~cur.dropna().isin(known)]
            entry["unseen_share"] = _number(len(unseen) / max(len(cur), 1))
            entry["unseen_values"] = [str(v) for v in unseen.unique()[:10]]
        per_column[name] = entry
    return _quality(per_column, current, sorted(set(reference.columns) - set(current.columns)))


def quality_from_profile(
    profile: dict[str, Any], current: pd.DataFrame, columns: list[str]
) -> dict[str, Any]:
    """:func:`quality` with the reference read from a dataset version's stored profile."""
    per_column: dict[str, Any] = {}
    for name in columns:
        found = profile["columns"][name]
        cur = current[name]
        entry: dict[str, Any] = {
            "reference_missing": _number(found.get("null_rate")),
            "current_missing": _number(cur.isna().mean()) if len(cur) else None,
        }
        if "histogram" in found and pd.api.types.is_numeric_dtype(cur.dtype) and len(cur):
            low, high = found["min"], found["max"]
            values = cur.dropna()
            outside = ((values < low) | (values > high)).mean() if len(values) else 0.0
            entry["reference_range"] = [_number(low), _number(high)]
            entry["out_of_range"] = _number(outside)
        elif found.get("top") and len(cur):
            known = {str(v) for v, _ in found["top"]}
            values = cur.dropna().astype(str)
            unseen = values[~values.isin(known)]
            entry["unseen_share"] = _number(len(unseen) / max(len(cur), 1))
            entry["unseen_values"] = [str(v) for v in unseen.unique()[:10]]
        per_column[name] = entry
    missing = sorted(set(profile["columns"]) - set(current.columns))
    return _quality(per_column, current, missing)


def _quality(
    per_column: dict[str, Any], current: pd.DataFrame, missing_columns: list[str]
) -> dict[str, Any]:
    return {
        "rows": len(current),
        "columns": per_column,
        "missing_columns": missing_columns,
        "max_missing_increase": max(
            (
                (c["current_missing"] or 0.0) - (c["reference_missing"] or 0.0)
                for c in per_column.values()
            ),
            default=0.0,
        ),
    }


def volume(
    rows: int,
    seconds: float,
    history: list[tuple[int, float]],
    *,
    factor: float = VOLUME_FACTOR,
) -> dict[str, Any]:
    """Rows in this window against the usual: the median rate of earlier windows (``history``
    holds their rows and lengths in seconds) scaled to this window's length.

    Anomalous when the ratio falls below ``1 / factor`` or above ``factor``, so an outage
    (no rows) or a flood is flagged while ordinary hour-to-hour swings are not. Fewer than
    three earlier windows: not judged.
    """
    result: dict[str, Any] = {"rows": rows, "history": len(history), "factor": factor}
    rates = [n / s for n, s in history if s > 0]
    if len(rates) < VOLUME_HISTORY:
        result.update(usual=None, ratio=None, anomaly=None)
        result["note"] = f"{len(rates)} earlier window(s); {VOLUME_HISTORY} needed"
        return result
    usual = float(np.median(rates)) * seconds
    result["usual"] = _number(usual)
    if usual <= 0:
        result.update(ratio=None, anomaly=rows > 0, note="the usual volume is zero")
        return result
    ratio = rows / usual
    result.update(ratio=_number(ratio), anomaly=bool(ratio < 1 / factor or ratio > factor))
    return result


def freshness(window: pd.DataFrame, max_age: float | None = None) -> dict[str, Any] | None:
    """How old the online features were when predictions read them (None when the window's
    predictions read none): percentiles of the age, and the share older than ``max_age``."""
    if "feature_age_s" not in window.columns:
        return None
    ages = pd.to_numeric(window["feature_age_s"], errors="coerce").dropna().to_numpy(float)
    if not len(ages):
        return None
    result: dict[str, Any] = {
        "rows": len(ages),
        "p50_s": _number(np.percentile(ages, 50)),
        "p95_s": _number(np.percentile(ages, 95)),
        "max_s": _number(ages.max()),
        "max_age_s": max_age,
    }
    if max_age is not None:
        result["stale_share"] = _number(np.mean(ages > max_age))
    return result


def service(window: pd.DataFrame, seconds: float) -> dict[str, Any]:
    """Latency percentiles, rows and throughput per model version (shadows apart)."""
    if window.empty or "latency_ms" not in window.columns:
        return {"rows": 0, "versions": {}}
    versions: dict[str, Any] = {}
    keys = window["model"].astype(str) + "/" + window["model_version"].astype(str)
    if "role" in window.columns:  # shadow copies are model calls too, reported apart
        keys = keys.where(window["role"] != "shadow", keys + " (shadow)")
    for ref, rows in window.groupby(keys):
        latency = rows["latency_ms"].to_numpy(dtype=float)
        versions[str(ref)] = {
            "rows": len(rows),
            "p50_ms": _number(np.percentile(latency, 50)),
            "p95_ms": _number(np.percentile(latency, 95)),
            "p99_ms": _number(np.percentile(latency, 99)),
            "rows_per_second": _number(len(rows) / seconds) if seconds else None,
        }
    return {"rows": len(window), "versions": versions}


def performance(
    window: pd.DataFrame, labels: pd.DataFrame, *, min_labels: int = 30, task: str = "auto"
) -> dict[str, Any]:
    """Model quality on the window's predictions that have a label (joined by prediction id).

    Classification (labels that are integers, booleans or text): accuracy, macro precision,
    recall and F1, and ROC AUC and log loss when probabilities were logged for two classes.
    Regression: MAE, RMSE, R². ``task`` "auto" takes regression when labels or predictions
    hold fractional numbers (say so with ``task`` when every value of a window may be whole).
    Fewer than ``min_labels`` labelled rows: the metrics are left out and the result says so.
    """
    if window.empty or labels.empty:
        return {"labelled_rows": 0, "status": "no labels"}
    latest = labels.drop_duplicates("prediction_id", keep="last")
    joined = window.merge(latest[["prediction_id", "label"]], on="prediction_id", how="inner")
    joined = joined[joined["label"].notna()]
    n = len(joined)
    result: dict[str, Any] = {"labelled_rows": n, "rows": len(window)}
    if n < min_labels:
        result["status"] = f"too few labels ({n} < {min_labels})"
        return result
    result["status"] = "ok"
    y = joined["label"]
    pred = joined["prediction"].map(_unwrap)
    regression = task == "regression" or (task == "auto" and (_fractional(y) or _fractional(pred)))
    if regression:
        truth, guess = y.to_numpy(float), pred.to_numpy(float)
        errors = guess - truth
        spread = float(np.sum((truth - truth.mean()) ** 2))
        result.update(
            task="regression",
            mae=_number(np.mean(np.abs(errors))),
            rmse=_number(np.sqrt(np.mean(errors**2))),
            r2=_number(1 - float(np.sum(errors**2)) / spread) if spread > 0 else None,
        )
        return result
    truth_text, guess_text = _class_text(y), _class_text(pred)
    classes = _model_order(set(truth_text) | set(guess_text))
    precision, recall, f1 = [], [], []
    for c in classes:
        tp = float(np.sum((guess_text == c) & (truth_text == c)))
        fp = float(np.sum((guess_text == c) & (truth_text != c)))
        fn = float(np.sum((guess_text != c) & (truth_text == c)))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    result.update(
        task="classification",
        accuracy=_number(np.mean(truth_text == guess_text)),
        precision=_number(np.mean(precision)),
        recall=_number(np.mean(recall)),
        f1=_number(np.mean(f1)),
    )
    if "proba" in joined.columns and len(classes) == 2:
        scores = _positive_scores(joined["proba"])
        if scores is not None:
            positive = truth_text == classes[1]
            result["roc_auc"] = _auc(scores, positive)
            clipped = np.clip(scores, 1e-15, 1 - 1e-15)
            result["log_loss"] = _number(
                -np.mean(positive * np.log(clipped) + (~positive) * np.log(1 - clipped))
            )
    return result


def _class_text(values: pd.Series) -> np.ndarray:
    """Class labels as text, so 1, 1.0 and True are one class (and "yes" stays "yes")."""
    text = values.map(
        lambda v: (
            str(int(v))
            if isinstance(v, bool | np.bool_)
            or (isinstance(v, float | np.floating) and float(v).is_integer())
            else str(v)
        )
    )
    return text.to_numpy(dtype=str)


def _unwrap(value: Any) -> Any:
    """A one-element list (an (n, 1) model output) as its element."""
    if isinstance(value, list | tuple | np.ndarray) and len(value) == 1:
        return value[0]
    return value


def _fractional(values: pd.Series) -> bool:
    """True when the values are numbers and some are not whole."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().all() or pd.api.types.is_bool_dtype(values.dtype):
        return False
    array = numbers.dropna().to_numpy(float)
    return bool(np.any(array != np.floor(array)))


def _model_order(classes: set[str]) -> list[str]:
    """Classes in the order a scikit-learn model keeps them (numbers by value, else text),
    which is the order of its probability columns."""
    try:
        return sorted(classes, key=float)
    except ValueError:
        return sorted(classes)


def _positive_scores(proba: pd.Series) -> np.ndarray | None:
    rows = [p for p in proba if isinstance(p, list | tuple | np.ndarray) and len(p) == 2]
    if len(rows) != len(proba):
        return None
    return np.asarray([float(p[1]) for p in rows])


def _auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC by ranks (Mann-Whitney U), ties averaged."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return _number(u / (n_pos * n_neg))
