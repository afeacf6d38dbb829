"""Tracking benchmark: Conveyor's experiment tracking side by side with MLflow's (SQLite both).

Run from the repository root::

    .venv/bin/python bench/tracking.py                       # full run, updates docs/benchmarks.md
    .venv/bin/python bench/tracking.py --quick               # smoke run, docs untouched
    .venv/bin/python bench/tracking.py --mlflow-runs 2000    # fewer MLflow runs, rate extrapolated

The four workloads of the tracking issue, each on a fresh SQLite store in a fresh temporary
folder, each side in its own fresh subprocess (MLflow through the interpreter of
``.bench/venvs/mlflow``, installed on first use): 10,000 ``log_metric`` calls in one run
(Conveyor's time includes the final ``flush``); creating 10,000 runs with 5 params and 5
metrics each; a filtered, ordered top-100 search over those runs (and over 100,000 Conveyor
runs); reading back a 10,000-step metric history. Each figure is printed as one JSON line;
each pair ends with a ratio line whose value is how many times faster Conveyor is.

This file is also the child script (``python tracking.py --child OP ARGS...``). Only the
standard library (and ``bench/_common.py``) is imported at the top, so the MLflow venv can
run it too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    DOCS,
    MLFLOW_VENV,
    REPO,
    Figures,
    Runner,
    ensure_mlflow_venv,
    fmt,
    log,
    median,
    samples,
    section_footer,
    sqlite_uri,
    update_docs,
)

SECTION = "tracking"
CHILD_TIMEOUT_S = 3600
EXPERIMENT = "e"
METRIC = "loss"
FILTER = "metrics.m0 > 0.5 and params.p1 = '3'"
LIMIT = 100
TARGETS = {"log_metric": 100.0, "create_runs": 50.0, "search": 30.0, "history": 10.0}
SEARCH_100K_TARGET_MS = 100.0

# -------------------------------------------------------------------------------------------
# The data both sides store: deterministic, so the search must return the same rows.
# -------------------------------------------------------------------------------------------


def run_params(i: int) -> dict[str, int]:
    """Return the params of run ``i``: p0..p4."""
    return {f"p{j}": (i * 7 + j) % 13 for j in range(5)}


def run_metrics(i: int) -> dict[str, float]:
    """Return the metrics of run ``i``: m0..m4 in [0, 1)."""
    return {f"m{j}": ((i * 31 + j) % 1000) / 1000 for j in range(5)}


def step_value(i: int) -> float:
    """Return the value logged at step ``i`` of the long metric."""
    return ((i * 37) % 1000) / 1000


def expected_top(n_runs: int) -> list[float]:
    """Return the m1 values the search must return over ``n_runs`` runs, best first."""
    hits = [
        run_metrics(i)["m1"]
        for i in range(n_runs)
        if run_metrics(i)["m0"] > 0.5 and str(run_params(i)["p1"]) == "3"
    ]
    return sorted(hits, reverse=True)[:LIMIT]


# -------------------------------------------------------------------------------------------
# Child side: one measurement per process, result printed as one JSON object.
# -------------------------------------------------------------------------------------------


def _conveyor(work: str) -> Any:
    import conveyor as cv

    cv.init(work, project="bench")
    return cv


def _mlflow(work: str) -> Any:
    import mlflow

    mlflow.set_tracking_uri(sqlite_uri(Path(work) / "mlflow.db"))
    return mlflow


def _timed_reps(fn: Callable[[], Any], reps: int) -> tuple[list[float], Any]:
    """Call ``fn`` once to warm up, then ``reps`` times; return the milliseconds and a result."""
    result = fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times, result


def child_conveyor_log_metric(work: str, n: str) -> dict[str, Any]:
    """Log ``n`` values of one metric with ``cv.log_metric``, then flush; time it all."""
    cv = _conveyor(work)
    with cv.start_run(experiment="warm-up", name="warm-up"):  # store created and migrated
        cv.log_metric("x", 1.0)
    cv.flush()
    count = int(n)
    with cv.start_run(experiment=EXPERIMENT, name="metrics") as run:
        t0 = time.perf_counter()
        for i in range(count):
            cv.log_metric(METRIC, step_value(i), step=i)
        t1 = time.perf_counter()
        cv.flush()
        t2 = time.perf_counter()
    stored = len(cv.get_metric_history(run.id, METRIC))
    return {"s": t2 - t0, "enqueue_s": t1 - t0, "run_id": run.id, "stored": stored}


def child_mlflow_log_metric(work: str, n: str) -> dict[str, Any]:
    """Log ``n`` values of one metric with ``mlflow.log_metric`` (synchronous); time the calls."""
    mlflow = _mlflow(work)
    mlflow.set_experiment("warm-up")  # store created and migrated
    with mlflow.start_run(run_name="warm-up"):
        mlflow.log_metric("x", 1.0)
    mlflow.set_experiment(EXPERIMENT)
    count = int(n)
    with mlflow.start_run(run_name="metrics") as run:
        t0 = time.perf_counter()
        for i in range(count):
            mlflow.log_metric(METRIC, step_value(i), step=i)
        seconds = time.perf_counter() - t0
    stored = len(mlflow.MlflowClient().get_metric_history(run.info.run_id, METRIC))
    return {"s": seconds, "run_id": run.info.run_id, "stored": stored}


def child_conveyor_create_runs(work: str, n: str) -> dict[str, Any]:
    """Create ``n`` runs with 5 params and 5 metrics each, then flush; time it all."""
    cv = _conveyor(work)
    with cv.start_run(experiment="warm-up", name="warm-up"):
        cv.log_metric("x", 1.0)
    cv.flush()
    t0 = time.perf_counter()
    for i in range(int(n)):
        with cv.start_run(experiment=EXPERIMENT, name=f"r{i}"):
            cv.log_params(run_params(i))
            cv.log_metrics(run_metrics(i))
    cv.flush()
    return {"s": time.perf_counter() - t0, "db_mb": _db_mb(Path(work))}


def child_mlflow_create_runs(work: str, n: str) -> dict[str, Any]:
    """Create ``n`` runs with 5 params and 5 metrics each, the fluent way; time it."""
    mlflow = _mlflow(work)
    mlflow.set_experiment("warm-up")
    with mlflow.start_run(run_name="warm-up"):
        mlflow.log_metric("x", 1.0)
    mlflow.set_experiment(EXPERIMENT)
    t0 = time.perf_counter()
    for i in range(int(n)):
        with mlflow.start_run(run_name=f"r{i}"):
            mlflow.log_params(run_params(i))
            mlflow.log_metrics(run_metrics(i))
    return {"s": time.perf_counter() - t0, "db_mb": _db_mb(Path(work))}


def _db_mb(work: Path) -> float:
    """Return the size in MB of the SQLite files under ``work``."""
    files = [*work.rglob("*.db"), *work.rglob("*.db-wal")]
    return sum(f.stat().st_size for f in files) / 1e6


def child_conveyor_search(work: str, reps: str) -> dict[str, Any]:
    """Time the filtered, ordered top-100 search (a DataFrame) after one warm-up."""
    cv = _conveyor(work)

    def search() -> Any:
        return cv.search_runs(
            experiment=EXPERIMENT, filter=FILTER, order_by=["metrics.m1 desc"], limit=LIMIT
        )

    times, frame = _timed_reps(search, int(reps))
    return {"ms": times, "rows": len(frame), "m1": frame["metrics.m1"].tolist()}


def child_mlflow_search(work: str, reps: str) -> dict[str, Any]:
    """Time the same search with ``mlflow.search_runs`` (a DataFrame) after one warm-up."""
    mlflow = _mlflow(work)
    experiment_id = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id

    def search() -> Any:
        return mlflow.search_runs(
            experiment_ids=[experiment_id],
            filter_string=FILTER,
            order_by=["metrics.m1 DESC"],
            max_results=LIMIT,
        )

    times, frame = _timed_reps(search, int(reps))
    return {"ms": times, "rows": len(frame), "m1": frame["metrics.m1"].tolist()}


def child_conveyor_history(work: str, run_id: str, reps: str) -> dict[str, Any]:
    """Time ``cv.get_metric_history`` of the long metric after one warm-up."""
    cv = _conveyor(work)
    times, points = _timed_reps(lambda: cv.get_metric_history(run_id, METRIC), int(reps))
    return {"ms": times, "points": len(points)}


def child_mlflow_history(work: str, run_id: str, reps: str) -> dict[str, Any]:
    """Time ``MlflowClient().get_metric_history`` of the long metric after one warm-up."""
    client = _mlflow(work).MlflowClient()
    times, points = _timed_reps(lambda: client.get_metric_history(run_id, METRIC), int(reps))
    return {"ms": times, "points": len(points)}


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "conveyor.log_metric": child_conveyor_log_metric,
    "conveyor.create_runs": child_conveyor_create_runs,
    "conveyor.search": child_conveyor_search,
    "conveyor.history": child_conveyor_history,
    "mlflow.log_metric": child_mlflow_log_metric,
    "mlflow.create_runs": child_mlflow_create_runs,
    "mlflow.search": child_mlflow_search,
    "mlflow.history": child_mlflow_history,
}


def run_child(op: str, argv: Sequence[str]) -> None:
    """Run the measurement ``op`` in this process and print its result as JSON."""
    print(json.dumps(CHILDREN[op](*argv)), flush=True)


# -------------------------------------------------------------------------------------------
# Parent side: the workloads.
# -------------------------------------------------------------------------------------------


def load() -> float:
    """Return the 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def bench_log_metric(run: Runner, fig: Figures, args: argparse.Namespace) -> dict[str, Any]:
    """Workload 1: ``n`` single ``log_metric`` calls in one run; return the stores used."""
    n = args.metrics
    log(f"1. {n:,} log_metric calls: Conveyor x{args.reps}")
    stores: dict[str, Any] = {}
    rates, enqueue = [], []
    load_before = load()
    for _ in range(args.reps):
        stores["conveyor"] = run.new_dir("log_metric-conveyor")
        res = run.child("conveyor.log_metric", stores["conveyor"], n, cwd=stores["conveyor"])
        _check(res["stored"] == n, f"Conveyor stored {res['stored']} of {n} metric values")
        rates.append(n / res["s"])
        enqueue.append(n / res["enqueue_s"])
        stores["conveyor.run_id"] = res["run_id"]
    fig.emit(
        "log_metric",
        "conveyor",
        median(rates),
        "metrics/s",
        calls=n,
        reps=args.reps,
        all=samples(rates),
        enqueue_only_per_s=round(median(enqueue)),
        load=load_before,
        note="cv.log_metric one call at a time in one run, time includes the final cv.flush()",
    )
    log(f"1. {n:,} log_metric calls: MLflow (synchronous)")
    load_before = load()
    stores["mlflow"] = run.new_dir("log_metric-mlflow")
    res = run.child("mlflow.log_metric", stores["mlflow"], n, cwd=stores["mlflow"])
    _check(res["stored"] == n, f"MLflow stored {res['stored']} of {n} metric values")
    stores["mlflow.run_id"] = res["run_id"]
    fig.emit(
        "log_metric",
        "mlflow",
        n / res["s"],
        "metrics/s",
        calls=n,
        reps=1,
        load=load_before,
        note="mlflow.log_metric one call at a time, synchronous (default)",
    )
    fig.ratio("log_metric", "mlflow", higher_is_better=True)
    return stores


def bench_history(
    run: Runner, fig: Figures, args: argparse.Namespace, stores: dict[str, Any]
) -> None:
    """Workload 4: read back the metric logged by workload 1 (``n`` steps)."""
    n = args.metrics
    log(f"4. {n:,}-step metric history")
    for tool in ("conveyor", "mlflow"):
        load_before = load()
        work = stores[tool]
        res = run.child(f"{tool}.history", work, stores[f"{tool}.run_id"], args.reps, cwd=work)
        _check(res["points"] == n, f"{tool} returned {res['points']} of {n} points")
        fig.emit(
            "history",
            tool,
            median(res["ms"]),
            "ms",
            steps=n,
            reps=args.reps,
            all=samples(res["ms"]),
            load=load_before,
        )
    fig.ratio("history", "mlflow", higher_is_better=False)


def bench_runs_and_search(run: Runner, fig: Figures, args: argparse.Namespace) -> dict[str, Any]:
    """Workloads 2 and 3: create runs on both sides, then search them; return sanity facts."""
    n, n_mlflow = args.runs, args.mlflow_runs
    log(f"2. create {n:,} runs: Conveyor x{args.reps}")
    rates, work, db_mb = [], Path(), 0.0
    load_before = load()
    for _ in range(args.reps):
        work = run.new_dir("runs-conveyor")
        res = run.child("conveyor.create_runs", work, n, cwd=work)
        rates.append(n / res["s"])
        db_mb = res["db_mb"]
    fig.emit(
        "create_runs",
        "conveyor",
        median(rates),
        "runs/s",
        runs=n,
        reps=args.reps,
        all=samples(rates),
        db_mb=round(db_mb, 1),
        load=load_before,
        note="with cv.start_run(): cv.log_params(5); cv.log_metrics(5); one cv.flush() at the end",
    )
    stores = {"conveyor": work}
    log(f"2. create {n_mlflow:,} runs: MLflow (takes minutes)")
    load_before = load()
    stores["mlflow"] = run.new_dir("runs-mlflow")
    res = run.child("mlflow.create_runs", stores["mlflow"], n_mlflow, cwd=stores["mlflow"])
    fig.emit(
        "create_runs",
        "mlflow",
        n_mlflow / res["s"],
        "runs/s",
        runs=n_mlflow,
        seconds=round(res["s"], 1),
        extrapolated=n_mlflow != n,
        reps=1,
        db_mb=round(res["db_mb"], 1),
        load=load_before,
        note="with mlflow.start_run(): mlflow.log_params(5); mlflow.log_metrics(5)",
    )
    fig.ratio("create_runs", "mlflow", higher_is_better=True)

    log(f"3. filtered top-{LIMIT} search over the runs of workload 2")
    sanity: dict[str, Any] = {}
    for tool, count in (("conveyor", n), ("mlflow", n_mlflow)):
        load_before = load()
        res = run.child(f"{tool}.search", stores[tool], args.reps, cwd=stores[tool])
        matches = [round(v, 9) for v in res["m1"]] == [round(v, 9) for v in expected_top(count)]
        _check(matches, f"{tool}'s search returned other rows than expected ({res['rows']} rows)")
        sanity[tool] = res["rows"]
        fig.emit(
            "search",
            tool,
            median(res["ms"]),
            "ms",
            runs=count,
            rows=res["rows"],
            reps=args.reps,
            all=samples(res["ms"]),
            load=load_before,
            filter=FILTER,
            order_by="metrics.m1 desc",
        )
    fig.ratio("search", "mlflow", higher_is_better=False)

    big = args.big_runs
    log(f"3. the same search over {big:,} Conveyor runs (creating them first)")
    work = run.new_dir("runs-conveyor-big")
    load_before = load()
    res = run.child("conveyor.create_runs", work, big, cwd=work)
    fig.emit(
        "create_runs_big",
        "conveyor",
        big / res["s"],
        "runs/s",
        runs=big,
        db_mb=round(res["db_mb"], 1),
        load=load_before,
    )
    load_before = load()
    res = run.child("conveyor.search", work, args.reps, cwd=work)
    matches = [round(v, 9) for v in res["m1"]] == [round(v, 9) for v in expected_top(big)]
    _check(matches, f"the search over {big} runs returned other rows than expected")
    sanity["conveyor_big"] = res["rows"]
    fig.emit(
        "search_big",
        "conveyor",
        median(res["ms"]),
        "ms",
        runs=big,
        rows=res["rows"],
        reps=args.reps,
        all=samples(res["ms"]),
        load=load_before,
        target_ms=SEARCH_100K_TARGET_MS,
    )
    sanity["same_rows"] = sanity["conveyor"] == sanity["mlflow"]
    print(json.dumps({"bench": "search.sanity", **sanity}), flush=True)
    return sanity


def _check(ok: bool, message: str) -> None:
    """Stop the benchmark when a side did not store or return what it should."""
    if not ok:
        raise SystemExit(f"sanity check failed: {message}")


# -------------------------------------------------------------------------------------------
# docs/benchmarks.md
# -------------------------------------------------------------------------------------------


def render_section(fig: Figures, meta: dict[str, Any], sanity: dict[str, Any]) -> str:
    """Return the Tracking section (between its markers) as markdown."""
    get = fig.get

    def ratio(key: str) -> str:
        r = fig.ratios.get(key)
        return "—" if r is None else f"**{r['value']:,.1f}x**"

    def met(key: str) -> str:
        r = fig.ratios.get(key)
        return "—" if r is None else ("yes" if r["value"] >= TARGETS[key] else "**no**")

    n, runs, big = meta["metrics"], meta["runs"], meta["big_runs"]
    mlflow_runs = (get("create_runs", "mlflow") or {}).get("runs", runs)
    big_row = get("search_big", "conveyor")
    big_met = "—" if big_row is None else ("yes" if big_row["value"] < 100 else "**no**")
    enqueue = (get("log_metric", "conveyor") or {}).get("enqueue_only_per_s", "?")
    reduced = (
        f" (MLflow created {mlflow_runs:,} runs and its rate is extrapolated; its search ran "
        f"over those {mlflow_runs:,})"
        if mlflow_runs != runs
        else ""
    )
    intro = (
        f"Experiment tracking against MLflow {meta['mlflow_version']}, SQLite backend for "
        f"both, each side on a fresh store in a fresh temporary folder and in its own fresh "
        f"process. Measured {meta['date']} on {meta['machine']}: absolute figures are noisy, "
        "the ratios measured in the same run are what count. Ratio: how many times faster "
        "Conveyor is (above 1: faster). Targets are those of the tracking issue."
    )
    notes = (
        f"Notes: Conveyor's write workloads are the median of {meta['reps']} fresh processes; "
        "MLflow's ran once (minutes each). Searches and histories are the median of "
        f"{meta['reps']} calls after one warm-up, in a fresh process. Conveyor logs "
        "asynchronously: its `log_metric` time runs from the first call to the end of "
        f"`cv.flush()` (the calls alone: {enqueue:,} metrics/s); MLflow's runs synchronously "
        "(its default). Runs: params p0..p4 = (i·7+j) mod 13, metrics m0..m4 = "
        "((i·31+j) mod 1000)/1000, the same on both sides; Conveyor flushes once after the "
        f"last run{reduced}. Search: `{FILTER}` ordered by `metrics.m1` descending, limit "
        f"{LIMIT}, as a pandas DataFrame on both sides (`cv.search_runs`, "
        f"`mlflow.search_runs`). Sanity: Conveyor returned {sanity['conveyor']} rows, MLflow "
        f"{sanity['mlflow']}, {sanity['conveyor_big']} over {big:,} runs, each the expected "
        "rows by `metrics.m1`. History: the metric of the `log_metric` workload "
        "(`cv.get_metric_history`, `MlflowClient().get_metric_history`). MLflow runs with "
        f"telemetry off. Load average {meta['load_start']} at the start, {meta['load_end']} "
        f"at the end (each figure's JSON line has the load when it started: {meta['loads']})."
    )
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        "## Tracking (bench/tracking.py)",
        "",
        textwrap.fill(intro, 100),
        "",
        "| workload | Conveyor | MLflow | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| 1. {n:,} `log_metric` calls in one run, including the final flush "
        f"| {fmt(get('log_metric', 'conveyor'))} | {fmt(get('log_metric', 'mlflow'))} "
        f"| {ratio('log_metric')} | ≥ {TARGETS['log_metric']:.0f}x | {met('log_metric')} |",
        f"| 2. create {runs:,} runs, 5 params + 5 metrics each"
        f"{' (MLflow: ' + format(mlflow_runs, ',') + ', extrapolated)' if reduced else ''} "
        f"| {fmt(get('create_runs', 'conveyor'))} | {fmt(get('create_runs', 'mlflow'))} "
        f"| {ratio('create_runs')} | ≥ {TARGETS['create_runs']:.0f}x | {met('create_runs')} |",
        f"| 3. filtered, ordered top-{LIMIT} search over {runs:,} runs (DataFrame) "
        f"| {fmt(get('search', 'conveyor'))} | {fmt(get('search', 'mlflow'))} "
        f"| {ratio('search')} | ≥ {TARGETS['search']:.0f}x | {met('search')} |",
        f"| 3. the same search over {big:,} Conveyor runs | {fmt(big_row)} | — | — "
        f"| < {SEARCH_100K_TARGET_MS:.0f} ms | {big_met} |",
        f"| 4. history of a {n:,}-step metric "
        f"| {fmt(get('history', 'conveyor'))} | {fmt(get('history', 'mlflow'))} "
        f"| {ratio('history')} | ≥ {TARGETS['history']:.0f}x | {met('history')} |",
        f"| (creating the {big:,} runs for the search above) "
        f"| {fmt(get('create_runs_big', 'conveyor'))} | — | — | — | — |",
        *section_footer(notes, meta["command"], SECTION),
    ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line; ``--quick`` shrinks every size for a smoke run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, help="repetitions per figure (default 5; --quick: 2)")
    ap.add_argument("--metrics", type=int, help="log_metric calls (default 10000; --quick: 500)")
    ap.add_argument("--runs", type=int, help="runs to create (default 10000; --quick: 300)")
    ap.add_argument(
        "--mlflow-runs", type=int, help="runs MLflow creates, rate extrapolated (default --runs)"
    )
    ap.add_argument(
        "--big-runs", type=int, help="Conveyor runs for the large search (default 100000)"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run; docs are left unchanged")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--mlflow-venv", type=Path, default=MLFLOW_VENV, help="peer venv folder")
    args = ap.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 5)
    args.metrics = args.metrics or (500 if args.quick else 10_000)
    args.runs = args.runs or (300 if args.quick else 10_000)
    args.mlflow_runs = args.mlflow_runs or args.runs
    args.big_runs = args.big_runs or (3_000 if args.quick else 100_000)
    return args


def main(argv: Sequence[str]) -> int:
    """Run every tracking workload on Conveyor and MLflow and report the figures."""
    if argv[:1] == ["--child"]:
        run_child(argv[1], argv[2:])
        return 0
    args = parse_args(argv)
    mlflow_python = ensure_mlflow_venv(args.mlflow_venv)
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-bench-tracking-"))
    load_start = load()
    try:
        pythons = {"conveyor": Path(sys.executable), "mlflow": mlflow_python}
        run = Runner(Path(__file__), pythons, scratch, timeout_s=CHILD_TIMEOUT_S)
        conveyor_version, python_version = run.version("conveyor", "conveyor").split()
        mlflow_version, mlflow_python_version = run.version("mlflow", "mlflow").split()
        info = {
            "bench": "info",
            "conveyor": conveyor_version,
            "mlflow": mlflow_version,
            "python": python_version,
            "mlflow_python": mlflow_python_version,
            "cpus": os.cpu_count(),
            "loadavg_1m": load_start,
        }
        print(json.dumps(info), flush=True)
        fig = Figures()
        stores = bench_log_metric(run, fig, args)
        sanity = bench_runs_and_search(run, fig, args)
        bench_history(run, fig, args, stores)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load_end = load()
    if args.quick or args.no_docs:
        log("docs/benchmarks.md left unchanged (--quick or --no-docs)")
        return 0
    loads = [r["load"] for r in fig.rows if "load" in r]
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, shared with other work ({platform.machine()}, Linux, "
        f"Python {python_version})",
        "reps": args.reps,
        "metrics": args.metrics,
        "runs": args.runs,
        "big_runs": args.big_runs,
        "mlflow_version": mlflow_version,
        "load_start": f"{load_start:.1f}",
        "load_end": f"{load_end:.1f}",
        "loads": f"{min(loads):.1f} to {max(loads):.1f}",
        "command": " ".join([".venv/bin/python", "bench/tracking.py", *argv]),
    }
    update_docs(DOCS, SECTION, render_section(fig, meta, sanity))
    log(f"updated {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
