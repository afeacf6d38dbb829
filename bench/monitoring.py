"""Monitoring benchmark: Conveyor's drift report beside Evidently's and the NumPy/SciPy limit.

Run from the repository root::

    .venv/bin/python bench/monitoring.py             # full run, updates docs/benchmarks.md
    .venv/bin/python bench/monitoring.py --no-docs   # full run, figures on stdout only
    .venv/bin/python bench/monitoring.py --quick     # smoke run (100,000 rows, 1 rep), no docs
    .venv/bin/python bench/monitoring.py --quick --sizes 20000 --no-evidently

The workload of the monitoring issue (9), on the same files for every tool and in one run: a
data-drift report of a current table against a reference table, both of N rows x 25 columns
(20 float64 columns ``num_00..num_19``, 5 string columns ``cat_0..cat_4`` of 3 to 50
categories), N = 100,000 and 1,000,000 (``--sizes``). The tables come from the peers' generator,
``limits_data.py`` in ``shared/bench/peers`` (``--peers-dir``), unchanged (fixed seed), with
drift injected in the current table in 3 columns: ``num_00`` (mean +0.5 sd), ``num_07`` (scale
x1.5) and ``cat_2`` (half the category mass reversed). They are written once as Parquet under
the ignored ``.bench/monitoring/data/`` and reused; every tool reads those files.

* Conveyor: in a fresh process per rep, ``import conveyor as cv`` (and, as the limit does
  before its timer, ``scipy.stats`` and ``scipy.spatial.distance``; ``conveyor.monitoring.stats``,
  which the first call would import, too), the two files read with
  ``cv.monitoring.read_table`` (text columns dictionary-encoded, as ``conveyor monitor drift``
  reads them),
  then ``report = cv.monitoring.drift(reference_df, current_df)`` with its defaults, its
  ``report.drifted_columns`` and ``report.table()``. Timed: from the DataFrames in memory to the
  report and its table (the peers' scope); also the total with the reading of both files; then
  a second, warm call in the same process. Peak memory: the process's ``ru_maxrss`` right after
  the first call (it includes the two DataFrames, as the peers' does).
* Evidently: ``evidently_bench.py --worker --variant default --n N`` (``DataDriftPreset()``,
  its auto-selected methods; timed: ``Dataset.from_pandas`` of both tables, ``Report.run`` and
  ``snapshot.dict()``), in its own venv ``.bench/venvs/evidently`` with the versions the peers
  pin (``limits_data.PIP_SPECS["evidently"]``: ``evidently==0.7.23 pandas==2.3.3``), installed
  by this script on first use.
* The limit: ``limits_drift_bench.py --worker --method default --n N``, the same two effect
  sizes as Evidently's defaults (Wasserstein distance / reference std >= 0.1 for numeric
  columns, Jensen-Shannon distance >= 0.1 for categorical ones) with direct NumPy/SciPy calls,
  run with Conveyor's interpreter (``LIMITS_VENV``), so on the same NumPy, SciPy and pandas.

Each rep of each side is a fresh process; the sides alternate rep by rep. Reps: ``--reps``
(default 3; ``--quick``: 1), except Evidently above 100,000 rows, which takes about two minutes
and 2.7 GB at 1,000,000 rows: ``--evidently-big-reps`` (default 1). Every side's flagged columns
are checked against the 3 drifted ones, and each side's per-column statistic is compared with
the limit's. Targets (issue 9), at 1,000,000 rows: Conveyor at least 20x faster than Evidently
and at most a quarter of its peak memory; within 2x of the limit's time; and exactly the 3
drifted columns flagged, at both sizes. A run without 1,000,000 rows (``--quick``) gives the
ratios at its largest size as indicative only (``met`` null, ``would_meet`` set). Each figure,
ratio and target is printed as one JSON line; a final line holds the targets.

A full run rewrites the Monitoring section of docs/benchmarks.md; it takes a run at 1,000,000
rows with Evidently (``--quick``, ``--no-docs``: docs untouched; ``--docs-file`` writes the
section of any other run to another file). This file is also the child script (``python
monitoring.py --child OP ARGS...``). Only the standard library (and ``bench/_common.py``) is
imported at the top.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    DOCS,
    REPO,
    ChildFailed,
    Figures,
    child_env,
    child_versions,
    ensure_peer_venv,
    import_peers_data,
    last_json,
    log,
    median,
    rounded,
    samples,
    spawn,
    update_docs,
)

SECTION = "monitoring"
TITLE = "## Monitoring (bench/monitoring.py)"
PEERS_DIR = REPO.parent / "shared" / "bench" / "peers"
EVIDENTLY_VENV = REPO / ".bench" / "venvs" / "evidently"
WORK_ROOT = REPO / ".bench" / "monitoring"
DATA_DIR = WORK_ROOT / "data"
PEER_FILES = ("limits_data.py", "evidently_bench.py", "limits_drift_bench.py")
EVIDENTLY_PIN = "evidently==0.7.23"
DRIFTED = ("num_00", "num_07", "cat_2")  # the issue's; the docs describe each one's drift
FULL_SIZES = (100_000, 1_000_000)
QUICK_SIZES = (100_000,)
BIG_ROWS = 100_000  # above this, Evidently runs --evidently-big-reps reps
SIDES = ("conveyor", "numpy-scipy", "evidently")
LABELS = {
    "conveyor": "Conveyor `cv.monitoring.drift`",
    "numpy-scipy": "NumPy/SciPy limit (`limits_drift_bench.py`, default)",
    "evidently": "Evidently `DataDriftPreset()`",
}
#: Targets of the issue, at TARGET_ROWS.
TARGET_ROWS = 1_000_000
EVIDENTLY_SPEED_MIN = 20.0  # Evidently seconds / Conveyor seconds, at least
EVIDENTLY_MEMORY_MAX = 0.25  # Conveyor peak RSS / Evidently peak RSS, at most
LIMIT_TIME_MAX = 2.0  # Conveyor seconds / limit seconds, at most

# -------------------------------------------------------------------------------------------
# Child side: one measurement per process, result printed as one JSON line.
# -------------------------------------------------------------------------------------------


def peers_data() -> Any:
    """Import the peers' ``limits_data`` (standard library only at import), no bytecode there."""
    sys.dont_write_bytecode = True
    sys.path.insert(0, os.environ["MONITORING_BENCH_PEERS"])
    import limits_data as lim

    return lim


def peak_mb() -> float:
    """Return this process's peak resident memory (``ru_maxrss``) in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    """Return this process's resident memory now, in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child_data(rows: str) -> dict[str, Any]:
    """Generate (or reuse) the drift tables of ``rows`` rows with the peers' generator."""
    lim = peers_data()
    n = int(rows)
    t0 = time.perf_counter()
    folder = Path(lim.ensure_drift_data(n))
    seconds = time.perf_counter() - t0
    import pyarrow.parquet as pq

    out: dict[str, Any] = {
        "folder": str(folder),
        "seconds": seconds,
        "seed": lim.SEED,
        "drifted": list(lim.DRIFTED),
    }
    for which in ("ref", "cur"):
        path = folder / f"drift_{which}_{n}.parquet"
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
        out[which] = {
            "rows": meta.num_rows,
            "columns": {f.name: str(f.type) for f in schema},
            "mb": round(path.stat().st_size / 2**20, 1),
        }
    return out


def child_conveyor(rows: str) -> dict[str, Any]:
    """Read both tables, time ``cv.monitoring.drift`` (first call, then a warm one)."""
    # The limit imports both SciPy modules before its timer; Conveyor's first call would
    # import conveyor.monitoring.stats (and SciPy's modules) lazily: all imported first here.
    t0 = time.perf_counter()
    import scipy.spatial.distance
    import scipy.stats  # noqa: F401

    import conveyor as cv
    import conveyor.monitoring.stats

    import_s = time.perf_counter() - t0
    folder = Path(peers_data().data_dir())
    t_read = time.perf_counter()
    ref = cv.monitoring.read_table(folder / f"drift_ref_{rows}.parquet")
    cur = cv.monitoring.read_table(folder / f"drift_cur_{rows}.parquet")
    read_s = time.perf_counter() - t_read
    rss0 = rss_mb()

    t0 = time.perf_counter()
    report = cv.monitoring.drift(ref, cur)
    t_drift = time.perf_counter()
    table = report.table()
    flagged = report.drifted_columns
    t1 = time.perf_counter()
    peak = peak_mb()
    t2 = time.perf_counter()
    cv.monitoring.drift(ref, cur).table()
    warm = time.perf_counter() - t2
    return {
        "n": int(rows),
        "seconds": t1 - t0,
        "drift_seconds": t_drift - t0,
        "total_seconds": t1 - t_read,
        "read_seconds": read_s,
        "import_seconds": import_s,
        "warm_seconds": warm,
        "rss_before_mb": rss0,
        "peak_rss_mb": peak,
        "detected": sorted(flagged),
        "dataset_drifted": report.dataset_drifted,
        "share_drifted": report.share_drifted,
        "dtypes": sorted({str(t) for t in ref.dtypes}),
        "columns": {
            str(r.column): {"test": r.test, "value": r.statistic, "drift": r.drifted}
            for r in table.itertuples()
        },
    }


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "data": child_data,
    "conveyor": child_conveyor,
    "versions": child_versions,
}


def run_child(op: str, argv: Sequence[str]) -> None:
    """Run ``op`` in this process and print its result as one JSON line."""
    import warnings

    warnings.filterwarnings("ignore")
    print(json.dumps(CHILDREN[op](*argv)), flush=True)


# -------------------------------------------------------------------------------------------
# Parent side: the Evidently venv, processes, the reps.
# -------------------------------------------------------------------------------------------


def load() -> float:
    """Return the 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def file_digest(path: Path) -> str:
    """Return the first 12 hex digits of the sha256 of ``path``."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


class Bench:
    """The interpreters, the environment, and how each side runs one rep."""

    def __init__(
        self,
        args: argparse.Namespace,
        scratch: Path,
        conveyor: Path,
        evidently: Path | None,
        env: dict[str, str],
        drifted: Sequence[str],
    ) -> None:
        self.args = args
        self.scratch = scratch
        self.conveyor = conveyor
        self.evidently = evidently
        self.env = env
        self.drifted = sorted(drifted)
        self.script = Path(__file__).resolve()
        self.runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
        self.failed: dict[int, str] = {}  # Evidently's failures, by size

    def child(self, python: Path, op: str, *args: object) -> dict[str, Any]:
        """Run a child mode of this script; return its JSON line."""
        return last_json(spawn([python, self.script, "--child", op, *args], self.env, self.scratch))

    def peer(self, python: Path, script: str, *args: object) -> dict[str, Any]:
        """Run a peer script's worker unchanged; return its ``RESULT`` line."""
        argv = [python, self.args.peers_dir / script, "--worker", *args]
        return last_json(spawn(argv, self.env, self.scratch), "RESULT ")

    def reps(self, side: str, n: int) -> int:
        """Return how many reps ``side`` runs at ``n`` rows."""
        if side == "evidently":
            if self.evidently is None:
                return 0
            if n > BIG_ROWS:
                return min(self.args.reps, self.args.evidently_big_reps)
        return int(self.args.reps)

    def step(self, side: str, n: int) -> None:
        """Run one rep of ``side`` at ``n`` rows in a fresh process; keep its result."""
        if side == "conveyor":
            res = self.child(self.conveyor, "conveyor", n)
        elif side == "numpy-scipy":
            res = self.peer(self.conveyor, "limits_drift_bench.py", "--method", "default", "--n", n)
        else:
            assert self.evidently is not None
            res = self.peer(self.evidently, "evidently_bench.py", "--variant", "default", "--n", n)
        res["correct"] = sorted(res["detected"]) == self.drifted
        self.runs.setdefault((n, side), []).append(res)
        extra = f" (with reading {res['total_seconds']:.2f} s)" if "total_seconds" in res else ""
        log(
            f"  {n:>9,} rows {side:<12}{res['seconds']:8.3f} s{extra}  "
            f"{res['peak_rss_mb']:6.0f} MB  flagged {','.join(res['detected']) or '-'}"
            + ("" if res["correct"] else "  (WRONG)")
        )

    def size(self, n: int) -> None:
        """Run every side's reps at ``n`` rows, alternating the order rep by rep."""
        count = {side: self.reps(side, n) for side in SIDES}
        for rep in range(max(count.values())):
            for side in SIDES if rep % 2 == 0 else SIDES[::-1]:
                if rep >= count[side] or (side == "evidently" and n in self.failed):
                    continue
                try:
                    self.step(side, n)
                except ChildFailed as exc:
                    if side != "evidently":
                        raise
                    log(f"evidently failed at {n:,} rows, left out at this size: {exc}")
                    self.failed[n] = str(exc).splitlines()[0]


# -------------------------------------------------------------------------------------------
# Figures, checks and targets.
# -------------------------------------------------------------------------------------------


def emit_size(fig: Figures, bench: Bench, n: int) -> dict[str, Any]:
    """Emit every side's figures at ``n`` rows, the per-column check and the ratios."""
    for side in SIDES:
        runs = bench.runs.get((n, side))
        if not runs:
            continue
        secs = [float(r["seconds"]) for r in runs]
        flagged = sorted(runs[0]["detected"])
        ctx: dict[str, Any] = {"rows": n, "samples": samples(secs), "n": len(runs)}
        if all("warm_seconds" in r for r in runs):
            ctx["warm_s"] = rounded(median([r["warm_seconds"] for r in runs]))
        if side == "evidently":
            for part in ("dataset_seconds", "run_seconds", "dict_seconds"):
                ctx[part.replace("_seconds", "_s")] = rounded(median([r[part] for r in runs]))
        if side == "conveyor":
            ctx["drift_only_s"] = rounded(median([r["drift_seconds"] for r in runs]))
        fig.emit(f"drift.{n}.s", side, median(secs), "s", **ctx)
        if side == "conveyor":
            totals = [float(r["total_seconds"]) for r in runs]
            fig.emit(
                f"drift.{n}.total_s",
                side,
                median(totals),
                "s",
                rows=n,
                samples=samples(totals),
                read_s=rounded(median([r["read_seconds"] for r in runs])),
                import_s=rounded(median([r["import_seconds"] for r in runs])),
            )
        peaks = [float(r["peak_rss_mb"]) for r in runs]
        fig.emit(
            f"drift.{n}.peak_mb",
            side,
            median(peaks),
            "MB",
            rows=n,
            samples=samples(peaks),
            rss_before_mb=rounded(median([r["rss_before_mb"] for r in runs])),
        )
        fig.emit(
            f"drift.{n}.flagged",
            side,
            len(flagged),
            "columns",
            rows=n,
            flagged=flagged,
            correct=all(r["correct"] for r in runs),
            false_positives=sorted(set(flagged) - set(bench.drifted)),
            missed=sorted(set(bench.drifted) - set(flagged)),
            same_every_rep=all(sorted(r["detected"]) == flagged for r in runs),
        )
    check = column_check(bench, n)
    print(json.dumps(check), flush=True)
    for peer in ("evidently", "numpy-scipy"):
        if fig.get(f"drift.{n}.s", peer) and fig.get(f"drift.{n}.s", "conveyor"):
            fig.ratio(f"drift.{n}.s", peer, higher_is_better=False, key=f"{n}.s.{peer}")
            memory_ratio(fig, n, peer)
    return check


def memory_ratio(fig: Figures, n: int, peer: str) -> None:
    """Record and print Conveyor's peak RSS over ``peer``'s at ``n`` rows."""
    bench = f"drift.{n}.peak_mb"
    mine, theirs = fig.get(bench, "conveyor"), fig.get(bench, peer)
    assert mine is not None
    assert theirs is not None
    rec: dict[str, Any] = {
        "bench": bench,
        "tool": "ratio",
        "value": round(float(mine["value"]) / float(theirs["value"]), 3),
        "unit": "x",
        "peer": peer,
        "definition": "conveyor / peer peak RSS MB (medians); below 1 means Conveyor uses less",
    }
    fig.ratios[f"{n}.peak_mb.{peer}"] = rec
    print(json.dumps(rec), flush=True)


def column_check(bench: Bench, n: int) -> dict[str, Any]:
    """Compare each side's per-column statistic with the limit's (first rep of each)."""
    out: dict[str, Any] = {"bench": f"drift.{n}.check", "tool": "check", "rows": n}
    limit = bench.runs.get((n, "numpy-scipy"))
    if not limit:
        return out
    ref = limit[0]["columns"]
    for side in ("conveyor", "evidently"):
        runs = bench.runs.get((n, side))
        if not runs:
            continue
        cols = runs[0]["columns"]
        worst, where, flips = 0.0, None, []
        for c, v in ref.items():
            a, b = cols.get(c, {}).get("value"), v["value"]
            if a is None:
                flips.append(c)
                continue
            rel = abs(a - b) / max(abs(b), 1e-300) if a != b else 0.0
            if rel > worst:
                worst, where = rel, c
            if bool(cols[c]["drift"]) != bool(v["drift"]):
                flips.append(c)
        methods = sorted({str(v.get("test") or v.get("method")) for v in cols.values()})
        out[side] = {
            "max_rel_diff_vs_limit": float(f"{worst:.3g}"),
            "worst_column": where,
            "verdicts_unlike_limit": flips,
            "methods": methods,
        }
    return out


def target(
    targets: dict[str, dict[str, Any]],
    key: str,
    value: float | int | None,
    unit: str,
    bound: str,
    ok: bool,
    *,
    indicative: bool = False,
    **ctx: Any,
) -> None:
    """Record and print one target; ``indicative``: measured at another size (met: None)."""
    rec: dict[str, Any] = {
        "bench": "target",
        "tool": key,
        "value": value if value is None or isinstance(value, int) else rounded(value),
        "unit": unit,
        "target": bound,
        "met": None if value is None or indicative else ok,
        **ctx,
    }
    if indicative and value is not None:
        rec["would_meet"] = ok
    targets[key] = rec
    print(json.dumps(rec), flush=True)


def compute_targets(fig: Figures, bench: Bench, sizes: Sequence[int]) -> dict[str, dict[str, Any]]:
    """The issue's targets from the medians, at 1,000,000 rows (or, indicative, the largest)."""
    targets: dict[str, dict[str, Any]] = {}
    at = TARGET_ROWS if TARGET_ROWS in sizes else max(sizes)
    ctx: dict[str, Any] = {"rows": TARGET_ROWS}
    if at != TARGET_ROWS:
        ctx["measured_at_rows"] = at

    def value(bench_name: str, tool: str) -> float | None:
        row = fig.get(f"drift.{at}.{bench_name}", tool)
        return None if row is None else float(row["value"])

    def per_rep(peer: str, key: str, fn: Callable[[float, float], float]) -> list[float] | None:
        mine, theirs = bench.runs.get((at, "conveyor"), []), bench.runs.get((at, peer), [])
        pairs = list(zip(mine, theirs, strict=False))  # rep i of each side ran side by side
        if len(pairs) < 2:
            return None
        values = sorted(fn(float(a[key]), float(b[key])) for a, b in pairs)
        return [rounded(values[0]), rounded(values[-1])]

    indicative = at != TARGET_ROWS
    conv_s, ev_s, lim_s = value("s", "conveyor"), value("s", "evidently"), value("s", "numpy-scipy")
    conv_m, ev_m = value("peak_mb", "conveyor"), value("peak_mb", "evidently")
    r = ev_s / conv_s if ev_s and conv_s else None
    target(
        targets,
        "speed_vs_evidently",
        r,
        "x",
        f">= {EVIDENTLY_SPEED_MIN:g}x",
        r is not None and r >= EVIDENTLY_SPEED_MIN,
        indicative=indicative,
        definition="Evidently seconds / Conveyor seconds (medians), DataFrames to report",
        per_rep_range=per_rep("evidently", "seconds", lambda a, b: b / a),
        **ctx,
    )
    r = conv_m / ev_m if conv_m and ev_m else None
    target(
        targets,
        "memory_vs_evidently",
        r,
        "x",
        f"<= {EVIDENTLY_MEMORY_MAX:g}x",
        r is not None and r <= EVIDENTLY_MEMORY_MAX,
        indicative=indicative,
        definition="Conveyor peak RSS / Evidently peak RSS (medians), each a fresh process",
        per_rep_range=per_rep("evidently", "peak_rss_mb", lambda a, b: a / b),
        **ctx,
    )
    r = conv_s / lim_s if conv_s and lim_s else None
    target(
        targets,
        "time_vs_limit",
        r,
        "x",
        f"<= {LIMIT_TIME_MAX:g}x",
        r is not None and r <= LIMIT_TIME_MAX,
        indicative=indicative,
        definition="Conveyor seconds / NumPy-SciPy limit seconds, method 'default' (medians)",
        per_rep_range=per_rep("numpy-scipy", "seconds", lambda a, b: a / b),
        **ctx,
    )
    measured = {n: bench.runs[(n, "conveyor")] for n in sizes if (n, "conveyor") in bench.runs}
    right = {n: all(r["correct"] for r in runs) for n, runs in measured.items()}
    wrong = [n for n, ok in right.items() if not ok]
    complete = all(n in right for n in FULL_SIZES)
    target(
        targets,
        "exact_columns",
        sum(right.values()),
        "sizes",
        f"exactly {', '.join(bench.drifted)} at {' and '.join(f'{n:,}' for n in FULL_SIZES)} rows",
        not wrong,
        indicative=not complete and not wrong,  # a wrong answer at any size is a miss
        of=len(right),
        flagged={str(n): sorted(runs[0]["detected"]) for n, runs in measured.items()},
        wrong_at=wrong,
        definition="sizes at which Conveyor flags exactly the 3 drifted columns, every rep",
    )
    summary = {
        "bench": "targets",
        "met": sum(1 for t in targets.values() if t["met"]),
        "not_met": sorted(k for k, t in targets.items() if t["met"] is False),
        "not_measured": sorted(k for k, t in targets.items() if t["met"] is None),
        "targets": {
            k: {
                "value": t["value"],
                "unit": t["unit"],
                "target": t["target"],
                "met": t["met"],
                **({"would_meet": t["would_meet"]} if "would_meet" in t else {}),
            }
            for k, t in targets.items()
        },
    }
    if indicative:
        summary["note"] = f"ratios measured at {at:,} rows, not {TARGET_ROWS:,}: indicative only"
    print(json.dumps(summary), flush=True)
    return targets


# -------------------------------------------------------------------------------------------
# docs/benchmarks.md
# -------------------------------------------------------------------------------------------


def fill(text: str) -> str:
    """Wrap ``text`` at 100 columns, never inside a word or at a hyphen."""
    return textwrap.fill(text, 100, break_on_hyphens=False, break_long_words=False)


def secs(value: float) -> str:
    """Return seconds with 4 significant digits (whole above 1000)."""
    return f"{rounded(value):,} s"


def render_section(
    fig: Figures, bench: Bench, targets: dict[str, dict[str, Any]], meta: dict[str, Any]
) -> str:
    """Return the Monitoring section (between its markers) as markdown."""
    versions = meta["versions"]
    cv_v, ev_v = versions["conveyor"], versions.get("evidently") or {}
    labels = dict(LABELS)
    if ev_v.get("evidently"):
        labels["evidently"] = f"Evidently {ev_v['evidently']} `DataDriftPreset()`"
    drifted = ", ".join(bench.drifted)

    rows = []
    for n in meta["sizes"]:
        for side in SIDES:
            s = fig.get(f"drift.{n}.s", side)
            if s is None:
                if side == "evidently" and n in bench.failed:
                    rows.append(
                        f"| {n:,} | {labels[side]} | failed: {bench.failed[n]} " + "| — " * 7 + "|"
                    )
                continue
            spread = (
                f" ({min(s['samples']):g}..{max(s['samples']):g})" if len(s["samples"]) > 1 else ""
            )
            warm = f"{s['warm_s']:g} s" if "warm_s" in s else "—"
            total = fig.get(f"drift.{n}.total_s", side)
            with_read = secs(float(total["value"])) if total else "—"
            peak = fig.get(f"drift.{n}.peak_mb", side) or {}
            flagged = fig.get(f"drift.{n}.flagged", side) or {}
            cols = ", ".join(flagged.get("flagged", [])) or "none"
            if flagged.get("correct"):
                ok = "yes"
            else:
                extra = [f"+{c}" for c in flagged.get("false_positives", [])]
                extra += [f"-{c}" for c in flagged.get("missed", [])]
                ok = f"**no** ({', '.join(extra) or 'not the same every rep'})"
            rows.append(
                f"| {n:,} | {labels[side]} | {secs(float(s['value']))}{spread} | {warm} | "
                f"{with_read} | {peak.get('value', 0):,} MB | {peak.get('rss_before_mb', 0):,} MB "
                f"| {cols} | {ok} | {s['n']} |"
            )

    names = {
        "speed_vs_evidently": f"time at {TARGET_ROWS:,} rows: Evidently / Conveyor",
        "memory_vs_evidently": f"peak memory at {TARGET_ROWS:,} rows: Conveyor / Evidently",
        "time_vs_limit": f"time at {TARGET_ROWS:,} rows: Conveyor / NumPy-SciPy limit",
        "exact_columns": f"columns flagged by Conveyor: exactly {drifted}",
    }

    def measured_cell(rec: dict[str, Any]) -> str:
        if rec["value"] is None:
            return "not measured"
        if rec["tool"] == "exact_columns":
            return f"**{rec['value']} of {rec['of']} sizes**" + (
                f" (wrong at {', '.join(f'{n:,}' for n in rec['wrong_at'])} rows)"
                if rec["wrong_at"]
                else ""
            )
        text = f"**{rec['value']:.3g}x**"
        if rec.get("per_rep_range"):
            low, high = rec["per_rep_range"]
            text += f" ({low:.3g} to {high:.3g})"
        if rec.get("measured_at_rows"):
            text += f" at {rec['measured_at_rows']:,} rows"
        return text

    def met(rec: dict[str, Any]) -> str:
        if rec["met"] is None:
            return (
                "—"
                if "would_meet" not in rec
                else f"— (would be {'yes' if rec['would_meet'] else 'no'})"
            )
        return "yes" if rec["met"] else "**no**"

    bounds = {
        "speed_vs_evidently": f"≥ {EVIDENTLY_SPEED_MIN:g}x",
        "memory_vs_evidently": f"≤ {EVIDENTLY_MEMORY_MAX:g}x",
        "time_vs_limit": f"≤ {LIMIT_TIME_MAX:g}x",
        "exact_columns": " and ".join(f"{n:,}" for n in FULL_SIZES) + " rows",
    }
    target_rows = [
        f"| {names[k]} | {measured_cell(rec)} | {bounds[k]} | {met(rec)} |"
        for k, rec in targets.items()
    ]

    checks = []
    for n in meta["sizes"]:
        c = meta["checks"].get(n, {})
        for side, label in (("conveyor", "Conveyor's"), ("evidently", "Evidently's")):
            if side in c:
                d = c[side]
                flips = (
                    f", verdicts unlike the limit's: {', '.join(d['verdicts_unlike_limit'])}"
                    if d["verdicts_unlike_limit"]
                    else ""
                )
                checks.append(f"{label} at {n:,} rows {d['max_rel_diff_vs_limit']:.2g}{flips}")
    ev_parts = []
    for n in meta["sizes"]:
        s = fig.get(f"drift.{n}.s", "evidently")
        if s:
            ev_parts.append(
                f"at {n:,} rows, `Dataset.from_pandas` x2 {s['dataset_s']:g} s, `run` "
                f"{s['run_s']:g} s, `dict()` {s['dict_s']:g} s"
            )
    reads = []
    for n in meta["sizes"]:
        t = fig.get(f"drift.{n}.total_s", "conveyor")
        if t:
            reads.append(f"{t['read_s']:g} s at {n:,} rows")
    big = meta["evidently_big_reps"]
    ev_reps = (
        f" (Evidently {big} rep{'s' if big > 1 else ''} above {BIG_ROWS:,} rows)"
        if any(n > BIG_ROWS for n in meta["sizes"]) and big < meta["reps"]
        else ""
    )
    cv_ver = cv_v.get("conveyor", "")
    intro = (
        "The workload of the monitoring issue (9): a data-drift report of a current table "
        "against a reference table, each of "
        + " and of ".join(f"{n:,}" for n in meta["sizes"])
        + " rows x 25 columns (20 float64, 5 strings of 3 to 50 categories), generated by the "
        f"peers' `limits_data.py` (seed {meta['seed']}) with drift injected in the current "
        "table in 3 columns: num_00 (mean +0.5 sd), num_07 (scale x1.5) and cat_2 (half the "
        "category mass moved to the reversed order); "
        "every tool reads the same Parquet files. Conveyor "
        f"{cv_ver}: `cv.monitoring.drift(reference, current)` with its defaults (above 5,000 "
        "rows: Wasserstein distance / reference std ≥ 0.1 for numeric columns, Jensen-Shannon "
        "distance ≥ 0.1 for categorical ones), then `report.table()`. Evidently "
        f"{ev_v.get('evidently', '—')} (pandas {ev_v.get('pandas', '—')}; installed by the "
        "script into `.bench/venvs/evidently`): `Report([DataDriftPreset()])` as the peers' "
        "`evidently_bench.py` runs it (its auto-selected methods, above 1,000 rows the same two "
        "distances and thresholds): `Dataset.from_pandas` of both tables, `run`, "
        "`snapshot.dict()`. The limit: the same two statistics by direct NumPy/SciPy calls "
        "(`limits_drift_bench.py`, method `default`), run with Conveyor's interpreter (NumPy "
        f"{cv_v.get('numpy', '—')}, SciPy {cv_v.get('scipy', '—')}, pandas "
        f"{cv_v.get('pandas', '—')}). Timed: from the two DataFrames in memory to the per-column "
        "results, the first call in a fresh process per rep, after the imports (each side "
        "imports its modules and SciPy's before the timer); Conveyor's \"with reading\" adds "
        "reading both files with `cv.monitoring.read_table` (Parquet text columns read as "
        "categoricals, as `conveyor monitor drift` reads them; the peers read with pandas "
        'defaults); "warm" is a second call in the same '
        "process. Peak RSS: the process's `ru_maxrss` after the report, so with the two "
        'DataFrames ("after reading": the RSS before the timer). Measured '
        f"{meta['date']} on {meta['machine']}: absolute figures are noisy; the ratios, taken "
        f"side by side in one run, are what count. Medians of {meta['reps']} reps{ev_reps}, "
        "each a fresh process, the sides alternating rep by rep; in brackets the lowest and "
        "highest of the reps."
    )
    notes = (
        "Notes: per-column statistics, largest relative difference from the limit's: "
        + ("; ".join(checks) or "—")
        + ". Evidently's time, split: "
        + ("; ".join(ev_parts) or "—")
        + ". Conveyor's reading of both files: "
        + (", ".join(reads) or "—")
        + ". Each tool reads the files with its own pandas (Evidently's venv pins pandas "
        f"{ev_v.get('pandas', '—')}, whose strings are Python objects; Conveyor's has "
        f"{cv_v.get('pandas', '—')}), so the DataFrames differ in memory. Load average "
        f"{meta['load_start']} at the start, {meta['load_end']} at the end (at the start of "
        f"each size: {meta['loads']})."
    )
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        TITLE,
        "",
        fill(intro),
        "",
        "| target (from issue 9) | measured (per-rep range) | target | met |",
        "| --- | --- | --- | --- |",
        *target_rows,
        "",
        "| rows | system | report (min..max) | warm | with reading | peak RSS | after reading "
        "| columns flagged | exactly the 3 | reps |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        fill(notes),
        "",
        fill(
            "Reproduce from the repository root (installs Evidently into "
            "`.bench/venvs/evidently` on first use; runs the peers' scripts from "
            f"`shared/bench/peers`, or `--peers-dir`; this run took about {meta['minutes']} "
            f"minute{'s' if meta['minutes'] > 1 else ''}):"
        ),
        "",
        "```",
        meta["command"],
        "```",
        f"<!-- bench:{SECTION}:end -->",
    ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line; ``--quick`` shrinks the sizes and the reps."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        help="rows of each table (default 100000 1000000; --quick: 100000)",
    )
    ap.add_argument("--reps", type=int, help="reps per side and size (default 3; --quick: 1)")
    ap.add_argument(
        "--evidently-big-reps",
        type=int,
        default=1,
        help=f"Evidently's reps above {BIG_ROWS:,} rows (default 1; at most --reps)",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run; docs are left unchanged")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--no-evidently", action="store_true", help="leave Evidently out")
    ap.add_argument("--docs-file", type=Path, default=DOCS, help="the docs file to write")
    ap.add_argument("--peers-dir", type=Path, default=PEERS_DIR, help="the peers' scripts")
    ap.add_argument("--evidently-venv", type=Path, default=EVIDENTLY_VENV, help="Evidently's venv")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 3)
    args.sizes = sorted(set(args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)))
    args.peers_dir = args.peers_dir.resolve()  # the children run in the scratch folder
    args.evidently_venv = args.evidently_venv.resolve()
    if args.reps < 1 or args.evidently_big_reps < 1 or min(args.sizes) < 100:
        ap.error("--reps and --evidently-big-reps must be at least 1, --sizes at least 100")
    return args


def public_argv(argv: Sequence[str]) -> list[str]:
    """Return the arguments to show in the docs' command: ``--docs-file`` left out."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--docs-file":
            skip = True
        elif not arg.startswith("--docs-file="):
            out.append(arg)
    return out


def main(argv: Sequence[str]) -> int:
    """Run the drift report on Conveyor, the limit and Evidently; report figures and targets."""
    if argv[:1] == ["--child"]:
        run_child(argv[1], argv[2:])
        return 0
    started = time.perf_counter()
    args = parse_args(argv)
    absent = [f for f in PEER_FILES if not (args.peers_dir / f).is_file()]
    if absent:
        raise SystemExit(f"{', '.join(absent)} not found in {args.peers_dir} (--peers-dir)")
    lim = import_peers_data(args.peers_dir)
    if sorted(lim.DRIFTED) != sorted(DRIFTED):
        log(f"warning: the generator drifts {lim.DRIFTED}, not {DRIFTED} (the docs' wording)")
    specs = list(lim.PIP_SPECS["evidently"])
    if EVIDENTLY_PIN not in specs:
        log(f"warning: the peers pin {' '.join(specs)}, not {EVIDENTLY_PIN}")
    conveyor = Path(sys.executable)
    package = REPO / "src" / "conveyor"
    if package.is_dir():  # an editable install: compile once, as a wheel install would
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    evidently = None
    if not args.no_evidently:
        try:
            evidently = ensure_peer_venv(args.evidently_venv, specs, "Evidently")
        except (subprocess.CalledProcessError, OSError) as exc:
            log(f"Evidently could not be installed, left out: {exc}")

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    scratch = WORK_ROOT / f"run-{os.getpid()}"
    scratch.mkdir(parents=True)
    env = child_env()
    env.update(
        ANCHORS_FS_ROOT=str(scratch / "fs"),
        ANCHORS_DATA_DIR=str(DATA_DIR),
        EVIDENTLY_VENV=str(args.evidently_venv),
        LIMITS_VENV=sys.prefix,
        MONITORING_BENCH_PEERS=str(args.peers_dir),
        PYTHONDONTWRITEBYTECODE="1",  # nothing written into the peers' folder
    )
    fig = Figures()
    loads: list[float] = []
    checks: dict[int, dict[str, Any]] = {}
    load_start = load()
    try:
        bench = Bench(args, scratch, conveyor, evidently, env, lim.DRIFTED)
        versions: dict[str, dict[str, Any]] = {
            "conveyor": bench.child(
                conveyor, "versions", "conveyor-mlops", "numpy", "scipy", "pandas", "pyarrow"
            )
        }
        versions["conveyor"]["conveyor"] = versions["conveyor"].pop("conveyor-mlops")
        if evidently is not None:
            versions["evidently"] = bench.child(
                evidently, "versions", "evidently", "pandas", "numpy", "scipy", "pyarrow"
            )
        data = {}
        for n in args.sizes:
            data[n] = bench.child(conveyor, "data", n)
            log(
                f"data: {n:,} rows x {len(data[n]['ref']['columns'])} columns in "
                f"{data[n]['folder']} ({data[n]['seconds']:.1f} s)"
            )
        print(
            json.dumps(
                {
                    "bench": "info",
                    "versions": versions,
                    "data": {str(n): d for n, d in data.items()},
                    "drifted": bench.drifted,
                    "peer_files": {f: file_digest(args.peers_dir / f) for f in PEER_FILES},
                    "cpus": os.cpu_count(),
                    "loadavg_1m": load_start,
                    "sizes": args.sizes,
                    "reps": args.reps,
                    "evidently_big_reps": args.evidently_big_reps if evidently else None,
                }
            ),
            flush=True,
        )
        for n in args.sizes:
            loads.append(load())
            reps = {side: bench.reps(side, n) for side in SIDES}
            log(f"{n:,} rows: reps {reps} (load average {loads[-1]})")
            bench.size(n)
            checks[n] = emit_size(fig, bench, n)
        targets = compute_targets(fig, bench, args.sizes)
    finally:
        if args.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    for key, rec in targets.items():
        state = {True: "met", False: "NOT met", None: "not measured"}[rec["met"]]
        if rec["met"] is None and "would_meet" in rec:
            state += f" at {TARGET_ROWS:,} rows (would {'' if rec['would_meet'] else 'not '}be met)"
        log(f"{key}: {rec['value']} {rec['unit']} (target {rec['target']}: {state})")
    load_end = load()
    minutes = (time.perf_counter() - started) / 60
    log(f"done in {minutes:.1f} min")
    if args.quick or args.no_docs:
        log("docs left unchanged (--quick or --no-docs)")
        return 0
    complete = TARGET_ROWS in args.sizes and fig.get(f"drift.{TARGET_ROWS}.s", "evidently")
    if args.docs_file.resolve() == DOCS.resolve() and not complete:
        log(
            f"docs left unchanged: the section takes a run at {TARGET_ROWS:,} rows with "
            "Evidently (--docs-file writes this run's section to another file)"
        )
        return 0
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, shared with other work, noisy "
        f"({platform.machine()}, Linux, Python {versions['conveyor']['python']})",
        "sizes": args.sizes,
        "reps": args.reps,
        "evidently_big_reps": args.evidently_big_reps,
        "seed": lim.SEED,
        "versions": versions,
        "checks": checks,
        "minutes": max(1, round(minutes)),
        "load_start": f"{load_start:.1f}",
        "load_end": f"{load_end:.1f}",
        "loads": ", ".join(f"{v:.1f}" for v in loads),
        "command": " ".join([".venv/bin/python", "bench/monitoring.py", *public_argv(argv)]),
    }
    update_docs(args.docs_file, SECTION, render_section(fig, bench, targets, meta))
    log(f"updated {args.docs_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
