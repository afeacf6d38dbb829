"""Server benchmark: Conveyor's team server side by side with an MLflow tracking server.

Run from the repository root::

    .venv/bin/python bench/server.py                 # full run, updates docs/benchmarks.md
    .venv/bin/python bench/server.py --quick         # smoke run, docs untouched

The workloads of the tracking benchmark (``bench/tracking.py``, whose data this script reuses),
sent through a server on 127.0.0.1 instead of to a local store: ``conveyor server`` (SQLite, one
worker, started with ``conveyor.testing.TeamServer``) against ``mlflow server`` (SQLite backend,
one worker, from ``.bench/venvs/mlflow``, installed on first use). The clients are the ordinary
SDKs in remote mode, each in its own fresh process:

1. 10,000 ``log_metric`` calls in one run. Conveyor batches in the background; its time runs to
   the end of ``cv.flush()``. MLflow's ``mlflow.log_metric`` is one synchronous request per call,
   so it makes fewer calls (``--mlflow-metrics``) and its rate is compared; its ``log_batch`` of
   10,000 points in batches of 1,000 is reported as a second MLflow figure.
2. Creating runs with 5 params and 5 metrics each (MLflow: ``--mlflow-runs`` timed, its rate
   extrapolated; it then creates the rest untimed so that both servers hold the same runs).
3. A filtered, ordered top-100 search over those runs (the same on both; the returned values are
   checked against the expected ones).
4. Reading back a 10,000-step metric history.

Each figure is printed as one JSON line; each pair ends with a ratio line whose value is how
many times faster Conveyor is. Servers are stopped at the end (by their process id).

This file is also the child script (``python server.py --child OP ARGS...``). Only the standard
library (and ``bench/_common.py``, ``bench/tracking.py``) is imported at the top, so the MLflow
venv can run it too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    DOCS,
    MLFLOW_VENV,
    Figures,
    child_env,
    ensure_mlflow_venv,
    fmt,
    last_json,
    log,
    median,
    samples,
    section_footer,
    spawn,
    sqlite_uri,
    update_docs,
)
from tracking import (
    EXPERIMENT,
    FILTER,
    LIMIT,
    METRIC,
    expected_top,
    run_metrics,
    run_params,
    step_value,
)

SECTION = "server"
PROJECT = "bench"
RESULT = "RESULT "  # prefix of a child's result line (MLflow may print other lines)
BATCH = 1000  # MLflow's log_batch limit of metrics per request
TARGETS = {"log_metric": 20.0, "search": 10.0}

# -------------------------------------------------------------------------------------------
# Child side: one measurement per process, result printed as one JSON line.
# -------------------------------------------------------------------------------------------


def _conveyor() -> Any:
    """Import the SDK; the environment points it at the server (CONVEYOR_STORE_URI, ...)."""
    import conveyor as cv

    with cv.start_run(experiment="warm-up", name="warm-up"):  # connection, environment upload
        cv.log_metric("x", 1.0)
    cv.flush()
    return cv


def _mlflow(url: str) -> Any:
    import mlflow

    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("warm-up")
    with mlflow.start_run(run_name="warm-up"):  # connection, experiment lookups
        mlflow.log_metric("x", 1.0)
    return mlflow


def _timed_calls(fn: Callable[[], Any], calls: int) -> tuple[list[float], Any]:
    """Call ``fn`` once to warm up, then ``calls`` times; return the milliseconds and a result."""
    result = fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times, result


def child_conveyor_log_metric(n: str) -> dict[str, Any]:
    """Log ``n`` values of one metric with ``cv.log_metric``, then flush; time it all."""
    cv = _conveyor()
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


def child_mlflow_log_metric(url: str, n: str, n_batch: str) -> dict[str, Any]:
    """Time ``n`` synchronous ``mlflow.log_metric`` calls in one run, then ``n_batch`` points
    of one metric sent with ``MlflowClient.log_batch``, 1,000 per request, in another run."""
    mlflow = _mlflow(url)
    from mlflow.entities import Metric

    mlflow.set_experiment(EXPERIMENT)
    count, count_batch = int(n), int(n_batch)
    with mlflow.start_run(run_name="metrics") as run:
        t0 = time.perf_counter()
        for i in range(count):
            mlflow.log_metric(METRIC, step_value(i), step=i)
        seconds = time.perf_counter() - t0
    client = mlflow.MlflowClient()
    with mlflow.start_run(run_name="metrics-batch") as batch_run:
        run_id = batch_run.info.run_id
        t0 = time.perf_counter()
        for start in range(0, count_batch, BATCH):
            now = int(time.time() * 1000)
            points = [
                Metric(METRIC, step_value(i), now, i)
                for i in range(start, min(start + BATCH, count_batch))
            ]
            client.log_batch(run_id, metrics=points)
        batch_seconds = time.perf_counter() - t0
    return {
        "s": seconds,
        "stored": len(client.get_metric_history(run.info.run_id, METRIC)),
        "batch_s": batch_seconds,
        "batch_stored": len(client.get_metric_history(run_id, METRIC)),
        "run_id": run_id,  # the 10,000-step one, for the history workload
    }


def child_conveyor_create_runs(n: str) -> dict[str, Any]:
    """Create ``n`` runs with 5 params and 5 metrics each, then flush; time it all."""
    cv = _conveyor()
    count = int(n)
    t0 = time.perf_counter()
    for i in range(count):
        with cv.start_run(experiment=EXPERIMENT, name=f"r{i}"):
            cv.log_params(run_params(i))
            cv.log_metrics(run_metrics(i))
    cv.flush()
    seconds = time.perf_counter() - t0
    held = len(cv.search_runs(experiment=EXPERIMENT, limit=max(count, 1), output="list"))
    return {"s": seconds, "runs": held}


def child_mlflow_create_runs(url: str, n_timed: str, n_total: str) -> dict[str, Any]:
    """Time ``n_timed`` runs created the fluent way, then create the rest up to ``n_total``."""
    mlflow = _mlflow(url)
    mlflow.set_experiment(EXPERIMENT)

    def create(first: int, last: int) -> float:
        t0 = time.perf_counter()
        for i in range(first, last):
            with mlflow.start_run(run_name=f"r{i}"):
                mlflow.log_params(run_params(i))
                mlflow.log_metrics(run_metrics(i))
        return time.perf_counter() - t0

    timed, total = int(n_timed), int(n_total)
    seconds = create(0, timed)
    rest_seconds = create(timed, total)
    experiment_id = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    held = len(mlflow.MlflowClient().search_runs([experiment_id], max_results=max(total, 1)))
    return {"s": seconds, "rest_s": rest_seconds, "runs": held}


def child_conveyor_search(calls: str) -> dict[str, Any]:
    """Time the filtered, ordered top-100 search (a list of runs) after one warm-up."""
    cv = _conveyor()

    def search() -> Any:
        return cv.search_runs(
            experiment=EXPERIMENT,
            filter=FILTER,
            order_by=["metrics.m1 desc"],
            limit=LIMIT,
            output="list",
        )

    times, found = _timed_calls(search, int(calls))
    return {"ms": times, "rows": len(found), "m1": [r.metrics["m1"] for r in found]}


def child_mlflow_search(url: str, calls: str) -> dict[str, Any]:
    """Time the same search with ``MlflowClient.search_runs`` (a list of runs)."""
    mlflow = _mlflow(url)
    client = mlflow.MlflowClient()
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id

    def search() -> Any:
        return client.search_runs(
            [experiment_id], filter_string=FILTER, order_by=["metrics.m1 DESC"], max_results=LIMIT
        )

    times, found = _timed_calls(search, int(calls))
    return {"ms": times, "rows": len(found), "m1": [r.data.metrics["m1"] for r in found]}


def child_conveyor_history(run_id: str, calls: str) -> dict[str, Any]:
    """Time ``cv.get_metric_history`` of the long metric after one warm-up."""
    cv = _conveyor()
    times, points = _timed_calls(lambda: cv.get_metric_history(run_id, METRIC), int(calls))
    return {"ms": times, "points": len(points)}


def child_mlflow_history(url: str, run_id: str, calls: str) -> dict[str, Any]:
    """Time ``MlflowClient().get_metric_history`` of the long metric after one warm-up."""
    client = _mlflow(url).MlflowClient()
    times, points = _timed_calls(lambda: client.get_metric_history(run_id, METRIC), int(calls))
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
    """Run the measurement ``op`` in this process and print its result as one JSON line."""
    print(RESULT + json.dumps(CHILDREN[op](*argv)), flush=True)


# -------------------------------------------------------------------------------------------
# Parent side: servers and clients.
# -------------------------------------------------------------------------------------------


def load() -> float:
    """Return the 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ConveyorServer:
    """``conveyor server`` over a fresh project in ``root`` (``TeamServer`` does the work)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server: Any = None
        self.start_s = 0.0

    def start(self) -> ConveyorServer:
        """Create the project (``conveyor init``), start the server, wait for /healthz."""
        from conveyor.testing.team import TeamServer

        self.root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "conveyor", "init", "--project", PROJECT],
            cwd=self.root,
            env=child_env(),
            check=True,
            capture_output=True,
        )
        self.server = TeamServer(self.root)
        try:
            self.server.start()
        except BaseException:
            self.server.stop()
            raise
        self.start_s = time.perf_counter() - t0
        if not self.server.admin_token.startswith("cvt_"):
            raise RuntimeError(f"no admin token in the server's output:\n{self.server.log()}")
        return self

    def client_env(self) -> dict[str, str]:
        """The environment of a client process working through this server."""
        return {**child_env(), **self.server.client_env(self.server.admin_token, project=PROJECT)}

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


class MlflowServer:
    """``mlflow server`` over a fresh SQLite database in ``root``, on 127.0.0.1.

    Its background job runner (a pool of huey consumers polling their queues, used for
    GenAI jobs, not for tracking) is switched off, and so is uvicorn's access log (Conveyor's
    server runs at ``--log-level warning``): both would take CPU from this 2-core machine.
    """

    def __init__(self, python: Path, root: Path) -> None:
        self.python = python
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_s = 0.0
        self._log = root / "mlflow-server.log"

    def start(self, timeout: float = 180.0) -> MlflowServer:
        """Start the server in its own process group; wait until /health answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**child_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        cmd = [
            str(self.python),
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            sqlite_uri(self.root / "mlflow.db"),
            "--default-artifact-root",
            str(self.root / "artifacts"),
            "--no-serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--uvicorn-opts",
            "--no-access-log",
        ]
        t0 = time.perf_counter()
        with open(self._log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited:\n{self._log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        self.start_s = time.perf_counter() - t0
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"mlflow server not ready in {timeout} s:\n{self._log.read_text()}")

    def stop(self) -> None:
        """Stop the server's process group (the CLI and its uvicorn child), by its id."""
        if self.proc is None:
            return
        group = self.proc.pid  # started with start_new_session: the group's id is its pid
        if self.proc.poll() is None:
            os.killpg(group, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(group, signal.SIGKILL)
                self.proc.wait()
        deadline = time.monotonic() + 20  # its uvicorn child may outlive the CLI for a moment
        while _group_alive(group):
            if time.monotonic() > deadline:
                os.killpg(group, signal.SIGKILL)
                break
            time.sleep(0.1)
        self.proc = None


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


class Clients:
    """Runs child measurements in fresh client processes of either side."""

    def __init__(self, mlflow_python: Path, scratch: Path) -> None:
        self.python = {"conveyor": Path(sys.executable), "mlflow": mlflow_python}
        self.cwd = scratch / "client"
        self.cwd.mkdir(parents=True, exist_ok=True)

    def run(self, op: str, *args: object, env: dict[str, str]) -> dict[str, Any]:
        """Run ``op`` (``tool.name``) in a fresh process; return its JSON result."""
        tool = op.split(".", 1)[0]
        argv = [self.python[tool], Path(__file__).resolve(), "--child", op, *args]
        return last_json(spawn(argv, env, self.cwd), RESULT)

    def mlflow_env(self) -> dict[str, str]:
        """The environment of an MLflow client process (no run URLs printed)."""
        return {**child_env(), "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def _check(ok: bool, message: str) -> None:
    """Stop the benchmark when a side did not store or return what it should."""
    if not ok:
        raise SystemExit(f"sanity check failed: {message}")


def alternate(rounds: int, steps: dict[str, Callable[[int], None]]) -> None:
    """Run each step once per round, alternating which side goes first."""
    keys = list(steps)
    for i in range(rounds):
        for key in keys if i % 2 == 0 else keys[::-1]:
            steps[key](i)


# -------------------------------------------------------------------------------------------
# Parent side: the workloads.
# -------------------------------------------------------------------------------------------


def bench_logging(
    cl: Clients, fig: Figures, args: argparse.Namespace, servers: dict[str, Any]
) -> dict[str, str]:
    """Workload 1 on both servers, the sides alternating; return the long runs' ids."""
    n, n_ml = args.metrics, args.mlflow_metrics
    conveyor, mlflow = servers["conveyor"], servers["mlflow"]
    log(f"1. {n:,} log_metric calls: Conveyor x{args.reps}, MLflow ({n_ml:,}) x{args.mlflow_reps}")
    rates: dict[str, list[float]] = {"conveyor": [], "mlflow": [], "batch": []}
    enqueue: list[float] = []
    loads: list[float] = []
    run_ids: dict[str, str] = {}

    def conveyor_rep(i: int) -> None:
        if i >= args.reps:
            return
        loads.append(load())
        res = cl.run("conveyor.log_metric", n, env=conveyor.client_env())
        _check(res["stored"] == n, f"Conveyor stored {res['stored']} of {n} metric values")
        rates["conveyor"].append(n / res["s"])
        enqueue.append(n / res["enqueue_s"])
        run_ids["conveyor"] = res["run_id"]

    def mlflow_rep(i: int) -> None:
        if i >= args.mlflow_reps:
            return
        loads.append(load())
        res = cl.run("mlflow.log_metric", mlflow.url, n_ml, n, env=cl.mlflow_env())
        _check(res["stored"] == n_ml, f"MLflow stored {res['stored']} of {n_ml} metric values")
        _check(res["batch_stored"] == n, f"MLflow stored {res['batch_stored']} of {n} points")
        rates["mlflow"].append(n_ml / res["s"])
        rates["batch"].append(n / res["batch_s"])
        run_ids["mlflow"] = res["run_id"]

    alternate(max(args.reps, args.mlflow_reps), {"conveyor": conveyor_rep, "mlflow": mlflow_rep})
    fig.emit(
        "log_metric",
        "conveyor",
        median(rates["conveyor"]),
        "metrics/s",
        calls=n,
        reps=len(rates["conveyor"]),
        samples=samples(rates["conveyor"]),
        enqueue_only_per_s=round(median(enqueue)),
        load=max(loads),
        note="cv.log_metric one call at a time in one run, time includes the final cv.flush()",
    )
    fig.emit(
        "log_metric",
        "mlflow",
        median(rates["mlflow"]),
        "metrics/s",
        calls=n_ml,
        extrapolated=n_ml != n,
        reps=len(rates["mlflow"]),
        samples=samples(rates["mlflow"]),
        load=max(loads),
        note="mlflow.log_metric one call at a time, synchronous (its default): one request each",
    )
    fig.emit(
        "log_metric",
        "mlflow-log_batch",
        median(rates["batch"]),
        "metrics/s",
        points=n,
        batch=BATCH,
        reps=len(rates["batch"]),
        samples=samples(rates["batch"]),
        note=f"MlflowClient.log_batch, {BATCH:,} points per request",
    )
    fig.ratio("log_metric", "mlflow", higher_is_better=True)
    fig.ratio("log_metric", "mlflow-log_batch", higher_is_better=True, key="log_batch")
    return run_ids


def bench_history(
    cl: Clients,
    fig: Figures,
    args: argparse.Namespace,
    servers: dict[str, Any],
    run_ids: dict[str, str],
) -> None:
    """Workload 4: read back a ``n``-step metric history, the sides alternating."""
    n, calls = args.metrics, args.calls
    log(f"4. {n:,}-step metric history: {args.rounds} rounds of {calls} calls a side")
    rounds: dict[str, list[list[float]]] = {"conveyor": [], "mlflow": []}
    loads: list[float] = []

    def conveyor_round(_: int) -> None:
        loads.append(load())
        env = servers["conveyor"].client_env()
        res = cl.run("conveyor.history", run_ids["conveyor"], calls, env=env)
        _check(res["points"] == n, f"Conveyor returned {res['points']} of {n} points")
        rounds["conveyor"].append(res["ms"])

    def mlflow_round(_: int) -> None:
        loads.append(load())
        url = servers["mlflow"].url
        res = cl.run("mlflow.history", url, run_ids["mlflow"], calls, env=cl.mlflow_env())
        _check(res["points"] == n, f"MLflow returned {res['points']} of {n} points")
        rounds["mlflow"].append(res["ms"])

    alternate(args.rounds, {"conveyor": conveyor_round, "mlflow": mlflow_round})
    for tool in ("conveyor", "mlflow"):
        every = [ms for r in rounds[tool] for ms in r]
        fig.emit(
            "history",
            tool,
            median(every),
            "ms",
            steps=n,
            calls=len(every),
            samples=samples([median(r) for r in rounds[tool]]),
            load=max(loads),
        )
    fig.ratio("history", "mlflow", higher_is_better=False)


def bench_runs(
    cl: Clients, fig: Figures, args: argparse.Namespace, scratch: Path, mlflow_python: Path
) -> dict[str, Any]:
    """Workload 2: create the runs, Conveyor on a fresh server per rep; return the servers
    (the last Conveyor one and the MLflow one, both still running) that hold them."""
    n, n_ml = args.runs, args.mlflow_runs
    servers: dict[str, Any] = {}
    starts: dict[str, list[float]] = {"conveyor": [], "mlflow": []}
    rates: list[float] = []
    loads: list[float] = []
    log(f"2. create {n:,} runs: Conveyor x{args.reps}, each on a fresh server")
    try:
        for rep in range(args.reps):
            if "conveyor" in servers:
                servers.pop("conveyor").stop()
            server = servers["conveyor"] = ConveyorServer(scratch / f"runs-conveyor-{rep}")
            server.start()
            starts["conveyor"].append(server.start_s)
            loads.append(load())
            res = cl.run("conveyor.create_runs", n, env=server.client_env())
            _check(res["runs"] == n, f"Conveyor holds {res['runs']} of {n} runs")
            rates.append(n / res["s"])
        fig.emit(
            "create_runs",
            "conveyor",
            median(rates),
            "runs/s",
            runs=n,
            reps=len(rates),
            samples=samples(rates),
            load=max(loads),
            note="with cv.start_run(): cv.log_params(5); cv.log_metrics(5); one cv.flush()",
        )
        log(f"2. create {n_ml:,} runs on MLflow (then {n - n_ml:,} more, untimed)")
        server_ml = servers["mlflow"] = MlflowServer(mlflow_python, scratch / "runs-mlflow")
        server_ml.start()
        starts["mlflow"].append(server_ml.start_s)
        load_before = load()
        res = cl.run("mlflow.create_runs", server_ml.url, n_ml, n, env=cl.mlflow_env())
        _check(res["runs"] == n, f"MLflow holds {res['runs']} of {n} runs")
        fig.emit(
            "create_runs",
            "mlflow",
            n_ml / res["s"],
            "runs/s",
            runs=n_ml,
            seconds=round(res["s"], 1),
            extrapolated=n_ml != n,
            rest_runs_per_s=round((n - n_ml) / res["rest_s"], 1) if n > n_ml else None,
            reps=1,
            load=load_before,
            note="with mlflow.start_run(): mlflow.log_params(5); mlflow.log_metrics(5)",
        )
        fig.ratio("create_runs", "mlflow", higher_is_better=True)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return {"servers": servers, "starts": starts}


def bench_search(
    cl: Clients, fig: Figures, args: argparse.Namespace, servers: dict[str, Any]
) -> dict[str, Any]:
    """Workload 3: the search over the runs of workload 2, the sides alternating."""
    n, calls = args.runs, args.calls
    log(f"3. filtered top-{LIMIT} search over {n:,} runs: {args.rounds} rounds of {calls} calls")
    want = [round(v, 9) for v in expected_top(n)]
    rounds: dict[str, list[list[float]]] = {"conveyor": [], "mlflow": []}
    rows: dict[str, int] = {}
    loads: list[float] = []

    def record(tool: str, res: dict[str, Any]) -> None:
        got = [round(v, 9) for v in res["m1"]]
        _check(got == want, f"{tool}'s search returned other rows than expected ({len(got)})")
        rows[tool] = res["rows"]
        rounds[tool].append(res["ms"])

    def conveyor_round(_: int) -> None:
        loads.append(load())
        env = servers["conveyor"].client_env()
        record("conveyor", cl.run("conveyor.search", calls, env=env))

    def mlflow_round(_: int) -> None:
        loads.append(load())
        url = servers["mlflow"].url
        record("mlflow", cl.run("mlflow.search", url, calls, env=cl.mlflow_env()))

    alternate(args.rounds, {"conveyor": conveyor_round, "mlflow": mlflow_round})
    for tool in ("conveyor", "mlflow"):
        every = [ms for r in rounds[tool] for ms in r]
        fig.emit(
            "search",
            tool,
            median(every),
            "ms",
            runs=n,
            rows=rows[tool],
            calls=len(every),
            samples=samples([median(r) for r in rounds[tool]]),
            load=max(loads),
            filter=FILTER,
            order_by="metrics.m1 desc",
        )
    fig.ratio("search", "mlflow", higher_is_better=False)
    sanity = {"conveyor": rows["conveyor"], "mlflow": rows["mlflow"], "runs": n}
    sanity["same_rows"] = rows["conveyor"] == rows["mlflow"] == len(want)
    print(json.dumps({"bench": "search.sanity", **sanity}), flush=True)
    return sanity


def bench_all(
    fig: Figures, args: argparse.Namespace, scratch: Path, mlflow_python: Path
) -> dict[str, Any]:
    """Run the four workloads (1 and 4 on one pair of servers, 2 and 3 on fresh ones)."""
    cl = Clients(mlflow_python, scratch)
    starts: dict[str, list[float]] = {"conveyor": [], "mlflow": []}
    servers: dict[str, Any] = {}
    try:
        log("starting a Conveyor server and an MLflow server, each on a fresh SQLite store")
        servers["conveyor"] = ConveyorServer(scratch / "log-conveyor")
        servers["mlflow"] = MlflowServer(mlflow_python, scratch / "log-mlflow")
        for tool, server in servers.items():
            server.start()
            starts[tool].append(server.start_s)
        run_ids = bench_logging(cl, fig, args, servers)
        bench_history(cl, fig, args, servers, run_ids)
    finally:
        for server in servers.values():
            server.stop()
    made = bench_runs(cl, fig, args, scratch, mlflow_python)
    try:
        sanity = bench_search(cl, fig, args, made["servers"])
    finally:
        for server in made["servers"].values():
            server.stop()
    for tool in ("conveyor", "mlflow"):
        every = starts[tool] + made["starts"][tool]
        fig.emit(
            "server_start",
            tool,
            median(every),
            "s",
            starts=len(every),
            all=samples(every),
            note="spawn to the first 200 of the health route, on a fresh SQLite store"
            + (" (including `conveyor init`)" if tool == "conveyor" else ""),
        )
    fig.ratio("server_start", "mlflow", higher_is_better=False)
    return sanity


# -------------------------------------------------------------------------------------------
# docs/benchmarks.md
# -------------------------------------------------------------------------------------------


def render_section(fig: Figures, meta: dict[str, Any], sanity: dict[str, Any]) -> str:
    """Return the Server section (between its markers) as markdown."""
    get = fig.get

    def ratio(key: str) -> str:
        r = fig.ratios.get(key)
        if r is None:
            return "—"
        spread = r.get("per_rep_range")
        extra = f" ({spread[0]:,.1f} to {spread[1]:,.1f})" if spread else ""
        return f"**{r['value']:,.1f}x**{extra}"

    def met(key: str) -> str:
        r = fig.ratios.get(key)
        return "—" if r is None else ("yes" if r["value"] >= TARGETS[key] else "**no**")

    n, n_ml, runs, n_runs_ml = (
        meta["metrics"],
        meta["mlflow_metrics"],
        meta["runs"],
        meta["mlflow_runs"],
    )
    enqueue = (get("log_metric", "conveyor") or {}).get("enqueue_only_per_s", "?")
    ml_create = get("create_runs", "mlflow") or {}
    rest = ml_create.get("rest_runs_per_s")
    intro = (
        f"The tracking workloads through a server on 127.0.0.1: `conveyor server` "
        f"{meta['conveyor_version']} against `mlflow server` {meta['mlflow_version']}, SQLite "
        "backend and one worker process each, every server on a fresh store; the clients are "
        "the ordinary SDKs in remote mode, each in its own fresh process. Measured "
        f"{meta['date']} on {meta['machine']}: absolute figures are noisy, the ratios measured "
        "in the same run are what count. Ratio: how many times faster Conveyor is (above 1: "
        "faster), with the range over the rounds in which both sides ran in brackets. Targets "
        "are those of the server issue."
    )
    notes = (
        f"Notes: 1. Conveyor's SDK batches in a background thread (one request per batch): its "
        f"time runs from the first `cv.log_metric` to the end of `cv.flush()` (the calls "
        f"alone: {enqueue:,} metrics/s), median of {meta['reps']} fresh client processes. "
        f"`mlflow.log_metric` is synchronous (its default), one request per call, so MLflow "
        f"made {n_ml:,} calls (not {n:,}) per process, {meta['mlflow_reps']} processes, "
        "alternating with Conveyor's; its rate is compared. Its `MlflowClient.log_batch` row "
        f"sends the {n:,} points {BATCH:,} per request (its limit). 2. Runs: params p0..p4 = "
        "(i·7+j) mod 13, metrics m0..m4 = ((i·31+j) mod 1000)/1000, as in the tracking "
        f"benchmark; Conveyor created {runs:,} runs on a fresh server per rep and flushed once "
        f"at the end; MLflow's rate is that of its first {n_runs_ml:,} runs"
        + (f" (the other {runs - n_runs_ml:,}, untimed, went at {rest:,} runs/s)" if rest else "")
        + f", so both servers held the same {runs:,} runs for the search. 3. Search: `{FILTER}` "
        f"ordered by `metrics.m1` descending, limit {LIMIT}, as a list of runs "
        '(`cv.search_runs(..., output="list")`, `MlflowClient().search_runs`); '
        f"{meta['rounds']} alternating rounds of one fresh client process a side, "
        f"{meta['calls']} calls each after a warm-up, median of all calls. Sanity: Conveyor "
        f"returned {sanity['conveyor']} rows, MLflow {sanity['mlflow']}, each the expected rows "
        f"by `metrics.m1`. 4. History: Conveyor's {n:,}-step metric of workload 1, MLflow's of "
        "its `log_batch` run (`cv.get_metric_history`, `MlflowClient().get_metric_history`), "
        "timed like the search. MLflow's server ran without its background job runner "
        "(`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`, GenAI jobs) and access log, Conveyor's at "
        "`--log-level warning`; MLflow telemetry off. Load average "
        f"{meta['load_start']} at the start, {meta['load_end']} at the end (the JSON lines "
        f"carry the load during each figure: {meta['loads']})."
    )
    batch_label = f"MLflow `log_batch`, {BATCH:,} per request"
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        "## Server (bench/server.py)",
        "",
        textwrap.fill(intro, 100),
        "",
        "| workload | Conveyor | MLflow | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| 1. {n:,} `log_metric` calls in one run, including the final flush"
        f"{' (MLflow: ' + format(n_ml, ',') + ' calls, rate)' if n_ml != n else ''} "
        f"| {fmt(get('log_metric', 'conveyor'))} | {fmt(get('log_metric', 'mlflow'))} "
        f"| {ratio('log_metric')} | ≥ {TARGETS['log_metric']:.0f}x | {met('log_metric')} |",
        f"| 1. the same, against {batch_label} "
        f"| {fmt(get('log_metric', 'conveyor'))} | {fmt(get('log_metric', 'mlflow-log_batch'))} "
        f"| {ratio('log_batch')} | — | — |",
        f"| 2. create {runs:,} runs, 5 params + 5 metrics each"
        f"{' (MLflow: ' + format(n_runs_ml, ',') + ', extrapolated)' if n_runs_ml != runs else ''} "
        f"| {fmt(get('create_runs', 'conveyor'))} | {fmt(get('create_runs', 'mlflow'))} "
        f"| {ratio('create_runs')} | — | — |",
        f"| 3. filtered, ordered top-{LIMIT} search over {runs:,} runs (list of runs) "
        f"| {fmt(get('search', 'conveyor'))} | {fmt(get('search', 'mlflow'))} "
        f"| {ratio('search')} | ≥ {TARGETS['search']:.0f}x | {met('search')} |",
        f"| 4. history of a {n:,}-step metric "
        f"| {fmt(get('history', 'conveyor'))} | {fmt(get('history', 'mlflow'))} "
        f"| {ratio('history')} | — | — |",
        "| server start on a fresh store, to the first healthy answer (Conveyor: with "
        f"`conveyor init`) | {fmt(get('server_start', 'conveyor'))} "
        f"| {fmt(get('server_start', 'mlflow'))} | {ratio('server_start')} | — | — |",
        *section_footer(notes, meta["command"], SECTION),
    ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line; ``--quick`` shrinks every size for a smoke run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, help="Conveyor write repetitions (default 5; quick 2)")
    ap.add_argument("--mlflow-reps", type=int, help="MLflow logging reps (default --reps)")
    ap.add_argument("--metrics", type=int, help="log_metric calls (default 10000; quick 500)")
    ap.add_argument(
        "--mlflow-metrics", type=int, help="MLflow's log_metric calls (default 1000; quick 100)"
    )
    ap.add_argument("--runs", type=int, help="runs each server holds (default 2000; quick 300)")
    ap.add_argument(
        "--mlflow-runs", type=int, help="MLflow runs timed, rate extrapolated (default 500)"
    )
    ap.add_argument("--rounds", type=int, help="read rounds a side (default 3; quick 2)")
    ap.add_argument("--calls", type=int, help="timed reads per round (default 5; quick 3)")
    ap.add_argument("--quick", action="store_true", help="smoke run; docs are left unchanged")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--mlflow-venv", type=Path, default=MLFLOW_VENV, help="peer venv folder")
    args = ap.parse_args(argv)
    quick = args.quick
    args.reps = args.reps or (2 if quick else 5)
    args.mlflow_reps = args.mlflow_reps or args.reps
    args.metrics = args.metrics or (500 if quick else 10_000)
    args.mlflow_metrics = min(args.mlflow_metrics or (100 if quick else 1_000), args.metrics)
    args.runs = args.runs or (300 if quick else 2_000)
    args.mlflow_runs = min(args.mlflow_runs or (100 if quick else 500), args.runs)
    args.rounds = args.rounds or (2 if quick else 3)
    args.calls = args.calls or (3 if quick else 5)
    return args


def versions(mlflow_python: Path) -> dict[str, str]:
    """Return the versions of Conveyor, MLflow and both Pythons."""
    code = "import sys, {m}; print({m}.__version__, sys.version.split()[0])"
    out: dict[str, str] = {}
    for tool, python in (("conveyor", Path(sys.executable)), ("mlflow", mlflow_python)):
        found = subprocess.run(
            [str(python), "-c", code.format(m=tool)],
            env=child_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        out[tool], out[f"{tool}_python"] = found[0], found[1]
    return out


def main(argv: Sequence[str]) -> int:
    """Run every server workload on Conveyor and MLflow and report the figures."""
    if argv[:1] == ["--child"]:
        run_child(argv[1], argv[2:])
        return 0
    args = parse_args(argv)
    mlflow_python = ensure_mlflow_venv(args.mlflow_venv)
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-bench-server-"))
    load_start = load()
    t0 = time.perf_counter()
    try:
        found = versions(mlflow_python)
        info = {
            "bench": "info",
            **found,
            "cpus": os.cpu_count(),
            "loadavg_1m": load_start,
        }
        print(json.dumps(info), flush=True)
        fig = Figures()
        sanity = bench_all(fig, args, scratch, mlflow_python)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load_end = load()
    log(f"done in {time.perf_counter() - t0:.0f} s")
    if args.quick or args.no_docs:
        log("docs/benchmarks.md left unchanged (--quick or --no-docs)")
        return 0
    loads = [r["load"] for r in fig.rows if "load" in r]
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, shared with other work ({platform.machine()}, Linux, "
        f"Python {found['conveyor_python']})",
        "conveyor_version": found["conveyor"],
        "mlflow_version": found["mlflow"],
        "reps": args.reps,
        "mlflow_reps": args.mlflow_reps,
        "metrics": args.metrics,
        "mlflow_metrics": args.mlflow_metrics,
        "runs": args.runs,
        "mlflow_runs": args.mlflow_runs,
        "rounds": args.rounds,
        "calls": args.calls,
        "load_start": f"{load_start:.1f}",
        "load_end": f"{load_end:.1f}",
        "loads": f"{min(loads):.1f} to {max(loads):.1f}",
        "command": " ".join([".venv/bin/python", "bench/server.py", *argv]),
    }
    update_docs(DOCS, SECTION, render_section(fig, meta, sanity))
    log(f"updated {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
