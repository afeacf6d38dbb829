"""Data drift: does a current sample come from the same distribution as the reference?

Per column, one verdict from a test chosen by type and sample size (``"auto"``):

========== ======================== ======================================================
kind       small samples (<= 5,000)  large samples
========== ======================== ======================================================
numeric    Kolmogorov-Smirnov        Wasserstein distance / reference std >= 0.1
categorical chi-square (2 x k table) Jensen-Shannon distance >= 0.1
========== ======================== ======================================================

On large samples a p-value flags shifts too small to matter (a million rows make any
difference "significant"), so the verdict there rests on an effect size. The p-value tests
are corrected for the number of columns with Benjamini-Hochberg (false-discovery rate).
Every column also reports its PSI (10 reference-quantile bins, or per category), missing
rates and row counts. Tests and thresholds can be set per column.

Numeric statistics come from one sort of each sample: the KS distance, the Wasserstein
distance and the PSI are all read off the two sorted arrays, column by column (so memory stays
at a few arrays of one column), on two threads (NumPy sorts release the GIL).

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"x": rng.normal(size=20_000), "y": rng.normal(size=20_000)})
>>> cur = pd.DataFrame({"x": rng.normal(0.5, 1, 20_000), "y": rng.normal(size=20_000)})
>>> drift(ref, cur).drifted_columns
['x']
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from conveyor.core.errors import InvalidArgumentError
from conveyor.data.tables import SKETCH_SHARES

__all__ = ["TESTS", "ColumnDrift", "DriftReport", "drift"]

TESTS = ("auto", "ks", "wasserstein", "psi", "chi2", "jensenshannon")
NUMERIC_TESTS = ("ks", "wasserstein", "psi")
CATEGORICAL_TESTS = ("chi2", "jensenshannon", "psi")
# A test asked for every column maps to its counterpart for the other kind of column.
_MATCHING_NUMERIC = {"chi2": "ks", "jensenshannon": "wasserstein"}
_MATCHING_CATEGORICAL = {"ks": "chi2", "wasserstein": "jensenshannon"}
DEFAULT_THRESHOLDS = {
    "ks": 0.05,  # on the BH-adjusted p-value
    "chi2": 0.05,
    "wasserstein": 0.1,  # normalized by the reference standard deviation
    "jensenshannon": 0.1,
    "psi": 0.2,
}
SMALL_SAMPLE = 5_000
_BINS = 10
_CHART_BINS = 20
_CHART_CATEGORIES = 10
_THREADS = 2


@dataclass(frozen=True, slots=True)
class ColumnDrift:
    """One column's verdict and the numbers behind it."""

    column: str
    kind: str  # numeric | categorical
    test: str
    statistic: float | None  # the test's distance, or the KS / chi-square statistic
    p_value: float | None  # adjusted (Benjamini-Hochberg) for the p-value tests
    threshold: float
    drifted: bool | None  # None: could not be judged (see ``note``)
    psi: float | None = None
    reference_rows: int = 0
    current_rows: int = 0
    reference_missing: float = 0.0
    current_missing: float = 0.0
    note: str = ""
    # Both samples binned alike, for charts: {"edges": [...]} (numeric) or
    # {"categories": [...]} (categorical), with "reference" and "current" shares per bin.
    histogram: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Per-column drift and the dataset's verdict (drifted when ``share_drifted`` reaches
    ``dataset_threshold``)."""

    columns: list[ColumnDrift]
    reference_rows: int
    current_rows: int
    dataset_threshold: float = 0.5
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def judged(self) -> int:
        return sum(1 for c in self.columns if c.drifted is not None)

    @property
    def share_drifted(self) -> float:
        return len(self.drifted_columns) / self.judged if self.judged else 0.0

    @property
    def dataset_drifted(self) -> bool | None:
        """True or False; None when no column could be judged (an empty window, say)."""
        if not self.judged:
            return None
        return self.share_drifted >= self.dataset_threshold

    def table(self) -> pd.DataFrame:
        """One row per column: kind, test, statistic, p-value, threshold, drifted, PSI, ..."""
        rows = [asdict(c) for c in self.columns]
        return pd.DataFrame([{k: v for k, v in r.items() if k != "histogram"} for r in rows])

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_drifted": self.dataset_drifted,
            "share_drifted": self.share_drifted,
            "drifted_columns": self.drifted_columns,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "dataset_threshold": self.dataset_threshold,
            "settings": self.settings,
            "columns": [_jsonable(asdict(c)) for c in self.columns],
        }


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()
    }


def _is_numeric(series: pd.Series) -> bool:
    return bool(
        pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series)
    )


def drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    tests: str | dict[str, str] = "auto",
    thresholds: dict[str, float] | None = None,
    dataset_threshold: float = 0.5,
    categorical: list[str] | None = None,
) -> DriftReport:
    """Compare ``current`` with ``reference``, column by column; see the module docs.

    ``tests`` is one test for every column or ``{column: test}`` (others ``auto``);
    ``thresholds`` maps a test name or a column name to its threshold; ``categorical`` names
    numeric columns to treat as categories (codes, say).
    """
    for name, frame in (("reference", reference), ("current", current)):
        if not isinstance(frame, pd.DataFrame):
            raise InvalidArgumentError(
                f"drift() takes pandas DataFrames; the {name} is a {type(frame).__name__}."
            )
    wanted = list(columns) if columns is not None else list(reference.columns)
    missing = [c for c in wanted if c not in reference.columns or c not in current.columns]
    if missing:
        raise InvalidArgumentError(
            f"Column(s) {', '.join(map(repr, missing[:10]))} are not in both tables.",
            hint="Compare the columns both have, or pass columns=[...].",
        )
    check_tests(tests, thresholds)
    per_column = tests if isinstance(tests, dict) else {}
    default_test = tests if isinstance(tests, str) else "auto"
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    as_categories = set(categorical or ())
    numeric = [c for c in wanted if c not in as_categories and _is_numeric(reference[c])]
    numeric_set = set(numeric)

    results: dict[str, ColumnDrift] = {}
    with ThreadPoolExecutor(_THREADS) as pool:
        for result in pool.map(
            lambda c: _numeric_column(
                c, reference[c], current[c], per_column.get(c, default_test), limits
            ),
            numeric,
        ):
            results[result.column] = result
    for c in wanted:
        if c not in numeric_set:
            results[c] = _categorical_column(
                c, reference[c], current[c], per_column.get(c, default_test), limits
            )
    ordered = _adjust([results[c] for c in wanted], limits)
    settings = {"tests": tests, "thresholds": limits, "small_sample": SMALL_SAMPLE}
    return DriftReport(ordered, len(reference), len(current), dataset_threshold, settings)


def check_tests(tests: str | dict[str, str], thresholds: dict[str, float] | None) -> None:
    """Raise a clear error for an unknown test or a threshold that is not a number."""
    per_column = tests if isinstance(tests, dict) else {}
    default_test = tests if isinstance(tests, str) else "auto"
    unknown = {t for t in [default_test, *per_column.values()] if t not in TESTS}
    if unknown:
        raise InvalidArgumentError(
            f"Unknown drift test(s) {', '.join(sorted(unknown))}; known: {', '.join(TESTS)}."
        )
    for key, value in (thresholds or {}).items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidArgumentError(
                f"The threshold for {key!r} must be a number; got {value!r}."
            )


def _threshold(limits: dict[str, float], column: str, test: str) -> float:
    return float(limits.get(column, limits[test]))


def _base(
    name: str,
    kind: str,
    test: str,
    limits: dict[str, float],
    n: int,
    m: int,
    reference_missing: float,
    current_missing: float,
) -> dict[str, Any]:
    """The fields every column's verdict has, whichever way it was judged."""
    return {
        "column": name,
        "kind": kind,
        "test": test,
        "threshold": _threshold(limits, name, test),
        "reference_rows": n,
        "current_rows": m,
        "reference_missing": reference_missing,
        "current_missing": current_missing,
    }


def _missing_rate(series: pd.Series) -> float:
    return float(series.isna().mean()) if len(series) else 0.0


def _numeric_column(
    name: str, ref: pd.Series, cur: pd.Series, test: str, limits: dict[str, float]
) -> ColumnDrift:
    r, _ = _floats(ref)
    c, coerced = _floats(cur)
    r = r[np.isfinite(r)]  # a copy, sorted in place below
    c = c[np.isfinite(c)]
    r.sort()
    c.sort()
    n, m = len(r), len(c)
    if test == "auto":
        test = "ks" if min(n, m) <= SMALL_SAMPLE else "wasserstein"
    test = _MATCHING_NUMERIC.get(test, test)
    base = _base(name, "numeric", test, limits, n, m, _missing_rate(ref), _missing_rate(cur))
    if n == 0 or m == 0:
        side = "reference" if n == 0 else "current sample"
        return ColumnDrift(
            statistic=None, p_value=None, drifted=None, note=f"the {side} has no values", **base
        )
    ks, wasserstein = _distances(r, c)
    spread = float(np.std(r))
    psi = _psi_numeric(r, c)
    base["histogram"] = _numeric_histogram(r, c)
    note = "some current values are not numbers (left out)" if coerced else ""
    return _numeric_verdict(base, ks, wasserstein, spread, psi, note)


def _numeric_verdict(
    base: dict[str, Any], ks: float, wasserstein: float, spread: float, psi: float, note: str
) -> ColumnDrift:
    """The column's verdict from its distances (exact, or from the reference's profile)."""
    test, n, m = base["test"], base["reference_rows"], base["current_rows"]
    normalized = wasserstein / spread if spread > 0 else (0.0 if wasserstein == 0 else math.inf)
    if test == "ks":
        effective = max(1, round(n * m / (n + m)))
        from scipy.stats import kstwo

        p = float(np.clip(kstwo.sf(ks, effective), 0.0, 1.0))
        return ColumnDrift(statistic=ks, p_value=p, drifted=None, psi=psi, note=note, **base)
    value = normalized if test == "wasserstein" else psi
    return ColumnDrift(
        statistic=value,
        p_value=None,
        drifted=bool(value >= base["threshold"]),
        psi=psi,
        note="; ".join(x for x in ("constant reference" if spread == 0 else "", note) if x),
        **base,
    )


def _floats(series: pd.Series) -> tuple[np.ndarray, bool]:
    """The column as float64 (no copy when it already is), and whether text had to be left out.

    A current column whose values are not all numbers (text sent for a number, say) is read
    with those values as missing, and the result says so, rather than failing the check.
    """
    if series.dtype == np.float64:
        return series.to_numpy(), False
    try:
        return series.to_numpy(dtype=np.float64, na_value=np.nan), False
    except (TypeError, ValueError):
        numbers = pd.to_numeric(series.astype(object), errors="coerce")
        return numbers.to_numpy(dtype=np.float64, na_value=np.nan), True


def _distances(r: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """The KS distance and the Wasserstein-1 distance of two sorted samples.

    The samples are merged and sorted once; at the i-th merged value, k reference values are
    at or below it, so n m |F_ref - F_cur| = |k (n + m) - (i + 1) n|, which is exact at the
    last of equal values (where both CDFs step), and the other places weigh nothing in the
    Wasserstein sum (their gap to the next value is 0). One integer array, no argsort.
    """
    n, m = len(r), len(c)
    values = np.concatenate([r, c])
    values.sort()
    steps = np.searchsorted(r, values, side="right")
    steps *= n + m
    for start in range(0, len(steps), 1 << 20):  # minus (i + 1) n, a block at a time
        stop = min(start + (1 << 20), len(steps))
        steps[start:stop] -= np.arange(start + 1, stop + 1, dtype=steps.dtype) * n
    np.abs(steps, out=steps)
    scale = float(n) * float(m)
    last = np.empty(len(values), dtype=bool)
    np.not_equal(values[1:], values[:-1], out=last[:-1])
    last[-1] = True
    ks = float(steps.max(where=last, initial=0)) / scale
    gaps = np.subtract(values[1:], values[:-1], out=values[:-1])  # in place: values is done
    wasserstein = float(steps[:-1] @ gaps) / scale
    return ks, wasserstein


def _fill(p: np.ndarray) -> np.ndarray:
    return np.where(p == 0, 1e-4, p)


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    p = _fill(ref_counts / max(ref_counts.sum(), 1))
    q = _fill(cur_counts / max(cur_counts.sum(), 1))
    return float(np.sum((q - p) * np.log(q / p)))


def _psi_numeric(r: np.ndarray, c: np.ndarray) -> float:
    edges = np.unique(r[(np.arange(1, _BINS) * len(r)) // _BINS])
    ref_counts = np.diff(np.searchsorted(r, edges, side="left"), prepend=0, append=len(r))
    cur_counts = np.diff(np.searchsorted(c, edges, side="left"), prepend=0, append=len(c))
    return _psi(ref_counts.astype(float), cur_counts.astype(float))


def _numeric_histogram(r: np.ndarray, c: np.ndarray) -> dict[str, Any]:
    """Shares of both sorted samples in equal-width bins over the central 99% of their
    values (the tails fall in the end bins): a few searches, no pass over the data."""
    n, m = len(r), len(c)
    low = float(min(r[n // 200], c[m // 200]))
    high = float(max(r[n - 1 - n // 200], c[m - 1 - m // 200]))
    if not high > low:
        return {"edges": [low, low], "reference": [1.0], "current": [1.0]}
    edges = np.linspace(low, high, _CHART_BINS + 1)
    inner = edges[1:-1]
    shares = [
        (np.diff(np.searchsorted(x, inner, side="left"), prepend=0, append=len(x)) / len(x))
        for x in (r, c)
    ]
    return {
        "edges": [round(float(e), 6) for e in edges],
        "reference": [round(float(v), 5) for v in shares[0]],
        "current": [round(float(v), 5) for v in shares[1]],
    }


def _category_histogram(
    categories: pd.Index, ref_counts: np.ndarray, cur_counts: np.ndarray
) -> dict[str, Any]:
    """Shares of the most frequent categories of both samples, the rest as "(other)"."""
    p = ref_counts / max(ref_counts.sum(), 1)
    q = cur_counts / max(cur_counts.sum(), 1)
    order = np.argsort(-(p + q), kind="stable")
    top, rest = order[:_CHART_CATEGORIES], order[_CHART_CATEGORIES:]
    names = [str(categories[i]) for i in top]
    ref_shares, cur_shares = list(p[top]), list(q[top])
    if len(rest):
        names.append("(other)")
        ref_shares.append(p[rest].sum())
        cur_shares.append(q[rest].sum())
    return {
        "categories": names,
        "reference": [round(float(v), 5) for v in ref_shares],
        "current": [round(float(v), 5) for v in cur_shares],
    }


def _categorical_column(
    name: str, ref: pd.Series, cur: pd.Series, test: str, limits: dict[str, float]
) -> ColumnDrift:
    # Counts per side, aligned on the union of categories: no concatenated copy of the data,
    # and dictionary-encoded (categorical) columns are counted from their codes.
    ref_vc = ref.value_counts(dropna=True, sort=False)
    cur_vc = cur.value_counts(dropna=True, sort=False)
    ref_vc, cur_vc = ref_vc[ref_vc > 0], cur_vc[cur_vc > 0]
    categories = ref_vc.index.union(cur_vc.index, sort=False)
    ref_counts = ref_vc.reindex(categories, fill_value=0).to_numpy(dtype=float)
    cur_counts = cur_vc.reindex(categories, fill_value=0).to_numpy(dtype=float)
    n, m = int(ref_counts.sum()), int(cur_counts.sum())
    if test == "auto":
        test = "chi2" if min(n, m) <= SMALL_SAMPLE else "jensenshannon"
    test = _MATCHING_CATEGORICAL.get(test, test)
    base = _base(name, "categorical", test, limits, n, m, _missing_rate(ref), _missing_rate(cur))
    return _categorical_verdict(base, categories, ref_counts, cur_counts)


def _categorical_verdict(
    base: dict[str, Any], categories: Any, ref_counts: np.ndarray, cur_counts: np.ndarray
) -> ColumnDrift:
    """The column's verdict from the two samples' counts per category."""
    test, n, m, k = base["test"], base["reference_rows"], base["current_rows"], len(categories)
    unseen = [str(categories[i]) for i in np.flatnonzero((ref_counts == 0) & (cur_counts > 0))]
    note = f"categories not in the reference: {', '.join(unseen[:5])}" if unseen else ""
    if n == 0 or m == 0:
        side = "reference" if n == 0 else "current sample"
        return ColumnDrift(
            statistic=None, p_value=None, drifted=None, note=f"the {side} has no values", **base
        )
    psi = _psi(ref_counts, cur_counts)
    base["histogram"] = _category_histogram(categories, ref_counts, cur_counts)
    if test == "chi2":
        if k < 2:
            return ColumnDrift(
                statistic=0.0, p_value=1.0, drifted=False, psi=psi, note="one category", **base
            )
        from scipy.stats import chi2_contingency

        statistic, p, _, _ = chi2_contingency(np.vstack([ref_counts, cur_counts]))
        return ColumnDrift(
            statistic=float(statistic), p_value=float(p), drifted=None, psi=psi, note=note, **base
        )
    if test == "jensenshannon":
        from scipy.spatial.distance import jensenshannon

        value = float(jensenshannon(ref_counts / n, cur_counts / m))
    else:
        value = psi
    return ColumnDrift(
        statistic=value,
        p_value=None,
        drifted=bool(value >= base["threshold"]),
        psi=psi,
        note=note,
        **base,
    )


# -- against a stored profile ------------------------------------------------------------------


def profiled(profile: dict[str, Any], column: str) -> bool:
    """Whether ``profile`` (a dataset version's) describes ``column`` well enough to judge
    drift from it: a histogram of numbers, or the counts of every category."""
    found = (profile.get("columns") or {}).get(column) or {}
    if "histogram" in found and found.get("std") is not None:
        return True
    return bool(found.get("top")) and found.get("distinct", 0) <= len(found["top"])


def drift_from_profile(
    profile: dict[str, Any],
    current: pd.DataFrame,
    *,
    columns: list[str],
    tests: str | dict[str, str] = "auto",
    thresholds: dict[str, float] | None = None,
    dataset_threshold: float = 0.5,
) -> DriftReport:
    """Like :func:`drift`, with the reference read from its stored profile (see
    :func:`profiled`), so the reference data is not read again.

    Numbers: the reference's CDF comes from its 20-bin histogram (uniform within a bin); the
    current sample's is exact. KS is their largest gap on a fine grid, Wasserstein the area
    between them, PSI over the histogram's bins (plus one bin each side for values outside
    the reference's range). Categories: the stored counts, exactly.
    """
    check_tests(tests, thresholds)
    per_column = tests if isinstance(tests, dict) else {}
    default_test = tests if isinstance(tests, str) else "auto"
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    results = []
    for name in columns:
        found = profile["columns"][name]
        test = per_column.get(name, default_test)
        if "histogram" in found:
            results.append(_numeric_from_profile(name, found, current[name], test, limits))
        else:
            results.append(_categorical_from_profile(name, found, current[name], test, limits))
    ordered = _adjust(results, limits)
    settings = {"tests": tests, "thresholds": limits, "reference": "profile"}
    return DriftReport(
        ordered, int(profile.get("rows", 0)), len(current), dataset_threshold, settings
    )


def _numeric_from_profile(
    name: str, found: dict[str, Any], cur: pd.Series, test: str, limits: dict[str, float]
) -> ColumnDrift:
    edges = np.asarray(found["histogram"]["edges"], dtype=float)
    ref_counts = np.asarray(found["histogram"]["counts"], dtype=float)
    n = int(ref_counts.sum())
    c, coerced = _floats(cur)
    c = np.sort(c[np.isfinite(c)])
    m = len(c)
    if test == "auto":
        test = "ks" if min(n, m) <= SMALL_SAMPLE else "wasserstein"
    test = _MATCHING_NUMERIC.get(test, test)
    missing = float(found.get("null_rate") or 0.0)
    base = _base(name, "numeric", test, limits, n, m, missing, _missing_rate(cur))
    if n == 0 or m == 0:
        side = "reference" if n == 0 else "current sample"
        return ColumnDrift(
            statistic=None, p_value=None, drifted=None, note=f"the {side} has no values", **base
        )
    points = _sketch_points(found.get("sketch"))
    if points is not None:
        ks, wasserstein = _distances_from_sketch(np.asarray(SKETCH_SHARES), points, c)
    else:  # a profile made before sketches were kept: its histogram
        ks, wasserstein = _distances_from_histogram(edges, ref_counts, n, c)
    outer = np.concatenate([[-np.inf], edges[1:-1], [np.inf]])
    cur_counts = np.diff(np.searchsorted(c, outer, side="left"))
    below, above = (
        int(np.searchsorted(c, edges[0], "left")),
        m - int(np.searchsorted(c, edges[-1], "right")),
    )
    cur_bins = np.concatenate([[below], cur_counts.astype(float), [above]])
    cur_bins[1] -= below
    cur_bins[-2] -= above
    psi = _psi(np.concatenate([[0.0], ref_counts, [0.0]]), cur_bins)
    base["histogram"] = {
        "edges": [round(float(e), 6) for e in edges],
        "reference": [round(float(v), 5) for v in ref_counts / n],
        "current": [round(float(v), 5) for v in cur_bins[1:-1] / m],
    }
    note = "some current values are not numbers (left out)" if coerced else ""
    spread = float(found.get("std") or 0.0)
    return _numeric_verdict(base, ks, wasserstein, spread, psi, note)


def _sketch_points(sketch: Any) -> np.ndarray | None:
    """A profile's sketch (float32s at SKETCH_SHARES, in base64) as float64s, or None when
    the profile has none (made before) or it is not one."""
    import base64
    import binascii

    if not isinstance(sketch, str):
        return None
    try:
        points = np.frombuffer(base64.b64decode(sketch, validate=True), dtype="<f4")
    except (binascii.Error, ValueError):
        return None
    if len(points) != len(SKETCH_SHARES) or not np.isfinite(points).all():
        return None
    return points.astype(np.float64)


def _distances_from_sketch(
    shares: np.ndarray, points: np.ndarray, c: np.ndarray
) -> tuple[float, float]:
    """KS and Wasserstein distances between the reference, known by its values ``points``
    at ``shares`` of its rows (uniform between neighbours), and the sorted current sample
    ``c`` (exact).

    Both CDFs are compared where either changes: the reference's sketch points and the
    current values. A value the reference holds many times (a whole-number column) is one
    point, the share of the reference up to and including it, as for the sample.
    """
    support, last = np.unique(points[::-1], return_index=True)  # the last share of each value
    at = shares[::-1][last]
    m = len(c)

    def f_ref(x: np.ndarray) -> np.ndarray:
        return np.interp(x, support, at, left=0.0, right=1.0)

    grid = np.union1d(support, c)
    gaps = np.abs(f_ref(grid) - np.searchsorted(c, grid, side="right") / m)
    ks = float(gaps.max())
    # Wasserstein is the area between the quantile functions: both read at the same
    # percentiles (the sample's exactly), so neither is assumed linear where the other
    # steps (whole numbers), and a long tail weighs what its share of rows does.
    apart = np.abs(points - np.quantile(c, shares))
    wasserstein = float(np.sum((apart[1:] + apart[:-1]) / 2 * np.diff(shares)))
    return ks, wasserstein


def _distances_from_histogram(
    edges: np.ndarray, ref_counts: np.ndarray, n: int, c: np.ndarray
) -> tuple[float, float]:
    """KS and Wasserstein distances from a profile's equal-width histogram (profiles made
    before the percentile sketch)."""
    m = len(c)
    # Both CDFs at the histogram's edges, where the reference's is exact (the share of its
    # values below each edge, as numpy's half-open bins count them; all of them at the last),
    # plus the current sample's own range beyond them. Between points both are taken as
    # linear, alike, so a column of whole numbers is not seen to drift by its steps.
    below_edge = np.searchsorted(c, edges[:-1], side="left") / m
    f_cur = np.concatenate([below_edge, [np.searchsorted(c, edges[-1], side="right") / m]])
    f_ref = np.concatenate([[0.0], np.cumsum(ref_counts)]) / n
    grid = edges
    if c[0] < edges[0]:
        grid, f_ref, f_cur = np.concatenate([[c[0]], grid]), np.r_[0.0, f_ref], np.r_[0.0, f_cur]
    if c[-1] > edges[-1]:
        grid, f_ref, f_cur = np.r_[grid, c[-1]], np.r_[f_ref, 1.0], np.r_[f_cur, 1.0]
    gaps = np.abs(f_ref - f_cur)
    ks = float(gaps.max())
    return ks, float(np.sum((gaps[1:] + gaps[:-1]) / 2 * np.diff(grid)))


def _categorical_from_profile(
    name: str, found: dict[str, Any], cur: pd.Series, test: str, limits: dict[str, float]
) -> ColumnDrift:
    reference = pd.Series({str(v): float(c) for v, c in found["top"]})
    current = cur.dropna().astype(str).value_counts(sort=False)
    categories = reference.index.union(current.index, sort=False)
    ref_counts = reference.reindex(categories, fill_value=0).to_numpy(dtype=float)
    cur_counts = current.reindex(categories, fill_value=0).to_numpy(dtype=float)
    n, m = int(ref_counts.sum()), int(cur_counts.sum())
    if test == "auto":
        test = "chi2" if min(n, m) <= SMALL_SAMPLE else "jensenshannon"
    test = _MATCHING_CATEGORICAL.get(test, test)
    missing = float(found.get("null_rate") or 0.0)
    base = _base(name, "categorical", test, limits, n, m, missing, _missing_rate(cur))
    return _categorical_verdict(base, categories, ref_counts, cur_counts)


def _adjust(results: list[ColumnDrift], limits: dict[str, float]) -> list[ColumnDrift]:
    """Benjamini-Hochberg over the columns judged by a p-value; their verdicts set here."""
    out = list(results)
    for i, r in enumerate(results):
        if r.p_value is not None and not math.isfinite(r.p_value):
            out[i] = replace(r, p_value=None, note="too few values for a p-value")
    results = out
    tested = [i for i, r in enumerate(results) if r.p_value is not None and r.drifted is None]
    if not tested:
        return results
    p = np.array([results[i].p_value for i in tested], dtype=float)
    order = np.argsort(p)
    ranked = p[order] * len(p) / (np.arange(len(p)) + 1)
    adjusted_sorted = np.minimum.accumulate(ranked[::-1])[::-1].clip(0, 1)
    adjusted = np.empty_like(p)
    adjusted[order] = adjusted_sorted
    out = list(results)
    for i, q in zip(tested, adjusted, strict=True):
        r = results[i]
        out[i] = replace(r, p_value=float(q), drifted=bool(q < r.threshold))
    return out
