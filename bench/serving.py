"""Serving benchmark: Conveyor's model server side by side with MLflow, BentoML and FastAPI.

Run from the repository root::

    .venv/bin/python bench/serving.py                     # full run, updates docs/benchmarks.md
    .venv/bin/python bench/serving.py --no-docs           # full run, figures on stdout only
    .venv/bin/python bench/serving.py --duration 2 --reps 1 --starts 1   # smoke run
    .venv/bin/python bench/serving.py --only conveyor,fastapi            # a subset

The workload of the serving issue (8), on the same model for every server and in one run: a
scikit-learn ``RandomForestClassifier(n_estimators=100, random_state=0)`` fitted on
``load_breast_cancer()`` (569 rows x 30 features, bundled with scikit-learn), served by

* ``conveyor``: the model logged into a fresh Conveyor project under ``.bench/serving/``
  (``cv.models.log(model, name="rf", input_example=X[:5])``, alias ``champion``) and served by
  ``conveyor serve rf@champion`` with its defaults (prediction log on, batching on);
  ``conveyor-onnx``: the same with ``--optimize onnx`` (onnxruntime);
* ``mlflow``: ``mlflow models serve --env-manager local`` of the model saved with
  ``mlflow.sklearn.save_model`` as ``shared/bench/peers/mlflow_bench.py`` does (skops, a
  signature and an input example);
* ``bentoml`` and ``bentoml-batch``: BentoML 1.4, the services of ``serve_bentoml_service.py``
  (``RF``: one ``predict`` per request; ``RFBatch``: adaptive batching), ``bentoml serve``;
* ``fastapi``: the minimal hand-written endpoint ``serve_fastapi_app.py`` (FastAPI + uvicorn,
  one worker, pydantic-validated ``list[list[float]]``): the framework floor.

FastAPI and BentoML serve the joblib file that ``serve_make_model.py`` writes (it trains the
same model); its ``row1.json`` (the first row) and ``rows1000.json`` (1,000 rows drawn with
replacement, seed 0) are the request rows of every server, each in its server's body format.
Every server answers the 1,000 rows once before the load; its predictions are checked against
the in-process model's.

The peers' files in ``shared/bench/peers`` (``--peers-dir``) run unchanged; the load is their
wrk script (``wrk -t1 -cC -dDs --latency -s serve_wrk_post.lua URL -- BODY MAXREQ``) as
``serve_bench.py`` runs it. Each peer is installed on first use into its own venv under
``.bench/venvs/<name>`` with the versions ``serve_bench.py`` pins (fastapi 0.165.0, uvicorn
0.54.0, bentoml 1.4.39, scikit-learn 1.9.1, joblib 1.6.0); MLflow goes into
``.bench/venvs/mlflow`` (``_common.MLFLOW_SPEC``, shared with the tracking and models benches).

Figures per server: single-row requests at concurrency 1, 8 and 32 (requests/s, p50, p99), the
1,000-row request at concurrency 1 (rows/s, p50, p99), the time from spawn to the first 200 of
the server's readiness route (polled every 25 ms; median of ``--starts`` starts, each a fresh
process), and the RSS of the server's whole process tree (``/proc``): idle, half a second
after one request, and after the load.
Each load figure is the median of ``--reps`` reps, each rep a fresh server process, the servers
one at a time in an order reversed every other rep; a discarded one-second warm-up precedes each
server's load. Every server binds 127.0.0.1 on a free port and runs in its own process group,
which is stopped (then any descendant that left the group, by PID) when done. Each figure,
each ratio and each target is printed as one JSON line; a final line holds the targets.

Targets (issue 8): at concurrency 32, Conveyor's requests/s at least 10x MLflow's with p99
under 50 ms; at concurrency 1, Conveyor's p50 at most 1.2x the FastAPI floor's and under 1 ms
with ``--optimize onnx``; 1,000-row rows/s at least 2x MLflow's; ready in under 2 s; and ahead
of BentoML, with and without adaptive batching, on every figure.

A full run rewrites the Serving section of docs/benchmarks.md (``--no-docs``: it does not).
This file is also the child script (``python serving.py --child OP ARGS...``). Only the
standard library (and ``bench/_common.py``) is imported at the top.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    DOCS,
    REPO,
    Figures,
    child_env,
    child_versions,
    ensure_mlflow_venv,
    ensure_peer_venv,
    log,
    median,
    update_docs,
)

SECTION = "serving"
TITLE = "## Serving (bench/serving.py)"
PEERS_DIR = REPO.parent / "shared" / "bench" / "peers"
VENVS = REPO / ".bench" / "venvs"
WORK_ROOT = REPO / ".bench" / "serving"
HOST = "127.0.0.1"
MODEL = "rf"
ALIAS = "champion"
PROJECT = "bench"
N_FEATURES = 30
POLL_S = 0.025  # readiness poll interval
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
WARMUP_S = 1
#: Load points: (body, concurrency); the 1,000-row body only at concurrency 1.
POINTS = (("1row", 1), ("1row", 8), ("1row", 32), ("1000rows", 1))
#: Per-thread request caps of the wrk script, per second of ``--duration`` (a bound, not a goal).
CAP_PER_S = {"1row": 20_000, "1000rows": 1_000}
#: The pins of ``shared/bench/peers/serve_bench.py`` (checked against it at start).
PEER_SPECS = {
    "fastapi": (
        "fastapi==0.165.0",
        "uvicorn[standard]==0.54.0",
        "orjson",
        "scikit-learn==1.9.1",
        "joblib==1.6.0",
    ),
    "bentoml": ("bentoml==1.4.39", "scikit-learn==1.9.1", "joblib==1.6.0"),
}
PEER_FILES = (
    "serve_bench.py",
    "serve_make_model.py",
    "serve_fastapi_app.py",
    "serve_bentoml_service.py",
    "serve_wrk_post.lua",
    "mlflow_bench.py",
)
#: Every server, in the order of the tables.
SERVERS = ("conveyor", "conveyor-onnx", "mlflow", "bentoml", "bentoml-batch", "fastapi")
CONVEYOR_SERVERS = ("conveyor", "conveyor-onnx")
LABELS = {
    "conveyor": "Conveyor",
    "conveyor-onnx": "Conveyor `--optimize onnx`",
    "mlflow": "MLflow",
    "bentoml": "BentoML",
    "bentoml-batch": "BentoML, adaptive batching",
    "fastapi": "FastAPI floor",
}
#: Targets of the issue.
C32_RPS_VS_MLFLOW = 10.0
C32_P99_MS = 50.0
C1_P50_VS_FASTAPI = 1.2
ONNX_C1_P50_MS = 1.0
ROWS_VS_MLFLOW = 2.0
READY_S = 2.0

# -------------------------------------------------------------------------------------------
# Child side: runs in Conveyor's venv or MLflow's; prints one JSON line.
# -------------------------------------------------------------------------------------------


def _peers_module(name: str) -> Any:
    """Import a module of the peers' folder by path, writing no bytecode there."""
    import importlib

    sys.dont_write_bytecode = True
    sys.path.insert(0, os.environ["SERVING_BENCH_PEERS"])
    return importlib.import_module(name)


def child_conveyor_model(root: str, rows_file: str, joblib_file: str) -> dict[str, Any]:
    """Log the forest into a fresh project at ``root``, alias it; predict the 1,000 rows."""
    import numpy as np

    import conveyor as cv

    model, x, _ = _peers_module("mlflow_bench").train_model()  # the model, as_frame
    cv.init(root=root, project=PROJECT)
    t0 = time.perf_counter()
    mv = cv.models.log(model, name=MODEL, input_example=x[:5])
    log_s = time.perf_counter() - t0
    cv.models.set_alias(MODEL, ALIAS, version=mv.version)
    rows = np.asarray(json.loads(Path(rows_file).read_text()), dtype=np.float64)
    import pandas as pd

    predictions = model.predict(pd.DataFrame(rows, columns=x.columns)).tolist()
    same = None
    if joblib_file != "-":  # the peers' model (serve_make_model.py): the same predictions?
        import joblib

        same = joblib.load(joblib_file).predict(rows).tolist() == predictions
    return {
        "version": mv.version,
        "log_s": log_s,
        "columns": list(x.columns),
        "predictions": predictions,
        "same_as_peers_model": same,
    }


def child_mlflow_model(out: str) -> dict[str, Any]:
    """Save the forest with ``mlflow.sklearn.save_model`` as ``mlflow_bench.py`` does."""
    import logging

    import mlflow.sklearn
    from mlflow.models import infer_signature

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mb = _peers_module("mlflow_bench")
    model, x, _ = mb.train_model()
    signature = infer_signature(x, model.predict(x))
    mlflow.sklearn.save_model(
        model,
        out,
        signature=signature,
        input_example=x.iloc[:2],
        skops_trusted_types=mb.SKOPS_TRUST,
    )
    return {"path": out}


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "conveyor-model": child_conveyor_model,
    "mlflow-model": child_mlflow_model,
    "versions": child_versions,
}


def run_child(op: str, argv: Sequence[str]) -> None:
    """Run child ``op`` with ``argv``; print its result as the last line of stdout."""
    import warnings

    warnings.filterwarnings("ignore")
    print(json.dumps(CHILDREN[op](*argv)), flush=True)


# -------------------------------------------------------------------------------------------
# Parent side: environments and children.
# -------------------------------------------------------------------------------------------


class SideFailed(RuntimeError):
    """A server failed to install, start, answer or stop as it should."""


def child(python: Path, op: str, *args: object, env: dict[str, str]) -> dict[str, Any]:
    """Run ``op`` of this script with ``python`` in a fresh process; return its JSON result."""
    proc = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--child", op, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise SideFailed(f"child {op} ({python}) exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def file_digest(path: Path) -> str:
    """Return the first 12 hex digits of the sha256 of ``path``."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load() -> float:
    """Return the 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


# -------------------------------------------------------------------------------------------
# Processes: the server's tree, its memory, how it is stopped.
# -------------------------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, int]]:
    """Return ``{pid: (ppid, start time in clock ticks)}`` of every process."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            table[int(entry)] = (int(fields[1]), int(fields[19]))
        except (OSError, ValueError, IndexError):
            continue
    return table


def tree(root: int) -> dict[int, int]:
    """Return ``{pid: start time}`` of ``root`` and every live descendant.

    BentoML's process manager starts its workers in sessions of their own, so the tree is
    walked by parent PID, not by process group.
    """
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out[pid] = table[pid][1]
        todo.extend(children.get(pid, []))
    return out


def tree_memory(root: int) -> dict[str, Any]:
    """Return the RSS (and PSS) in MB of ``root``'s process tree, and its process count."""
    rss = pss = 0
    pids = tree(root)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                rss += next((int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")), 0)
            with open(f"/proc/{pid}/smaps_rollup") as f:
                pss += next((int(ln.split()[1]) for ln in f if ln.startswith("Pss:")), 0)
        except OSError:
            continue
    return {"rss_mb": round(rss / 1024, 1), "pss_mb": round(pss / 1024, 1), "procs": len(pids)}


def _alive(pid: int, start: int) -> bool:
    """Whether ``pid`` still runs and is the process that started at ``start`` (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[19]) == start


def request(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 30.0
) -> tuple[int, bytes]:
    """Send one request to the server on ``port``; return its status and body."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


#: Servers running now, stopped on the way out whatever happens.
LIVE: set[Server] = set()


@dataclass(eq=False)
class Server:
    """How one server runs: its command, environment, routes and request bodies."""

    name: str
    argv: Callable[[int], list[str]]
    env: dict[str, str]
    cwd: Path
    health: str
    predict: str
    wrap: Callable[[list[list[float]]], Any]
    bodies: dict[str, Path] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    log_path: Path | None = None

    def url(self, path: str) -> str:
        """Return the URL of ``path`` on this server."""
        return f"http://{HOST}:{self.port}{path}"

    def command(self) -> str:
        """Return the command line, with the port as ``PORT`` and venvs by name."""
        words = []
        for word in self.argv(0):
            p = Path(word)
            words.append(p.name if p.is_absolute() and p.exists() else word)
        return " ".join(words).replace("--port 0", "--port PORT").replace("-p 0", "-p PORT")

    def start(self, logdir: Path, tag: str) -> float:
        """Spawn the server on a free port; return the seconds until its health route is 200."""
        self.port = free_port()
        self.log_path = logdir / f"{self.name}-{tag}.log"
        with open(self.log_path, "wb") as out:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv(self.port),
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group of its own: stopped as a whole
            )
        LIVE.add(self)
        deadline = t0 + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise SideFailed(
                    f"{self.name} exited {self.proc.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            try:
                status, _ = request(self.port, "GET", self.health, timeout=2)
            except (OSError, http.client.HTTPException):
                status = 0
            if status == 200:
                return time.perf_counter() - t0
            if time.perf_counter() > deadline:
                raise SideFailed(f"{self.name} not ready after {READY_TIMEOUT_S:.0f} s")
            time.sleep(POLL_S)

    def log_tail(self, chars: int = 3000) -> str:
        """Return the end of the server's log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> float:
        """Stop the server's process group, then any descendant left; return the seconds."""
        proc = self.proc
        if proc is None:
            return 0.0
        t0 = time.perf_counter()
        known = tree(proc.pid)  # before signalling: descendants in sessions of their own too
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=STOP_TIMEOUT_S)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            log(f"{self.name} did not stop in {STOP_TIMEOUT_S:.0f} s: SIGKILL")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        seconds = time.perf_counter() - t0
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline and any(_alive(p, s) for p, s in known.items()):
            time.sleep(0.1)
        for pid, start in known.items():  # only the processes this server started
            if _alive(pid, start):
                log(f"{self.name}: SIGKILL to {pid}, left after the group was stopped")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.proc = None
        LIVE.discard(self)
        return seconds


def stop_all() -> None:
    """Stop every server still running."""
    for server in list(LIVE):
        try:
            server.stop()
        except Exception as exc:  # noqa: BLE001 - keep stopping the others
            log(f"could not stop {server.name}: {exc}")


# -------------------------------------------------------------------------------------------
# Load.
# -------------------------------------------------------------------------------------------


def wrk(
    url: str, body: Path, concurrency: int, duration: int, cap: int, lua: Path
) -> dict[str, Any]:
    """Run the peers' wrk script against ``url``; return its JSON line (and the command)."""
    argv = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{duration}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(lua),
        url,
        "--",
        str(body),
        str(cap),
    ]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SideFailed(f"wrk did not finish in {duration + 60} s") from exc
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SideFailed(f"wrk printed no result (exit {proc.returncode}): {proc.stderr[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    errors = sum(result.get(k, 0) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    result["errors"] = errors + result.get("err_status", 0)
    result["hit_cap"] = result["requests"] >= cap
    return result


class Bench:
    """The run: the servers, the request rows, the scratch folder, what was measured."""

    def __init__(
        self, args: argparse.Namespace, scratch: Path, rows: dict[str, Any], reference: list[int]
    ) -> None:
        self.args = args
        self.scratch = scratch
        self.logs = scratch / "logs"
        self.logs.mkdir()
        self.rows = rows
        self.reference = reference
        self.servers: dict[str, Server] = {}
        self.failed: dict[str, str] = {}
        self.starts: dict[str, list[float]] = {}
        self.stops: dict[str, list[float]] = {}
        self.reps: dict[str, list[dict[str, Any]]] = {}
        self.facts: dict[str, dict[str, Any]] = {}

    def add(self, server: Server) -> None:
        """Add ``server`` and write its request bodies."""
        for body, rows in self.rows.items():
            path = self.scratch / f"{server.name}-{body}.json"
            path.write_text(json.dumps(server.wrap(rows)))
            server.bodies[body] = path
        self.servers[server.name] = server

    def order(self, rep: int) -> list[str]:
        """The servers still in the run, reversed every other rep."""
        names = [n for n in self.servers if n not in self.failed]
        return names if rep % 2 == 0 else names[::-1]

    def drop(self, name: str, exc: Exception) -> None:
        """Stop on a Conveyor failure; leave a failed peer out of the rest of the run."""
        server = self.servers[name]
        server.stop()
        if name in CONVEYOR_SERVERS:
            raise SystemExit(f"Conveyor failed ({name}): {exc}")
        log(f"{name} failed, left out of the rest of the run: {exc}")
        self.failed[name] = (str(exc).splitlines() or ["?"])[0]
        print(json.dumps({"bench": "error", "tool": name, "error": str(exc)[-3000:]}), flush=True)

    def measure_starts(self) -> None:
        """Start each server ``--starts`` times (a fresh process each); keep the ready times."""
        for i in range(self.args.starts):
            for name in self.order(i):
                server = self.servers[name]
                try:
                    ready = server.start(self.logs, f"start{i}")
                    self.stops.setdefault(name, []).append(server.stop())
                except SideFailed as exc:
                    self.drop(name, exc)
                    continue
                self.starts.setdefault(name, []).append(ready)
                log(f"  start {i + 1}/{self.args.starts} {name:<14} ready in {ready:.2f} s")

    def measure_load(self, rep: int, name: str) -> None:
        """One rep of ``name``: a fresh server, its idle memory, then every load point."""
        args = self.args
        server = self.servers[name]
        ready = server.start(self.logs, f"rep{rep}")
        facts: dict[str, Any] = {"ready_s": ready}
        t0 = time.perf_counter()
        status, body = request(
            server.port, "POST", server.predict, server.bodies["1row"].read_bytes()
        )
        facts["first_predict_ms"] = (time.perf_counter() - t0) * 1000
        if status != 200:
            raise SideFailed(f"{name}: first 1-row request answered {status}: {body[:300]!r}")
        time.sleep(0.5)
        facts["idle"] = tree_memory(server.proc.pid if server.proc else 0)
        if rep == 0:
            self.facts[name] = self.check(server)
        lua = args.peers_dir / "serve_wrk_post.lua"
        wrk(server.url(server.predict), server.bodies["1row"], 8, WARMUP_S, 10**6, lua)
        for body, conc in POINTS:
            time.sleep(0.5)
            cap = CAP_PER_S[body] * args.duration
            res = wrk(
                server.url(server.predict), server.bodies[body], conc, args.duration, cap, lua
            )
            facts[f"{body}.c{conc}"] = res
            flags = f", {res['errors']} errors" if res["errors"] else ""
            flags += ", hit the request cap" if res["hit_cap"] else ""
            log(
                f"  rep {rep + 1} {name:<14} {body:<8} c={conc:<2} {res['rps']:>9,.1f} req/s "
                f"p50 {res['p50_ms']:.3f} ms p99 {res['p99_ms']:.3f} ms{flags}"
            )
        facts["after_load"] = tree_memory(server.proc.pid if server.proc else 0)
        facts["stop_s"] = server.stop()
        self.reps.setdefault(name, []).append(facts)

    def check(self, server: Server) -> dict[str, Any]:
        """Send the 1,000 rows once; compare the predictions with the in-process model's."""
        status, body = request(
            server.port, "POST", server.predict, server.bodies["1000rows"].read_bytes()
        )
        if status != 200:
            raise SideFailed(f"{server.name}: 1,000-row request answered {status}: {body[:300]!r}")
        try:
            got = json.loads(body)
            values = [int(v) for v in (got["predictions"] if isinstance(got, dict) else got)]
        except (ValueError, KeyError, TypeError) as exc:
            raise SideFailed(f"{server.name}: no predictions in {body[:300]!r}") from exc
        mismatches = sum(a != b for a, b in zip(values, self.reference, strict=False))
        mismatches += abs(len(values) - len(self.reference))
        out: dict[str, Any] = {"predictions": len(values), "mismatches": mismatches}
        if server.name in CONVEYOR_SERVERS:
            status, ready = request(server.port, "GET", "/readyz")
            runtimes = json.loads(ready).get("runtimes", {})
            out["runtime"] = ",".join(sorted(set(runtimes.values()))) or None
        if mismatches:
            log(f"{server.name}: {mismatches} of the 1,000 predictions differ from the model's")
        return out

    def run_reps(self) -> list[float]:
        """Run the load reps, servers one at a time; return the load average at each rep."""
        loads = []
        for rep in range(self.args.reps):
            loads.append(load())
            log(f"load rep {rep + 1}/{self.args.reps} (load average {loads[-1]})")
            for name in self.order(rep):
                try:
                    self.measure_load(rep, name)
                except (SideFailed, OSError, http.client.HTTPException) as exc:
                    self.drop(name, exc if isinstance(exc, SideFailed) else SideFailed(str(exc)))
        return loads

    def emit(self, fig: Figures) -> None:
        """Emit every figure of every server measured (medians over the reps)."""
        for name in self.servers:
            reps = self.reps.get(name)
            if name in self.failed or not reps or name not in self.starts:
                continue
            for body, conc in POINTS:
                runs = [r[f"{body}.c{conc}"] for r in reps]
                ctx = {
                    "concurrency": conc,
                    "requests": [r["requests"] for r in runs],
                    "errors": sum(r["errors"] for r in runs),
                    "hit_cap": any(r["hit_cap"] for r in runs),
                }
                if body == "1000rows":
                    rows_s = [r["rps"] * 1000 for r in runs]
                    put(fig, f"{body}.c{conc}.rows_per_s", name, rows_s, "rows/s", **ctx)
                else:
                    put(fig, f"{body}.c{conc}.rps", name, [r["rps"] for r in runs], "req/s", **ctx)
                for q in ("p50", "p99"):
                    lat = [r[f"{q}_ms"] for r in runs]
                    put(fig, f"{body}.c{conc}.{q}", name, lat, "ms", concurrency=conc)
            put(
                fig,
                "ready",
                name,
                self.starts[name],
                "s",
                stop_s=round(median(self.stops[name]), 2),
                ready_in_load_reps=[round(r["ready_s"], 3) for r in reps],
                poll_s=POLL_S,
            )
            put(
                fig,
                "rss_idle",
                name,
                [r["idle"]["rss_mb"] for r in reps],
                "MB",
                pss_mb=median([r["idle"]["pss_mb"] for r in reps]),
                procs=reps[0]["idle"]["procs"],
                rss_after_load_mb=median([r["after_load"]["rss_mb"] for r in reps]),
                first_predict_ms=round(median([r["first_predict_ms"] for r in reps]), 2),
                **self.facts.get(name, {}),
            )
            put(fig, "rss_loaded", name, [r["after_load"]["rss_mb"] for r in reps], "MB")


def put(fig: Figures, bench: str, tool: str, values: list[float], unit: str, **ctx: Any) -> None:
    """Emit the median of ``values`` as ``tool``'s figure on ``bench``, with the samples."""
    samples = [float(f"{v:.4g}") for v in values]
    fig.emit(bench, tool, median(values), unit, reps=len(values), samples=samples, **ctx)


# -------------------------------------------------------------------------------------------
# Ratios and targets.
# -------------------------------------------------------------------------------------------

#: Every figure, whether higher is better, and its name in the docs.
FIGURES = (
    ("1row.c1.rps", True, "1 row, c=1: requests/s"),
    ("1row.c1.p50", False, "1 row, c=1: p50"),
    ("1row.c1.p99", False, "1 row, c=1: p99"),
    ("1row.c8.rps", True, "1 row, c=8: requests/s"),
    ("1row.c8.p50", False, "1 row, c=8: p50"),
    ("1row.c8.p99", False, "1 row, c=8: p99"),
    ("1row.c32.rps", True, "1 row, c=32: requests/s"),
    ("1row.c32.p50", False, "1 row, c=32: p50"),
    ("1row.c32.p99", False, "1 row, c=32: p99"),
    ("1000rows.c1.rows_per_s", True, "1,000 rows, c=1: rows/s"),
    ("1000rows.c1.p50", False, "1,000 rows, c=1: p50"),
    ("1000rows.c1.p99", False, "1,000 rows, c=1: p99"),
    ("ready", False, "spawn to ready"),
    ("rss_idle", False, "idle RSS, process tree"),
    ("rss_loaded", False, "RSS after the load, process tree"),
)
HIGHER_IS_BETTER = {bench: higher for bench, higher, _ in FIGURES}


def value(fig: Figures, bench: str, tool: str) -> float | None:
    """Return the figure of ``tool`` on ``bench``, or None."""
    row = fig.get(bench, tool)
    return None if row is None else float(row["value"])


def advantage(fig: Figures, bench: str, mine: str, peer: str) -> float | None:
    """How many times better ``mine`` is than ``peer`` on ``bench`` (above 1: better)."""
    a, b = value(fig, bench, mine), value(fig, bench, peer)
    if a is None or b is None or a == 0 or b == 0:
        return None
    return a / b if HIGHER_IS_BETTER[bench] else b / a


def per_rep(fig: Figures, bench: str, mine: str, peer: str, ratio: Callable[[float, float], float]):
    """Return the lowest and highest ratio of one rep's pair, or None with fewer than 2 reps."""
    a, b = fig.get(bench, mine), fig.get(bench, peer)
    if a is None or b is None or len(a["samples"]) < 2 or len(a["samples"]) != len(b["samples"]):
        return None
    got = sorted(ratio(x, y) for x, y in zip(a["samples"], b["samples"], strict=True) if x and y)
    return [round(got[0], 3), round(got[-1], 3)] if got else None


def print_ratios(fig: Figures, measured: Sequence[str]) -> None:
    """Print, per Conveyor server and peer, how many times better Conveyor is on each figure."""
    for mine in (s for s in CONVEYOR_SERVERS if s in measured):
        for peer in (s for s in measured if s not in CONVEYOR_SERVERS):
            got = {b: advantage(fig, b, mine, peer) for b, _, _ in FIGURES}
            rec = {
                "bench": "ratios",
                "tool": mine,
                "peer": peer,
                "definition": "how many times better Conveyor is (above 1: better): peer / "
                "Conveyor for times, memory and latencies, Conveyor / peer for throughputs",
                "ratios": {b: None if r is None else round(r, 3) for b, r in got.items()},
            }
            fig.ratios[f"{mine}:{peer}"] = rec
            print(json.dumps(rec), flush=True)


def compute_targets(fig: Figures) -> dict[str, dict[str, Any]]:
    """Work out every target of the issue; print each as a JSON line and all on a last one."""
    targets: dict[str, dict[str, Any]] = {}

    def record(key: str, got: float | None, unit: str, target: str, ok: bool, **ctx: Any) -> None:
        rec = {
            "bench": "target",
            "tool": key,
            "value": None if got is None else round(got, 3),
            "unit": unit,
            "target": target,
            "met": None if got is None else ok,
            **ctx,
        }
        targets[key] = rec
        print(json.dumps(rec), flush=True)

    def ratio(bench: str, mine: str, peer: str, *, inverse: bool = False) -> float | None:
        a, b = value(fig, bench, mine), value(fig, bench, peer)
        if a is None or b is None or not a or not b:
            return None
        return b / a if inverse else a / b

    r = ratio("1row.c32.rps", "conveyor", "mlflow")
    record(
        "c32_rps_vs_mlflow",
        r,
        "x",
        f">= {C32_RPS_VS_MLFLOW:g}x",
        r is not None and r >= C32_RPS_VS_MLFLOW,
        definition="Conveyor req/s / MLflow req/s, 1 row at concurrency 32",
        per_rep_range=per_rep(fig, "1row.c32.rps", "conveyor", "mlflow", lambda x, y: x / y),
    )
    p99 = value(fig, "1row.c32.p99", "conveyor")
    record("c32_p99_ms", p99, "ms", f"< {C32_P99_MS:g} ms", p99 is not None and p99 < C32_P99_MS)
    r = ratio("1row.c1.p50", "conveyor", "fastapi")
    record(
        "c1_p50_vs_fastapi",
        r,
        "x",
        f"<= {C1_P50_VS_FASTAPI:g}x",
        r is not None and r <= C1_P50_VS_FASTAPI,
        definition="Conveyor p50 / FastAPI floor p50, 1 row at concurrency 1",
        per_rep_range=per_rep(fig, "1row.c1.p50", "conveyor", "fastapi", lambda x, y: x / y),
    )
    p50 = value(fig, "1row.c1.p50", "conveyor-onnx")
    record(
        "onnx_c1_p50_ms",
        p50,
        "ms",
        f"< {ONNX_C1_P50_MS:g} ms",
        p50 is not None and p50 < ONNX_C1_P50_MS,
        runtime=(fig.get("rss_idle", "conveyor-onnx") or {}).get("runtime"),
    )
    r = ratio("1000rows.c1.rows_per_s", "conveyor", "mlflow")
    record(
        "rows1000_vs_mlflow",
        r,
        "x",
        f">= {ROWS_VS_MLFLOW:g}x",
        r is not None and r >= ROWS_VS_MLFLOW,
        definition="Conveyor rows/s / MLflow rows/s, 1,000 rows at concurrency 1",
        per_rep_range=per_rep(
            fig, "1000rows.c1.rows_per_s", "conveyor", "mlflow", lambda x, y: x / y
        ),
    )
    ready = value(fig, "ready", "conveyor")
    record(
        "ready_s",
        ready,
        "s",
        f"< {READY_S:g} s",
        ready is not None and ready < READY_S,
        onnx_ready_s=value(fig, "ready", "conveyor-onnx"),
    )
    details: dict[str, float | None] = {}
    for peer in ("bentoml", "bentoml-batch"):
        for bench, _, _ in FIGURES:
            details[f"{bench} vs {peer}"] = advantage(fig, bench, "conveyor", peer)
    known = {k: v for k, v in details.items() if v is not None}
    complete = len(known) == len(details)
    worst = min(known, key=lambda k: known[k]) if known else None
    record(
        "ahead_of_bentoml",
        None if not complete or worst is None else known[worst],
        "x",
        "> 1x on every figure, both modes",
        complete and all(v > 1 for v in known.values()),
        definition="the smallest of Conveyor's advantages over BentoML (with and without "
        "adaptive batching) across every figure; above 1: Conveyor is ahead on all",
        worst=worst,
        behind=sorted(k for k, v in known.items() if v <= 1),
        ratios={k: None if v is None else round(v, 3) for k, v in details.items()},
    )
    summary = {
        "bench": "targets",
        "met": sum(1 for t in targets.values() if t["met"]),
        "not_met": sorted(k for k, t in targets.items() if t["met"] is False),
        "not_measured": sorted(k for k, t in targets.items() if t["met"] is None),
        "targets": {
            k: {"value": t["value"], "unit": t["unit"], "target": t["target"], "met": t["met"]}
            for k, t in targets.items()
        },
    }
    print(json.dumps(summary), flush=True)
    return targets


# -------------------------------------------------------------------------------------------
# docs/benchmarks.md
# -------------------------------------------------------------------------------------------


def cell(row: dict[str, Any] | None) -> str:
    """Return a figure for a table cell: whole numbers above 100, else 3 significant digits."""
    if row is None:
        return "—"
    v, unit = float(row["value"]), row["unit"]
    text = f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
    flag = " (errors)" if row.get("errors") else ""
    return f"{text} {unit}{flag}"


def fill(text: str) -> str:
    """Wrap ``text`` at 100 columns, never inside a word or at a hyphen."""
    return textwrap.fill(text, 100, break_on_hyphens=False, break_long_words=False)


def describe(key: str) -> str:
    """Return ``"BENCH vs PEER"`` (a key of the BentoML target's ratios) in words."""
    bench, _, peer = key.partition(" vs ")
    label = next((lab for b, _, lab in FIGURES if b == bench), bench)
    return f"{label}, against {LABELS.get(peer, peer)}"


def render_section(
    fig: Figures, targets: dict[str, dict[str, Any]], meta: dict[str, Any], measured: list[str]
) -> str:
    """Return the Serving section (between its markers) as markdown."""
    versions = meta["versions"]

    def header(name: str) -> str:
        tool = name.split("-")[0]
        v = (versions.get(tool) or {}).get(tool)
        return {
            "conveyor": f"Conveyor {v}",
            "conveyor-onnx": "Conveyor `--optimize onnx`",
            "mlflow": f"MLflow {v}",
            "bentoml": f"BentoML {v}",
            "bentoml-batch": f"BentoML {v}, adaptive batching",
            "fastapi": f"FastAPI {v} floor",
        }[name]

    table = [
        "| figure | " + " | ".join(header(s) for s in measured) + " |",
        "| --- " * (len(measured) + 1) + "|",
        *(
            f"| {label} | " + " | ".join(cell(fig.get(bench, s)) for s in measured) + " |"
            for bench, _, label in FIGURES
        ),
    ]
    peers = [s for s in measured if s not in CONVEYOR_SERVERS]
    mine = [s for s in CONVEYOR_SERVERS if s in measured]

    def adv(bench: str, conveyor: str, peer: str) -> str:
        r = advantage(fig, bench, conveyor, peer)
        return "—" if r is None else (f"**{r:.2f}x**" if r <= 1 else f"{r:.2f}x")

    ratio_table = [
        "| figure | "
        + " | ".join(f"{LABELS[m]} vs {LABELS[p]}" for m in mine for p in peers)
        + " |",
        "| --- " * (len(mine) * len(peers) + 1) + "|",
        *(
            f"| {label} | " + " | ".join(adv(bench, m, p) for m in mine for p in peers) + " |"
            for bench, _, label in FIGURES
        ),
    ]
    names = {
        "c32_rps_vs_mlflow": "1 row, c=32: Conveyor req/s / MLflow req/s",
        "c32_p99_ms": "1 row, c=32: Conveyor p99",
        "c1_p50_vs_fastapi": "1 row, c=1: Conveyor p50 / FastAPI floor p50",
        "onnx_c1_p50_ms": "1 row, c=1: Conveyor `--optimize onnx` p50",
        "rows1000_vs_mlflow": "1,000 rows, c=1: Conveyor rows/s / MLflow rows/s",
        "ready_s": "Conveyor: spawn to ready",
        "ahead_of_bentoml": "ahead of BentoML (both modes) on every figure: smallest advantage",
    }

    def measured_cell(rec: dict[str, Any]) -> str:
        if rec["value"] is None:
            return "not measured"
        unit = "x" if rec["unit"] == "x" else f" {rec['unit']}"
        text = f"**{rec['value']:,.3g}{unit}**"
        if rec.get("per_rep_range"):
            low, high = rec["per_rep_range"]
            text += f" ({low:.3g} to {high:.3g})"
        if rec["tool"] == "ahead_of_bentoml" and rec.get("worst"):
            text += f" ({describe(rec['worst'])})"
        return text

    def met(rec: dict[str, Any]) -> str:
        return "—" if rec["met"] is None else ("yes" if rec["met"] else "**no**")

    target_rows = [
        f"| {names[k]} | {measured_cell(rec)} | {rec['target']} | {met(rec)} |"
        for k, rec in targets.items()
    ]
    behind = targets.get("ahead_of_bentoml", {}).get("behind") or []
    facts = {s: fig.get("rss_idle", s) or {} for s in measured}
    procs = "; ".join(f"{LABELS[s]} {facts[s].get('procs', '—')}" for s in measured)
    checks = "; ".join(
        f"{LABELS[s]} {facts[s].get('mismatches', '—')}" for s in measured if facts[s]
    )
    pss = "; ".join(f"{LABELS[s]} {facts[s].get('pss_mb', '—')} MB" for s in measured)
    missing = "".join(f"{LABELS[s]} did not run: {why}. " for s, why in meta["failed"].items())
    tools = {
        "conveyor": ("Conveyor", "conveyor", ("scikit-learn", "onnxruntime", "uvicorn")),
        "mlflow": ("MLflow", "mlflow", ("scikit-learn", "uvicorn")),
        "bentoml": ("BentoML", "bentoml", ("scikit-learn", "uvicorn")),
        "fastapi": ("FastAPI", "fastapi", ("uvicorn", "uvloop", "httptools", "scikit-learn")),
    }
    stack = []
    for tool, (label, dist, deps) in tools.items():
        v = versions.get(tool)
        if v and any(s.split("-")[0] == tool for s in measured):
            inner = ", ".join(f"{d} {v.get(d)}" for d in deps if v.get(d))
            stack.append(f"{label} {v.get(dist)} ({inner})")
    intro = (
        "One scikit-learn `RandomForestClassifier(n_estimators=100, random_state=0)` fitted on "
        "`load_breast_cancer()` (569 rows x 30 features), served over HTTP by every server in "
        "the same run, one server at a time. Conveyor: the model logged into a fresh project "
        "(`cv.models.log`, alias `champion`) and served by `conveyor serve rf@champion` with "
        "its defaults (validation, request batching and the prediction log on), and again with "
        "`--optimize onnx` (onnxruntime). MLflow: `mlflow models serve --env-manager local` of "
        "the model saved by `mlflow.sklearn.save_model` (skops, with a signature). BentoML: "
        "the services of `shared/bench/peers/serve_bentoml_service.py`, one `predict` per "
        "request and with adaptive batching. The floor: a minimal hand-written FastAPI endpoint "
        "(`serve_fastapi_app.py`, uvicorn, one worker, pydantic-validated rows). Each server "
        "gets the same rows in its own body format; load from `wrk -t1 --latency` with the "
        f"peers' `serve_wrk_post.lua`, {meta['duration']} s per point, closed loop at the "
        "given number of connections. Start-up: spawn to the first 200 of the readiness route "
        f"(`/readyz`, MLflow `/ping`), polled every {POLL_S * 1000:.0f} ms, median of "
        f"{meta['starts']} fresh starts; idle RSS: the server's whole process tree half a "
        "second after one request (before Conveyor's first prediction-log write, which loads "
        "pandas through pyarrow); RSS after the load: the same after the last load point. "
        f"Load figures: medians of {meta['reps']} rep(s), each a fresh server process. "
        f"Measured {meta['date']} on {meta['machine']}: absolute figures are noisy; the "
        "ratios, taken in one run, are what count."
    )
    onnx_runtime = facts.get("conveyor-onnx", {}).get("runtime")
    notes = (
        f"Notes: {'; '.join(stack)}; {meta['wrk']}. Each peer runs in its own venv under "
        "`.bench/venvs/`. Processes per server tree: "
        f"{procs}; their PSS (shared pages split between them): {pss}. Predictions of the "
        f"1,000 rows that differ from the in-process model's: {checks}. "
        + (
            f"Conveyor `--optimize onnx` served with runtime `{onnx_runtime}`. "
            if onnx_runtime
            else ""
        )
        + (
            f"Figures where Conveyor is not ahead of BentoML: {'; '.join(map(describe, behind))}. "
            if behind
            else ""
        )
        + f"{missing}Load average {meta['load_start']} at the start, {meta['load_end']} at the "
        f"end (at the start of each rep: {meta['loads']})."
    )
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        TITLE,
        "",
        fill(intro),
        "",
        "| target (from issue 8) | measured (per-rep range) | target | met |",
        "| --- | --- | --- | --- |",
        *target_rows,
        "",
        *table,
        "",
        fill(
            "How many times better Conveyor is than each peer, figure by figure (throughputs: "
            "Conveyor / peer; latencies, start-up and memory: peer / Conveyor; in bold where "
            "Conveyor is not ahead):",
        ),
        "",
        *ratio_table,
        "",
        fill(notes),
        "",
        fill(
            "Reproduce from the repository root (installs FastAPI, BentoML and MLflow into "
            "`.bench/venvs/<name>` on first use; runs the peers' files from "
            "`shared/bench/peers`, or `--peers-dir`; needs `wrk`):",
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
    """Parse the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per load point (10)")
    ap.add_argument("--reps", type=int, default=1, help="load reps per server, median (1)")
    ap.add_argument("--starts", type=int, default=3, help="timed starts per server, median (3)")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated servers to run, among "
        f"{','.join(SERVERS)}; a prefix takes its variants (conveyor: both Conveyor servers)",
    )
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: --duration 2 --reps 1 --starts 1"
    )
    ap.add_argument(
        "--no-docs", action="store_true", help="leave the Serving section of the docs as it is"
    )
    ap.add_argument("--docs-file", type=Path, default=DOCS, help="the docs file to write")
    ap.add_argument("--peers-dir", type=Path, default=PEERS_DIR, help="the peers' scripts")
    ap.add_argument("--venvs", type=Path, default=VENVS, help="folder of the peers' venvs")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.reps, args.starts = 2, 1, 1
    if min(args.duration, args.reps, args.starts) < 1:
        ap.error("--duration, --reps and --starts must be at least 1")
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in wanted if not any(s == w or s.startswith(f"{w}-") for s in SERVERS)]
    if unknown:
        ap.error(f"unknown servers {unknown}; choose among {', '.join(SERVERS)}")
    args.servers = [
        s for s in SERVERS if not wanted or any(s == w or s.startswith(f"{w}-") for w in wanted)
    ]
    return args


def estimate_minutes(args: argparse.Namespace, n: int) -> float:
    """Rough minutes of a run (installs excluded): loads, starts and the gaps between them."""
    per_rep = len(POINTS) * (args.duration + 0.5) + WARMUP_S + 8  # + start, checks, stop
    return n * (args.reps * per_rep + args.starts * 6) / 60


def check_pins(peers_dir: Path) -> None:
    """Warn when ``serve_bench.py`` pins other versions than this script installs."""
    text = (peers_dir / "serve_bench.py").read_text()
    for specs in PEER_SPECS.values():
        for spec in specs:
            if f'"{spec}"' not in text:
                log(f"warning: serve_bench.py no longer pins {spec}")


def make_servers(
    args: argparse.Namespace,
    scratch: Path,
    pythons: dict[str, Path],
    model_dir: Path,
    cols: list[str],
) -> list[Server]:
    """Return the servers of the run, in table order."""
    env = child_env()
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing written into the peers' folder
    cli = Path(sys.executable).parent / "conveyor"
    cv_env = dict(env, CONVEYOR_ROOT=str(scratch / "conveyor"), CONVEYOR_PROJECT=PROJECT)
    model = str(model_dir / "model.joblib")
    peer_env = dict(env, ANCHOR_MODEL_PATH=model)
    bento_env = dict(
        peer_env, BENTOML_HOME=str(scratch / "bentoml_home"), BENTOML_DO_NOT_TRACK="true"
    )
    out: list[Server] = []
    for name in args.servers:
        if name in CONVEYOR_SERVERS:
            extra = ["--optimize", "onnx"] if name == "conveyor-onnx" else []

            def argv(port: int, extra: list[str] = extra) -> list[str]:
                base = [str(cli), "serve", f"{MODEL}@{ALIAS}", "--host", HOST]
                return [*base, "--port", str(port), *extra]

            server = Server(
                name,
                argv,
                cv_env,
                scratch / "conveyor",
                "/readyz",
                f"/v1/models/{MODEL}/predict",
                lambda rows: {"columns": cols, "data": rows},
            )
        elif name == "mlflow":
            bin_dir = pythons["mlflow"].parent
            mlflow_model = str(scratch / "mlflow_model")

            def argv(port: int, bin_dir: Path = bin_dir, path: str = mlflow_model) -> list[str]:
                cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", path]
                return [*cmd, "--env-manager", "local", "-h", HOST, "-p", str(port)]

            # `--env-manager local` runs uvicorn found on PATH: the venv's bin first
            ml_env = dict(env, PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
            server = Server(
                name,
                argv,
                ml_env,
                scratch,
                "/ping",
                "/invocations",
                lambda rows: {"dataframe_split": {"columns": cols, "data": rows}},
            )
        elif name.startswith("bentoml"):
            service = "RFBatch" if name == "bentoml-batch" else "RF"
            bento = str(pythons["bentoml"].parent / "bentoml")

            def argv(port: int, bento: str = bento, service: str = service) -> list[str]:
                cmd = [bento, "serve", f"serve_bentoml_service:{service}"]
                return [*cmd, "--host", HOST, "--port", str(port)]

            server = Server(
                name, argv, bento_env, args.peers_dir, "/readyz", "/predict", lambda r: {"rows": r}
            )
        else:
            uvicorn = str(pythons["fastapi"].parent / "uvicorn")

            def argv(port: int, uvicorn: str = uvicorn) -> list[str]:
                cmd = [uvicorn, "serve_fastapi_app:app", "--host", HOST, "--port", str(port)]
                return [*cmd, "--workers", "1", "--log-level", "warning"]

            server = Server(
                name, argv, peer_env, args.peers_dir, "/healthz", "/predict", lambda r: r
            )
        out.append(server)
    return out


def prepare_model_data(args: argparse.Namespace, python: Path, env: dict[str, str]) -> Path:
    """Run ``serve_make_model.py`` once with ``python`` (reused while its inputs stay the same)."""
    digest = file_digest(args.peers_dir / "serve_make_model.py")
    folder = WORK_ROOT / "model"
    stamp = folder / f".made-{digest}-{python.parent.parent.name}"
    if not stamp.exists():
        shutil.rmtree(folder, ignore_errors=True)
        log(f"training the shared model with serve_make_model.py ({python})")
        subprocess.run(
            [str(python), str(args.peers_dir / "serve_make_model.py"), str(folder)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        stamp.touch()
    return folder


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
    """Serve the model with every server, load each in turn, report figures and targets."""
    if argv[:1] == ["--child"]:
        run_child(argv[1], argv[2:])
        return 0
    args = parse_args(argv)
    absent = [f for f in PEER_FILES if not (args.peers_dir / f).is_file()]
    if absent:
        raise SystemExit(f"{', '.join(absent)} not found in {args.peers_dir} (--peers-dir)")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not on the PATH (Debian: apt-get install wrk)")
    check_pins(args.peers_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    package = REPO / "src" / "conveyor"
    if package.is_dir():  # an editable install: compile once, as a wheel install would
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    env = child_env()
    env["SERVING_BENCH_PEERS"] = str(args.peers_dir)
    pythons: dict[str, Path] = {"conveyor": Path(sys.executable)}
    failed: dict[str, str] = {}
    wanted_venvs = {"fastapi" if s == "fastapi" else s.split("-")[0] for s in args.servers}
    for tool in ("fastapi", "bentoml", "mlflow"):
        if tool not in wanted_venvs:
            continue
        try:
            if tool == "mlflow":
                pythons[tool] = ensure_mlflow_venv(args.venvs / "mlflow")
            else:
                pythons[tool] = ensure_peer_venv(args.venvs / tool, PEER_SPECS[tool], tool)
        except (subprocess.CalledProcessError, OSError) as exc:
            log(f"{tool} could not be installed, left out: {exc}")
            for s in [s for s in args.servers if s.split("-")[0] == tool]:
                failed[s] = f"did not install ({exc})"
                args.servers.remove(s)
    # serve_make_model.py runs where serve_bench.py runs it (the FastAPI venv) when it is there
    made_by = [args.venvs / name / "bin" / "python" for name in ("fastapi", "bentoml")]
    maker = next((py for py in made_by if py.exists()), pythons["conveyor"])
    model_dir = prepare_model_data(args, maker, env)
    rows = {
        "1row": json.loads((model_dir / "row1.json").read_text()),
        "1000rows": json.loads((model_dir / "rows1000.json").read_text()),
    }
    if len(rows["1row"][0]) != N_FEATURES or len(rows["1000rows"]) != 1000:
        raise SystemExit(f"unexpected rows in {model_dir}")

    dists = {
        "conveyor": ("conveyor-mlops", "scikit-learn", "numpy", "onnxruntime", "uvicorn",
                     "fastapi"),
        "fastapi": ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pydantic",
                    "orjson", "scikit-learn", "numpy"),
        "bentoml": ("bentoml", "starlette", "uvicorn", "pydantic", "scikit-learn", "numpy"),
        "mlflow": ("mlflow", "fastapi", "uvicorn", "scikit-learn", "numpy", "skops"),
    }  # fmt: skip
    versions: dict[str, dict[str, Any]] = {}
    for tool, python in pythons.items():
        versions[tool] = child(python, "versions", *dists[tool], env=env)
    versions["conveyor"]["conveyor"] = versions["conveyor"].pop("conveyor-mlops") or (
        subprocess.run(
            [sys.executable, "-c", "import conveyor; print(conveyor.__version__)"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
    )
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_line = (wrk_version.stdout + wrk_version.stderr).strip().splitlines()[0].split(" [")[0]
    load_start = load()
    info = {
        "bench": "info",
        "servers": args.servers,
        "not_run": failed,
        "versions": versions,
        "wrk": wrk_line,
        "peer_files": {f: file_digest(args.peers_dir / f) for f in PEER_FILES},
        "cpus": os.cpu_count(),
        "loadavg_1m": load_start,
        "duration_s": args.duration,
        "reps": args.reps,
        "starts": args.starts,
    }
    print(json.dumps(info), flush=True)
    minutes = estimate_minutes(args, len(args.servers))
    log(f"servers: {', '.join(args.servers)}; about {minutes:.0f} min from here")

    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    scratch = WORK_ROOT / f"run-{os.getpid()}"
    scratch.mkdir()
    fig = Figures()
    try:
        joblib_file = model_dir / "model.joblib"
        made = child(
            pythons["conveyor"],
            "conveyor-model",
            scratch / "conveyor",
            model_dir / "rows1000.json",
            joblib_file if joblib_file.exists() else "-",
            env=env,
        )
        log(f"conveyor: model {MODEL} v{made['version']} logged in {made['log_s']:.2f} s")
        if made["same_as_peers_model"] is False:
            log("warning: Conveyor's model and serve_make_model.py's predict differently")
        if "mlflow" in args.servers:
            try:
                child(pythons["mlflow"], "mlflow-model", scratch / "mlflow_model", env=env)
            except SideFailed as exc:
                log(f"mlflow: could not save the model, left out: {exc}")
                failed["mlflow"] = "could not save the model"
                args.servers.remove("mlflow")
        bench = Bench(args, scratch, rows, made["predictions"])
        for server in make_servers(args, scratch, pythons, model_dir, made["columns"]):
            bench.add(server)
        bench.failed.update(failed)
        log(f"start-up: {args.starts} start(s) per server")
        bench.measure_starts()
        loads = bench.run_reps()
        bench.emit(fig)
    finally:
        stop_all()
        if args.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    measured = [s for s in SERVERS if fig.get("ready", s) is not None]
    print_ratios(fig, measured)
    targets = compute_targets(fig)
    for key, rec in targets.items():
        state = {True: "met", False: "NOT met", None: "not measured"}[rec["met"]]
        log(f"{key}: {rec['value']} {rec['unit']} (target {rec['target']}: {state})")
    load_end = load()
    if args.no_docs:
        return 0
    if args.only or args.quick:
        log("docs left unchanged: they take a run of every server, not --only or --quick")
        return 0
    if "conveyor" not in measured or len(measured) < 2:
        log("docs left unchanged: Conveyor and at least one peer are needed")
        return 0
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, shared with other work, noisy "
        f"({platform.machine()}, Linux, Python {versions['conveyor']['python']})",
        "duration": args.duration,
        "reps": args.reps,
        "starts": args.starts,
        "versions": versions,
        "wrk": wrk_line,
        "failed": bench.failed,
        "load_start": f"{load_start:.1f}",
        "load_end": f"{load_end:.1f}",
        "loads": ", ".join(f"{v:.1f}" for v in loads),
        "command": " ".join([".venv/bin/python", "bench/serving.py", *public_argv(argv)]),
    }
    update_docs(args.docs_file, SECTION, render_section(fig, targets, meta, measured))
    log(f"updated {args.docs_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
