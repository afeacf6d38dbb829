"""Web UI benchmark: the runs page and a long metric chart, beside what MLflow's UI asks of
its server for the same page.

Run from the repository root::

    .venv/bin/python bench/ui.py            # full run, updates docs/benchmarks.md
    .venv/bin/python bench/ui.py --quick    # smoke run, docs untouched

Workloads, each side in a fresh process over a fresh SQLite store:

1. The runs page over 10,000 runs (5 params, 5 metrics each): Conveyor renders the whole page
   (search, 50 rows, the table's columns, HTML) in-process through the app; MLflow's UI first
   asks its server for ``runs/search`` with 100 rows ordered by start time, measured here as
   the ``MlflowClient.search_runs`` call the server makes (no HTTP: kind to the peer).
2. The same page over 100,000 Conveyor runs: as it is, filtered and ordered
   (``metrics.m0 > 0.5 and params.p1 = '3'``, ``metrics.m1 desc``), and the 20th page.
   Target: under 300 ms each.
3. A run page whose metric has 100,000 points: the time and the points the page sends.
   Target: at most a few thousand points.

Times are the median of 5 requests after one warm-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
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

SECTION = "ui"
TRACKING = REPO / "bench" / "tracking.py"
FILTER = "metrics.m0 > 0.5 and params.p1 = '3'"
PAGE_TARGET_MS = 300.0
POINTS_TARGET = 5_000


def _timed(fn: Any, reps: int) -> tuple[list[float], Any]:
    result = fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times, result


def child_conveyor_pages(work: str, reps: str, points: str) -> dict[str, Any]:
    """Time the runs page (plain, filtered and ordered, the 20th page) and a run page with a
    ``points``-point metric, through the app in-process."""
    from fastapi.testclient import TestClient

    import conveyor as cv
    from conveyor.core.config import load_settings
    from conveyor.server.app import create_app

    cv.init(work, project="bench")
    with cv.start_run(experiment="history", name="long") as run:
        for step in range(int(points)):
            cv.log_metric("loss", 1.0 / (step + 1), step=step)
    cv.flush()
    app = create_app(load_settings(work, project="bench"), auth=False)
    n = int(reps)
    out: dict[str, Any] = {}
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:

        def get(path: str, **params: Any) -> str:
            answer = client.get(path, params=params)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            return answer.text

        base = "/ui/p/bench/runs"
        out["plain_ms"], page = _timed(lambda: get(base, experiment="e"), n)
        out["plain_rows"] = page.count('name="run" value=')
        out["filtered_ms"], page = _timed(
            lambda: get(base, experiment="e", filter=FILTER, order="metrics.m1 desc"), n
        )
        out["filtered_rows"] = page.count('name="run" value=')
        from urllib.parse import unquote

        token, deep, pages = None, "", 1
        while pages < 20:  # walk to the 20th page (or the last), then time it
            page = get(base, experiment="e", **({"page_token": token} if token else {}))
            found = re.search(r"page_token=([^\"&]+)", page)
            if found is None:
                break
            token, deep, pages = unquote(found.group(1)), unquote(found.group(1)), pages + 1
        out["deep_page"] = pages
        out["deep_ms"], page = _timed(lambda: get(base, experiment="e", page_token=deep), n)
        out["deep_rows"] = page.count('name="run" value=')
        out["chart_ms"], page = _timed(lambda: get(f"/ui/p/bench/runs/{run.id}"), n)
        lines = re.findall(r'<polyline[^>]*points="([^"]*)"', page)
        out["chart_points"] = max(len(p.split()) for p in lines)
        out["chart_bytes"] = len(page.encode())
    return out


def child_mlflow_ui_search(work: str, reps: str) -> dict[str, Any]:
    """Time the search MLflow's runs page asks its server for: 100 runs of the experiment,
    newest first (``MlflowClient.search_runs``, what the ``runs/search`` handler calls)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(sqlite_uri(Path(work) / "mlflow.db"))
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name("e").experiment_id

    def search() -> Any:
        return client.search_runs(
            [experiment_id], max_results=100, order_by=["attributes.start_time DESC"]
        )

    times, found = _timed(search, int(reps))
    return {"ms": times, "rows": len(found)}


CHILDREN = {
    "conveyor.pages": child_conveyor_pages,
    "mlflow.ui_search": child_mlflow_ui_search,
}


def run_child(op: str, args: Sequence[str]) -> None:
    print(json.dumps(CHILDREN[op](*args)), flush=True)


def load() -> float:
    return os.getloadavg()[0]


def measure(args: argparse.Namespace, run: Runner, seed: Runner, fig: Figures) -> None:
    log(f"1. the runs page over {args.runs:,} runs, beside MLflow's runs/search")
    work = run.new_dir("conveyor-10k")
    seed.child("conveyor.create_runs", work, args.runs, cwd=work)
    res = run.child("conveyor.pages", work, args.reps, 100, cwd=work)
    fig.emit(
        "runs_page",
        "conveyor",
        median(res["plain_ms"]),
        "ms",
        runs=args.runs,
        rows=res["plain_rows"],
        samples=samples(res["plain_ms"]),
        load=load(),
    )
    work = run.new_dir("mlflow-10k")
    seed.child("mlflow.create_runs", work, args.runs, cwd=work)
    peer = run.child("mlflow.ui_search", work, args.reps, cwd=work)
    fig.emit(
        "runs_page",
        "mlflow",
        median(peer["ms"]),
        "ms",
        runs=args.runs,
        rows=peer["rows"],
        what="MlflowClient.search_runs, 100 newest (no HTML, no HTTP)",
        samples=samples(peer["ms"]),
        load=load(),
    )
    fig.ratio("runs_page", "mlflow", higher_is_better=False)
    log(f"2./3. the runs page over {args.big_runs:,} runs and a {args.points:,}-point chart")
    work = run.new_dir("conveyor-big")
    seed.child("conveyor.create_runs", work, args.big_runs, cwd=work)
    res = run.child("conveyor.pages", work, args.reps, args.points, cwd=work)
    for key, what in (
        ("plain", "first page"),
        ("filtered", "filtered, ordered"),
        ("deep", "20th page"),
    ):
        fig.emit(
            f"runs_page_big_{key}",
            "conveyor",
            median(res[f"{key}_ms"]),
            "ms",
            runs=args.big_runs,
            rows=res[f"{key}_rows"],
            what=what,
            samples=samples(res[f"{key}_ms"]),
            load=load(),
        )
    fig.emit(
        "chart_page",
        "conveyor",
        median(res["chart_ms"]),
        "ms",
        points=args.points,
        samples=samples(res["chart_ms"]),
        load=load(),
    )
    fig.emit(
        "chart_points",
        "conveyor",
        res["chart_points"],
        "points",
        logged=args.points,
        page_bytes=res["chart_bytes"],
    )


def docs_section(fig: Figures, meta: dict[str, Any]) -> str:
    def row(label: str, bench: str, target: str, met: bool | None, peer: str = "—") -> str:
        ratio = fig.ratios.get(bench)
        r = f"**{ratio['value']}x**" if ratio else "—"
        verdict = "—" if met is None else ("yes" if met else "**no**")
        return (
            f"| {label} | {fmt(fig.get(bench, 'conveyor'))} | {peer} | {r} | {target} | {verdict} |"
        )

    def under(bench: str) -> bool:
        found = fig.get(bench, "conveyor")
        return found is not None and found["value"] < PAGE_TARGET_MS

    points = fig.get("chart_points", "conveyor")
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        "## Web UI (bench/ui.py)",
        "",
        f"Measured {meta['date']} on {meta['machine']}; load average {meta['load_start']} at the "
        f"start, {meta['load_end']} at the end. MLflow {meta['mlflow_version']}.",
        "",
        "| workload | Conveyor | MLflow | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
        row(
            f"runs page over {meta['runs']:,} runs (Conveyor: the whole HTML page; MLflow: "
            "the search its page asks for)",
            "runs_page",
            "—",
            None,
            fmt(fig.get("runs_page", "mlflow")),
        ),
        row(
            f"runs page over {meta['big_runs']:,} runs",
            "runs_page_big_plain",
            f"< {PAGE_TARGET_MS:.0f} ms",
            under("runs_page_big_plain"),
        ),
        row(
            "… filtered and ordered",
            "runs_page_big_filtered",
            f"< {PAGE_TARGET_MS:.0f} ms",
            under("runs_page_big_filtered"),
        ),
        row(
            "… its 20th page",
            "runs_page_big_deep",
            f"< {PAGE_TARGET_MS:.0f} ms",
            under("runs_page_big_deep"),
        ),
        row(f"run page with a {meta['points']:,}-point metric", "chart_page", "—", None),
        row(
            "… points the chart sends",
            "chart_points",
            f"≤ {POINTS_TARGET:,}",
            points is not None and points["value"] <= POINTS_TARGET,
        ),
    ]
    notes = (
        "Times are the median of "
        f"{meta['reps']} requests after one warm-up, through the app in-process (FastAPI's "
        "test client: routing, the access rule, the search, the page's HTML; no socket). "
        "MLflow's figure is only the search its runs page asks its server for "
        "(MlflowClient.search_runs, 100 runs newest first), without HTTP or rendering: a "
        "lower bound for its page. Each store was made by bench/tracking.py's create_runs "
        "(5 params, 5 metrics a run). Where the time went: the first cut listed the "
        "experiments with their run counts on every request, a count over all 100,000 runs that "
        "took 50 of its 70 ms; the page now reads the names only. The filtered page spends its "
        "time in the search query (the same one the API runs), the chart page in the store's "
        "SQL downsampling."
    )
    lines += section_footer(notes, meta["command"], SECTION)
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--runs", type=int, default=0, help="runs of the side-by-side store")
    ap.add_argument("--big-runs", type=int, default=0, help="runs of the large Conveyor store")
    ap.add_argument("--points", type=int, default=0, help="points of the long metric")
    ap.add_argument("--quick", action="store_true", help="smoke run; docs are left unchanged")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--mlflow-venv", type=Path, default=MLFLOW_VENV, help="peer venv folder")
    args = ap.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 5)
    args.runs = args.runs or (300 if args.quick else 10_000)
    args.big_runs = args.big_runs or (3_000 if args.quick else 100_000)
    args.points = args.points or (5_000 if args.quick else 100_000)
    return args


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--child"]:
        run_child(argv[1], argv[2:])
        return 0
    args = parse_args(argv)
    mlflow_python = ensure_mlflow_venv(args.mlflow_venv)
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-bench-ui-"))
    load_start = load()
    try:
        pythons = {"conveyor": Path(sys.executable), "mlflow": mlflow_python}
        run = Runner(Path(__file__), pythons, scratch, timeout_s=3600)
        seed = Runner(TRACKING, pythons, scratch, timeout_s=3600)
        mlflow_version = run.version("mlflow", "mlflow").split()[0]
        conveyor_version, python_version = run.version("conveyor", "conveyor").split()
        print(
            json.dumps(
                {
                    "bench": "info",
                    "conveyor": conveyor_version,
                    "mlflow": mlflow_version,
                    "python": python_version,
                    "cpus": os.cpu_count(),
                    "loadavg_1m": load_start,
                }
            ),
            flush=True,
        )
        fig = Figures()
        measure(args, run, seed, fig)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.quick or args.no_docs:
        log("docs/benchmarks.md left unchanged (--quick or --no-docs)")
        return 0
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, shared with other work ({platform.machine()}, Linux, "
        f"Python {python_version})",
        "reps": args.reps,
        "runs": args.runs,
        "big_runs": args.big_runs,
        "points": args.points,
        "mlflow_version": mlflow_version,
        "load_start": f"{load_start:.1f}",
        "load_end": f"{load():.1f}",
        "command": " ".join([".venv/bin/python", "bench/ui.py", *argv]),
    }
    update_docs(DOCS, SECTION, docs_section(fig, meta))
    log(f"wrote the {SECTION} section of {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
