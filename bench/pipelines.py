"""Pipelines benchmark: Conveyor's pipelines side by side with Prefect 3, ZenML and Metaflow.

Run from the repository root::

    .venv/bin/python bench/pipelines.py            # full run (3 reps), updates docs/benchmarks.md
    .venv/bin/python bench/pipelines.py --quick    # smoke run (2 reps), docs untouched
    .venv/bin/python bench/pipelines.py --quick --sides prefect,zenml,metaflow  # peers only

The workloads of the pipelines issue, each timed as a whole process (``time.perf_counter``
around ``subprocess.run``: spawn to exit, interpreter start-up and imports included), every
side in the same run:

* ``chain20``: a chain of 20 trivial steps, each returning ``x + 1`` to the next;
* ``fanout50``: 50 independent trivial steps (``i + 1``) and a join that sums them;
* ``chain20.cached``: the chain again, as a second process on the state that a first chain
  run, made just before and not timed, left behind: every step can come from a cache.

Every repetition of every workload starts in a fresh folder. Conveyor runs a small generated
file (``pipeline.py``, the ``cv.step`` / ``cv.pipeline`` API, written into that folder, which
is its workspace: ``cv.init(root=folder)``) with this interpreter, twice per workload: with
the default executor ``local`` (a pool of worker processes; the headline figure) and with
``inline`` (every step in the one process). Its store is created and migrated in that folder
first, not timed (``cv.init(root).open()``, as ``conveyor init`` does), as ZenML's
``zenml init`` and Prefect's pre-made home are not timed. Conveyor's own modules are compiled
to bytecode once before the runs (``compileall``), as a wheel install leaves them: the repo is
an editable install, and with ``PYTHONDONTWRITEBYTECODE`` set (it is here) every process
would otherwise compile them from source (~0.1 s), a cost the peers' installed wheels don't pay.
Conveyor caches by default: a first chain must execute its 20 steps and the re-run none (all
``CACHED``); the script checks both.

The peers run the flow files of ``shared/bench/peers`` (``--peers-dir``) unchanged, invoked as
``orch_bench.py`` there does, each installed on first use into its own venv under
``.bench/venvs/<peer>`` with the versions that script pins:

* Prefect 3.8.8 (with fastapi 0.154.0): ``orch_prefect_flow.py chain 20`` / ``fanout 50`` in
  the default local mode (a temporary API server in the process). Each run gets a fresh copy of
  a Prefect home whose database one ``chain 1`` run created and migrated beforehand (a run on
  an empty home pays ~5 s more, once per machine). Caching is opt-in: both runs of the cached
  pair pass ``--cache`` (``cache_policy=INPUTS + TASK_SOURCE, persist_result=True``).
* ZenML 0.98.0 (``zenml[local]``): ``orch_zenml_pipeline.py`` copied into the fresh folder,
  where ``zenml init`` ran first (not timed), with ``ZENML_CONFIG_PATH`` inside it; caching on,
  ZenML's default.
* Metaflow 2.19.39: the flows ``orch_metaflow_gen.py`` writes (``mf_chain20.py run``,
  ``mf_fanout50.py run``), local datastore and metadata. Metaflow has no cache: its re-run
  figure is ``resume end`` after a first ``run`` (the 21 earlier tasks are cloned from it and
  ``end`` runs again). It is shown, but not counted as the fastest peer of the cached target.

Each tool gets HOME and its state under the scratch folder, with telemetry off
(``DO_NOT_TRACK=1``, ``PREFECT_SERVER_ANALYTICS_ENABLED=false``,
``ZENML_ANALYTICS_OPT_IN=false``). Each process's CPU seconds (its own and those of the
descendants it waited for) are recorded too. Each figure is the median of ``--reps`` reps
(after one discarded warm-up chain per side in a full run); within a rep the sides run one
after the other, workload by workload, in an order reversed every other rep. Targets (ratio =
fastest peer's seconds / Conveyor's, above 1: Conveyor is faster): the chain and the cached
re-run at least 10x, the fan-out at least 5x. Each figure and ratio is printed as one JSON
line.

Only the standard library (and ``bench/_common.py``) is imported at the top.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    DOCS,
    REPO,
    Figures,
    child_env,
    fmt,
    log,
    median,
    samples,
    update_docs,
)

SECTION = "pipelines"
CHILD_TIMEOUT_S = 900
CHAIN_N = 20
FANOUT_N = 50
CHAIN_RESULT = CHAIN_N
FANOUT_RESULT = sum(i + 1 for i in range(FANOUT_N))
WORKLOADS = ("chain20", "fanout50", "chain20.cached")
TARGETS = {"chain20": 10.0, "fanout50": 5.0, "chain20.cached": 10.0}
PEERS_DIR = REPO.parent / "shared" / "bench" / "peers"
VENVS = REPO / ".bench" / "venvs"


@dataclass(frozen=True)
class Peer:
    """A peer: its pip requirements (as pinned by the shared scripts) and the files it runs."""

    label: str
    specs: tuple[str, ...]
    dist: str
    files: tuple[str, ...]


PEERS = {
    "prefect": Peer(
        "Prefect", ("prefect==3.8.8", "fastapi==0.154.0"), "prefect", ("orch_prefect_flow.py",)
    ),
    "zenml": Peer("ZenML", ("zenml[local]==0.98.0",), "zenml", ("orch_zenml_pipeline.py",)),
    "metaflow": Peer("Metaflow", ("metaflow==2.19.39",), "metaflow", ("orch_metaflow_gen.py",)),
}
#: Conveyor's sides and the executor each runs with.
CONVEYOR_SIDES = {"conveyor": "local", "conveyor-inline": "inline"}
ALL_SIDES = (*CONVEYOR_SIDES, *PEERS)
#: The peers with a cache: the fastest of these is the cached re-run's reference.
CACHE_PEERS = ("prefect", "zenml")
LABELS = {
    "conveyor": "Conveyor (`local`)",
    "conveyor-inline": "Conveyor (`inline`)",
    **{name: peer.label for name, peer in PEERS.items()},
}

#: Conveyor's side of the workload: ``python pipeline.py chain|fanout EXECUTOR ROOT``.
CONVEYOR_PIPELINE = '''\
"""Conveyor side of bench/pipelines.py: python pipeline.py chain|fanout EXECUTOR ROOT."""

import json
import sys
import time

t0 = time.perf_counter()
import conveyor as cv

import_s = time.perf_counter() - t0


@cv.step
def inc(x: int) -> int:
    return x + 1


@cv.pipeline(name="chain20")
def chain(n: int = 20):
    x = inc(0)
    for _ in range(n - 1):
        x = inc(x)
    return x


@cv.step
def work(i: int) -> int:
    return i + 1


@cv.step
def join(values: list[int]) -> int:
    return sum(values)


@cv.pipeline(name="fanout50")
def fanout(n: int = 50):
    return join([work(i) for i in range(n)])


if __name__ == "__main__":
    mode, executor, root = sys.argv[1:4]
    cv.init(root=root, project="bench")
    t1 = time.perf_counter()
    run = (chain if mode == "chain" else fanout).run(executor=executor)
    flow_s = time.perf_counter() - t1
    statuses = [str(s.status) for s in run.steps]
    out = {
        "tool": "conveyor",
        "mode": mode,
        "executor": executor,
        "status": str(run.status),
        "import_s": round(import_s, 3),
        "flow_s": [round(flow_s, 3)],
        "steps": len(statuses),
        "executed": [statuses.count("SUCCEEDED")],
        "cached": statuses.count("CACHED"),
        "other_statuses": sorted(set(statuses) - {"SUCCEEDED", "CACHED"}),
    }
    print("ORCH_JSON " + json.dumps(out), flush=True)
    if run.status != "SUCCEEDED":
        sys.exit(f"pipeline run ended {run.status}")
'''

# -------------------------------------------------------------------------------------------
# Processes.
# -------------------------------------------------------------------------------------------


class SideFailed(RuntimeError):
    """A side's process failed, or did not do what the workload asks."""


@dataclass
class Proc:
    """One finished child process: wall and CPU seconds, its output."""

    wall_s: float
    cpu_s: float
    stdout: str
    stderr: str

    def orch_json(self) -> dict[str, Any]:
        """Return the ``ORCH_JSON`` line the flow files print, parsed."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("ORCH_JSON "):
                result: dict[str, Any] = json.loads(line[len("ORCH_JSON ") :])
                return result
        raise SideFailed(f"no ORCH_JSON line in the output:\n{self.stdout[-1500:]}")


def spawn(argv: Sequence[object], cwd: Path, env: dict[str, str]) -> Proc:
    """Run ``argv`` to its exit; return its wall seconds (spawn to exit), CPU and output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SideFailed(f"{' '.join(map(str, argv[:4]))} timed out ({CHILD_TIMEOUT_S} s)") from exc
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SideFailed(
            f"{' '.join(map(str, argv[:5]))} exited {proc.returncode}\n"
            f"--- stdout (end)\n{proc.stdout[-2000:]}\n--- stderr (end)\n{proc.stderr[-4000:]}"
        )
    return Proc(wall, cpu, proc.stdout, proc.stderr)


def expect(ok: bool, side: str, message: str) -> None:
    """Fail the side when it did not do what the workload asks."""
    if not ok:
        raise SideFailed(f"{side}: {message}")


def base_env(home: Path) -> dict[str, str]:
    """The environment of every side: scratch HOME, no inherited tool settings, no telemetry."""
    drop = ("PREFECT_", "ZENML_", "METAFLOW_")
    env = {k: v for k, v in child_env().items() if not k.startswith(drop)}
    env.update(
        HOME=str(home),
        USER="bench",
        USERNAME="bench",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        ZENML_ANALYTICS_OPT_IN="false",
        METAFLOW_DEFAULT_DATASTORE="local",
        METAFLOW_DEFAULT_METADATA="local",
    )
    return env


# -------------------------------------------------------------------------------------------
# The sides.
# -------------------------------------------------------------------------------------------


class Bench:
    """The scratch layout and how each side runs each workload (checked, one process timed)."""

    def __init__(
        self, scratch: Path, pythons: dict[str, Path], peers_dir: Path, venvs: Path
    ) -> None:
        self.scratch = scratch
        self.python = dict(pythons)
        self.peers_dir = peers_dir
        self.zenml_cli = venvs / "zenml" / "bin" / "zenml"
        home = scratch / "home"
        home.mkdir()
        self.env = base_env(home)
        self.prefect_template = scratch / "prefect-home-template"
        self._dirs = 0

    def new_dir(self, label: str) -> Path:
        """Return a new empty folder under the scratch folder."""
        self._dirs += 1
        path = self.scratch / f"{self._dirs:03d}-{label}"
        path.mkdir()
        return path

    def measure(self, side: str, workload: str) -> dict[str, Any]:
        """Prepare a fresh folder, time ``side``'s process for ``workload``; return the facts."""
        if side in CONVEYOR_SIDES:
            return self.conveyor(side, workload)
        return {"prefect": self.prefect, "zenml": self.zenml, "metaflow": self.metaflow}[side](
            workload
        )

    @staticmethod
    def facts(
        proc: Proc, js: dict[str, Any] | None = None, more: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Return what a timed process tells: wall and CPU seconds, what its JSON line says."""
        out: dict[str, Any] = {"s": proc.wall_s, "cpu_s": proc.cpu_s, **(more or {})}
        if js is not None:
            out["import_s"] = js.get("import_s")
            out["flow_s"] = (js.get("flow_s") or [None])[0]
            out["executed"] = js["executed"][0]
        return out

    # -- Conveyor ------------------------------------------------------------------------

    def conveyor(self, side: str, workload: str) -> dict[str, Any]:
        executor = CONVEYOR_SIDES[side]
        work = self.new_dir(f"{side}-{workload}")
        (work / "pipeline.py").write_text(CONVEYOR_PIPELINE)
        mode = "fanout" if workload == "fanout50" else "chain"
        argv = [self.python["conveyor"], "pipeline.py", mode, executor, work]
        init = "import sys, conveyor as cv; cv.init(root=sys.argv[1], project='bench').open()"
        spawn([self.python["conveyor"], "-c", init, work], work, self.env)  # not timed
        if workload == "chain20.cached":
            first = spawn(argv, work, self.env).orch_json()  # not timed
            expect(
                first["executed"] == [CHAIN_N] and first["cached"] == 0,
                side,
                f"the first chain in a fresh workspace should execute {CHAIN_N} steps: {first}",
            )
        proc = spawn(argv, work, self.env)
        js = proc.orch_json()
        steps = FANOUT_N + 1 if mode == "fanout" else CHAIN_N
        expect(js["status"] == "SUCCEEDED", side, f"run status {js['status']}")
        expect(js["steps"] == steps, side, f"{js['steps']} step runs, expected {steps}: {js}")
        if workload == "chain20.cached":
            expect(
                js["cached"] == CHAIN_N and js["executed"] == [0],
                side,
                f"the re-run should take all {CHAIN_N} steps from the cache: {js}",
            )
        else:
            expect(
                js["executed"] == [steps] and js["cached"] == 0,
                side,
                f"a run in a fresh workspace should execute all {steps} steps: {js}",
            )
        return self.facts(proc, js, {"cached": js["cached"], "executor": executor})

    # -- Prefect -------------------------------------------------------------------------

    def setup_prefect(self) -> None:
        """Create and migrate a Prefect home once (not timed); each run starts from a copy."""
        env = dict(self.env, PREFECT_HOME=str(self.prefect_template))
        script = self.peers_dir / "orch_prefect_flow.py"
        proc = spawn([self.python["prefect"], script, "chain", "1"], self.scratch, env)
        log(f"prefect: home created and migrated in {proc.wall_s:.1f} s (not timed)")

    def prefect(self, workload: str) -> dict[str, Any]:
        work = self.new_dir(f"prefect-{workload}")
        home = work / "prefect_home"
        shutil.copytree(self.prefect_template, home)
        env = dict(self.env, PREFECT_HOME=str(home))
        script = self.peers_dir / "orch_prefect_flow.py"
        py = self.python["prefect"]
        if workload == "fanout50":
            argv = [py, script, "fanout", str(FANOUT_N)]
            executed, result = FANOUT_N + 1, FANOUT_RESULT
        else:
            argv = [py, script, "chain", str(CHAIN_N)]
            executed, result = CHAIN_N, CHAIN_RESULT
        if workload == "chain20.cached":
            argv.append("--cache")
            first = spawn(argv, work, env).orch_json()  # not timed
            expect(first["executed"] == [CHAIN_N], "prefect", f"first cached-mode run: {first}")
            executed = 0
        proc = spawn(argv, work, env)
        js = proc.orch_json()
        expect(js["executed"] == [executed], "prefect", f"expected {executed} executed: {js}")
        expect(js["result"] == result, "prefect", f"result {js['result']}, expected {result}")
        return self.facts(proc, js)

    # -- ZenML ---------------------------------------------------------------------------

    def zenml(self, workload: str) -> dict[str, Any]:
        work = self.new_dir(f"zenml-{workload}")
        shutil.copy(self.peers_dir / "orch_zenml_pipeline.py", work)
        env = dict(self.env, ZENML_CONFIG_PATH=str(work / "zenml_config"))
        spawn([self.zenml_cli, "init"], work, env)  # not timed
        py = self.python["zenml"]
        if workload == "fanout50":
            argv = [py, "orch_zenml_pipeline.py", "fanout", str(FANOUT_N)]
            executed = FANOUT_N + 1
        else:
            argv = [py, "orch_zenml_pipeline.py", "chain", str(CHAIN_N)]
            executed = CHAIN_N
        if workload == "chain20.cached":
            first = spawn(argv, work, env).orch_json()  # not timed
            expect(first["executed"] == [CHAIN_N], "zenml", f"first run: {first}")
            executed = 0
        proc = spawn(argv, work, env)
        js = proc.orch_json()
        expect(js["executed"] == [executed], "zenml", f"expected {executed} executed: {js}")
        return self.facts(proc, js)

    # -- Metaflow ------------------------------------------------------------------------

    def metaflow(self, workload: str) -> dict[str, Any]:
        work = self.new_dir(f"metaflow-{workload}")
        py = self.python["metaflow"]
        spawn([py, self.peers_dir / "orch_metaflow_gen.py", work], work, self.env)  # not timed
        if workload == "fanout50":
            argv = [py, f"mf_fanout{FANOUT_N}.py", "run"]
            tasks, result = FANOUT_N + 3, FANOUT_RESULT  # start, 50 x work, join, end
        else:
            argv = [py, f"mf_chain{CHAIN_N}.py", "run"]
            tasks, result = CHAIN_N + 2, CHAIN_RESULT  # start, s1..s20, end
        cloned = 0
        if workload == "chain20.cached":
            first = spawn(argv, work, self.env)  # not timed
            expect(self._result(first) == result, "metaflow", "first run: no RESULT line")
            argv[-1:] = ["resume", "end"]
            tasks, cloned = 1, CHAIN_N + 1
        proc = spawn(argv, work, self.env)
        out = proc.stdout + proc.stderr
        got: dict[str, Any] = {
            "tasks_started": out.count("Task is starting."),
            "tasks_cloned": out.count("Cloning previously run task"),
        }
        expect(self._result(proc) == result, "metaflow", f"RESULT {self._result(proc)}")
        expect(
            got == {"tasks_started": tasks, "tasks_cloned": cloned},
            "metaflow",
            f"expected {tasks} tasks started and {cloned} cloned: {got}",
        )
        if workload == "chain20.cached":
            got["how"] = "resume end (not a cache)"
        return self.facts(proc, more=got)

    @staticmethod
    def _result(proc: Proc) -> int | None:
        found = re.findall(r"\] RESULT (\d+)\s*$", proc.stdout + proc.stderr, re.M)
        return int(found[-1]) if found else None


# -------------------------------------------------------------------------------------------
# Environment, figures and ratios.
# -------------------------------------------------------------------------------------------


def ensure_peer_venv(name: str, venv: Path) -> Path:
    """Create ``venv`` with the peer installed (pinned) when it is missing; return its python."""
    peer = PEERS[name]
    python = venv / "bin" / "python"
    stamp = venv / f".installed-{','.join(peer.specs)}"
    if python.exists() and stamp.exists():
        return python
    if not python.exists():
        log(f"creating {venv} for the peer ({peer.label})")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    log(f"installing {' '.join(peer.specs)} into {venv} (takes a minute or two)")
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *peer.specs,
        ],
        check=True,
    )
    stamp.touch()
    return python


def version(python: Path, dist: str) -> tuple[str, str]:
    """Return the installed version of ``dist`` and the Python version of ``python``."""
    found = f"m.version({dist!r})" if dist != "conveyor" else "__import__('conveyor').__version__"
    code = f"import importlib.metadata as m, sys; print({found}, sys.version.split()[0])"
    proc = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, env=child_env()
    )
    mine, py = proc.stdout.split()
    return mine, py


def conveyor_has_pipelines(python: Path) -> str | None:
    """Return None when ``cv.step`` and ``cv.pipeline`` exist, else the error seen."""
    proc = subprocess.run(
        [str(python), "-c", "import conveyor as cv; cv.step; cv.pipeline"],
        capture_output=True,
        text=True,
        check=False,
        env=child_env(),
    )
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


def file_digest(path: Path) -> str:
    """Return the first 12 hex digits of the sha256 of ``path``."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load() -> float:
    """Return the 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def compare(
    fig: Figures,
    workload: str,
    mine: str,
    theirs: str,
    *,
    key: str | None = None,
    show: bool = True,
) -> dict[str, Any] | None:
    """Keep (and print, with ``show``) how many times faster ``mine`` is than ``theirs``."""
    a, b = fig.get(workload, mine), fig.get(workload, theirs)
    if a is None or b is None:
        return None
    value = float(b["value"]) / float(a["value"])
    per_rep = sorted(y / x for x, y in zip(a["samples"], b["samples"], strict=False))
    rec: dict[str, Any] = {
        "bench": workload,
        "tool": "ratio",
        "value": round(value, 3),
        "unit": "x",
        "conveyor": mine,
        "peer": theirs,
        "definition": f"{theirs} s / {mine} s (medians); above 1 means Conveyor is faster",
        "per_rep_range": [round(per_rep[0], 3), round(per_rep[-1], 3)],
    }
    fig.ratios[key or f"{workload}:{mine}:{theirs}"] = rec
    if show:
        print(json.dumps(rec), flush=True)
    return rec


def fastest_peer(fig: Figures, workload: str, peers: Sequence[str]) -> str | None:
    """Return the peer with the lowest median on ``workload`` (of those eligible), or None."""
    eligible = PEERS if workload != "chain20.cached" else CACHE_PEERS
    got = [(fig.get(workload, p), p) for p in peers if p in eligible]
    timed = [(float(row["value"]), p) for row, p in got if row is not None]
    return min(timed)[1] if timed else None


def ratios(fig: Figures, sides: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Print every ratio, then each target's (against the fastest peer); return the targets."""
    mine = [s for s in sides if s in CONVEYOR_SIDES]
    peers = [s for s in sides if s in PEERS]
    targets: dict[str, dict[str, Any]] = {}
    for workload in WORKLOADS:
        for side in mine:
            for peer in peers:
                compare(fig, workload, side, peer)
        fastest = fastest_peer(fig, workload, peers)
        if fastest is None:
            continue
        for side in mine:
            key = f"{workload}:{side}:fastest"
            rec = compare(fig, workload, side, fastest, key=key, show=False)
            if rec is None:
                continue
            rec.update(
                fastest_peer=fastest,
                target=f">= {TARGETS[workload]:g}x",
                met=rec["value"] >= TARGETS[workload],
            )
            print(json.dumps({**rec, "tool": "target"}), flush=True)
            targets[key] = rec
    return targets


def emit(fig: Figures, workload: str, side: str, reps: list[dict[str, Any]], **ctx: Any) -> None:
    """Emit the median wall seconds of ``side`` on ``workload``, with its context."""

    def column(name: str) -> list[Any]:
        return [r.get(name) for r in reps]

    def med(name: str) -> float | None:
        values = [v for v in column(name) if v is not None]
        return round(median(values), 3) if values else None

    walls = column("s")
    extra = {
        k: column(k)
        for k in ("executed", "cached", "tasks_started", "tasks_cloned")
        if any(v is not None for v in column(k))
    }
    fig.emit(
        workload,
        side,
        median(walls),
        "s",
        reps=len(reps),
        samples=samples(walls),
        cpu_s=med("cpu_s"),
        cpu_samples=samples(column("cpu_s")),
        import_s=med("import_s"),
        in_process_s=med("flow_s"),
        **extra,
        **({"how": reps[0]["how"]} if "how" in reps[0] else {}),
        **ctx,
    )


def run_reps(
    bench: Bench, fig: Figures, args: argparse.Namespace, sides: list[str], failed: dict[str, str]
) -> dict[str, Any]:
    """Run the reps (after a warm-up in a full run) and emit the figures; return facts."""
    if not args.quick:
        log("warm-up (discarded): one chain per side")
        for side in list(sides):
            try:
                bench.measure(side, "chain20")
            except SideFailed as exc:
                drop(side, exc, sides, failed)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    loads: list[float] = []
    for rep in range(args.reps):
        loads.append(load())
        log(f"rep {rep + 1}/{args.reps} (load average {loads[-1]})")
        for workload in WORKLOADS:
            order = list(sides) if rep % 2 == 0 else list(sides)[::-1]
            for side in order:
                if side not in sides:
                    continue
                try:
                    res = bench.measure(side, workload)
                except SideFailed as exc:
                    drop(side, exc, sides, failed)
                    continue
                results.setdefault((workload, side), []).append(res)
                extra = f", CPU {res['cpu_s']:.2f} s" if "cpu_s" in res else ""
                log(f"  {workload:<15} {side:<16} {res['s']:7.3f} s{extra}")
    for workload in WORKLOADS:
        for side in sides:
            emit(fig, workload, side, results[(workload, side)])
    return {"loads": loads}


def drop(side: str, exc: SideFailed, sides: list[str], failed: dict[str, str]) -> None:
    """Stop on a Conveyor failure; drop a failed peer from the run, keeping why."""
    if side in CONVEYOR_SIDES:
        raise SystemExit(f"Conveyor failed ({side}): {exc}")
    log(f"{side} failed, left out of the rest of the run: {exc}")
    reason = str(exc).splitlines()
    failed[side] = f"did not run: {reason[0] if reason else '?'}"
    print(json.dumps({"bench": "error", "tool": side, "error": str(exc)[-3000:]}), flush=True)
    sides.remove(side)


# -------------------------------------------------------------------------------------------
# docs/benchmarks.md
# -------------------------------------------------------------------------------------------

TITLE = "## Pipelines (bench/pipelines.py)"
REPRODUCE = (
    "Reproduce from the repository root (installs Prefect, ZenML and Metaflow into "
    "`.bench/venvs/<peer>` on first use; runs the peers' flow files from "
    "`shared/bench/peers`, or `--peers-dir`):"
)


def placeholder_section() -> str:
    """Return the section as it stands before a full run has written figures into it."""
    return "\n".join(
        [
            f"<!-- bench:{SECTION}:start -->",
            TITLE,
            "",
            textwrap.fill(
                "No figures yet. A chain of 20 trivial steps, a fan-out of 50 steps and a join, "
                "and a cached re-run of the chain, each as a whole process, against Prefect 3, "
                "ZenML and Metaflow; a full run of the script writes its figures here.",
                100,
            ),
            "",
            textwrap.fill(REPRODUCE, 100),
            "",
            "```",
            ".venv/bin/python bench/pipelines.py",
            "```",
            f"<!-- bench:{SECTION}:end -->",
        ]
    )


def render_section(fig: Figures, meta: dict[str, Any], targets: dict[str, Any]) -> str:
    """Return the Pipelines section (between its markers) as markdown."""
    get = fig.get
    sides = meta["sides"]
    peers = [s for s in sides if s in PEERS]
    mine = [s for s in sides if s in CONVEYOR_SIDES]
    versions = meta["versions"]

    def header(side: str) -> str:
        return LABELS[side] if side in CONVEYOR_SIDES else f"{LABELS[side]} {versions[side]}"

    def cell(workload: str, side: str) -> str:
        row = get(workload, side)
        if row is not None and workload == "chain20.cached" and side == "metaflow":
            return f"{fmt(row)} (`resume end`, not a cache)"
        return fmt(row)

    def cpu(workload: str, side: str) -> str:
        row = get(workload, side)
        return "—" if row is None or row.get("cpu_s") is None else f"{row['cpu_s']:,} s"

    def ratio(workload: str, side: str) -> str:
        r = targets.get(f"{workload}:{side}:fastest")
        if r is None:
            return "—"
        low, high = r["per_rep_range"]
        return f"**{r['value']:,.2f}x** ({low:,.2f} to {high:,.2f})"

    def met(workload: str) -> str:
        r = targets.get(f"{workload}:conveyor:fastest")
        return "—" if r is None else ("yes" if r["met"] else "**no**")

    names = {
        "chain20": f"chain of {CHAIN_N} steps",
        "fanout50": f"fan-out of {FANOUT_N} + join",
        "chain20.cached": "cached re-run of the chain",
    }
    fastest = {w: LABELS.get(fastest_peer(fig, w, peers) or "", "—") for w in WORKLOADS}
    table = [
        "| workload | "
        + " | ".join(header(s) for s in sides)
        + " | fastest peer | "
        + " | ".join(f"fastest peer / {LABELS[s]} (per-rep range)" for s in mine)
        + " | target | met (`local`) |",
        "| --- " * (len(sides) + len(mine) + 4) + "|",
        *(
            f"| {names[w]} | "
            + " | ".join(cell(w, s) for s in sides)
            + f" | {fastest[w]} | "
            + " | ".join(ratio(w, s) for s in mine)
            + f" | ≥ {TARGETS[w]:g}x | {met(w)} |"
            for w in WORKLOADS
        ),
    ]
    cpu_table = [
        "| workload | " + " | ".join(LABELS[s] for s in sides) + " |",
        "| --- " * (len(sides) + 1) + "|",
        *(f"| {names[w]} | " + " | ".join(cpu(w, s) for s in sides) + " |" for w in WORKLOADS),
    ]
    imports = ", ".join(
        f"{LABELS[s]} {row['import_s']} s"
        for s in sides
        if s != "conveyor-inline"
        and (row := get("chain20", s)) is not None
        and row.get("import_s") is not None
    )
    missing = "".join(f"{PEERS[p].label} {why}. " for p, why in meta["failed"].items())
    intro = (
        f"Whole-process wall time (spawn to exit: interpreter start-up and imports included) of "
        f"a chain of {CHAIN_N} trivial steps (each returns `x + 1` to the next), a fan-out of "
        f"{FANOUT_N} trivial steps (`i + 1`) and a join that sums them, and a second run of "
        "the chain where every step can come from a cache (a first run, made just before in "
        "the same folder, is not timed). Every repetition starts in a fresh folder. Conveyor "
        "runs a generated `pipeline.py` (`@cv.step`, `@cv.pipeline`, `cv.init(root=folder)`; "
        "its store is created and migrated first, not timed, as `zenml init` is not; its "
        "modules compiled to bytecode once, as a wheel install leaves them) with the default "
        "executor `local` "
        "(worker processes; the headline) and with `inline` (one process). The peers run the "
        "flow files of `shared/bench/peers` unchanged: Prefect (local mode, with the temporary "
        "API server each process starts; each run gets a copy of a Prefect home whose database "
        "was created and migrated beforehand; the cached pair opts in with "
        "`cache_policy=INPUTS + TASK_SOURCE, persist_result=True`), ZenML (local orchestrator, "
        "caching on by default; `zenml init` in each fresh folder first, not timed) and "
        "Metaflow (local datastore and metadata; it has no cache, so its re-run figure is "
        "`resume end`, which clones the 21 earlier tasks and runs `end` again: shown, but not "
        f"a candidate for the fastest peer there). Measured {meta['date']} on "
        f"{meta['machine']}: absolute figures are noisy, the ratios measured side by side are "
        "what count. Ratio: the fastest peer's seconds over Conveyor's (above 1: Conveyor is "
        "faster), from the medians; in brackets the lowest and highest ratio of one rep's "
        "pair. Targets are those of the pipelines issue, for the `local` executor."
    )
    notes = (
        f"Notes: medians of {meta['reps']} reps, after one discarded warm-up chain per side; "
        "within a rep the sides run one after the other, workload by workload, in an order "
        "reversed every other rep. The script checks what each run did: Conveyor's first runs "
        f"execute every step ({CHAIN_N} and {FANOUT_N + 1}) and its re-run takes all "
        f"{CHAIN_N} from the cache; Prefect and ZenML report the step bodies that ran "
        f"({CHAIN_N}, {FANOUT_N + 1}, then 0 on the re-run); Metaflow's runs print the "
        f"expected sums ({CHAIN_RESULT}, {FANOUT_RESULT}) and start {CHAIN_N + 2} and "
        f"{FANOUT_N + 3} tasks (its graphs add `start` and `end` steps; one process per task). "
        "Prefect's fan-out runs on its default thread pool, Metaflow's foreach on its default "
        "16 workers, and ZenML's local orchestrator runs steps one at a time. Every tool gets "
        "HOME and its state in a scratch folder, with telemetry off (`DO_NOT_TRACK=1`, "
        "`PREFECT_SERVER_ANALYTICS_ENABLED=false`, `ZENML_ANALYTICS_OPT_IN=false`). "
        f"`import` times measured inside the chain's processes: {imports}. {missing}"
        f"Load average {meta['load_start']} at the start, {meta['load_end']} at the end (at "
        f"the start of each rep: {meta['loads']})."
    )
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        TITLE,
        "",
        textwrap.fill(intro, 100),
        "",
        *table,
        "",
        "CPU seconds of each process and the descendants it waited for (medians):",
        "",
        *cpu_table,
        "",
        textwrap.fill(notes, 100),
        "",
        textwrap.fill(REPRODUCE, 100),
        "",
        "```",
        meta["command"],
        "```",
        f"<!-- bench:{SECTION}:end -->",
    ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line; ``--quick`` lowers the reps for a smoke run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, help="repetitions per figure (default 3; --quick: 2)")
    ap.add_argument("--quick", action="store_true", help="smoke run; docs are left unchanged")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument(
        "--sides",
        default=",".join(ALL_SIDES),
        help=f"comma-separated sides to run (default: {','.join(ALL_SIDES)})",
    )
    ap.add_argument(
        "--peers-dir", type=Path, default=PEERS_DIR, help="folder of the peers' flow files"
    )
    ap.add_argument("--venvs", type=Path, default=VENVS, help="folder of the peers' venvs")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 3)
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = set(args.sides) - set(ALL_SIDES)
    if unknown:
        ap.error(f"unknown sides {sorted(unknown)}; choose among {', '.join(ALL_SIDES)}")
    return args


def main(argv: Sequence[str]) -> int:
    """Run the pipeline workloads on Conveyor and its peers and report the figures."""
    args = parse_args(argv)
    sides: list[str] = list(args.sides)
    pythons: dict[str, Path] = {}
    failed: dict[str, str] = {}
    if any(s in CONVEYOR_SIDES for s in sides):
        missing = conveyor_has_pipelines(Path(sys.executable))
        if missing:
            raise SystemExit(
                f"Conveyor has no pipelines API here ({missing}). To measure the peers alone: "
                f"{sys.executable} bench/pipelines.py --quick --sides prefect,zenml,metaflow"
            )
        pythons["conveyor"] = Path(sys.executable)
        package = Path(__file__).resolve().parents[1] / "src" / "conveyor"
        if package.is_dir():  # an editable install: compile once, as a wheel install would
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    for peer in [s for s in sides if s in PEERS]:
        absent = [f for f in PEERS[peer].files if not (args.peers_dir / f).is_file()]
        if absent:
            raise SystemExit(f"{', '.join(absent)} not found in {args.peers_dir} (--peers-dir)")
        try:
            pythons[peer] = ensure_peer_venv(peer, args.venvs / peer)
        except (subprocess.CalledProcessError, OSError) as exc:
            log(f"{peer} could not be installed, left out: {exc}")
            failed[peer] = f"did not install ({exc})"
            sides.remove(peer)
    versions: dict[str, str] = {}
    python_versions: dict[str, str] = {}
    for side in sides:
        tool = "conveyor" if side in CONVEYOR_SIDES else side
        dist = "conveyor" if tool == "conveyor" else PEERS[tool].dist
        versions[side], python_versions[side] = version(pythons[tool], dist)
    load_start = load()
    info = {
        "bench": "info",
        "versions": versions,
        "python": python_versions,
        "peer_files": {
            f: file_digest(args.peers_dir / f) for p in sides if p in PEERS for f in PEERS[p].files
        },
        "not_run": failed,
        "cpus": os.cpu_count(),
        "loadavg_1m": load_start,
        "reps": args.reps,
    }
    print(json.dumps(info), flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-bench-pipelines-"))
    fig = Figures()
    try:
        bench = Bench(scratch, pythons, args.peers_dir, args.venvs)
        if "prefect" in sides:
            try:
                bench.setup_prefect()
            except SideFailed as exc:
                drop("prefect", exc, sides, failed)
        facts = run_reps(bench, fig, args, sides, failed)
    finally:
        if args.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    targets = ratios(fig, sides)
    for key, rec in targets.items():
        workload, side, _ = key.split(":")
        log(
            f"{workload}: {side} {rec['value']:.2f}x faster than {rec['fastest_peer']} "
            f"(target {rec['target']}: {'met' if rec['met'] else 'NOT met'})"
        )
    load_end = load()
    if args.quick or args.no_docs:
        log("docs/benchmarks.md left unchanged (--quick or --no-docs)")
        return 0
    if "conveyor" not in sides or not any(s in PEERS for s in sides):
        log("docs/benchmarks.md left unchanged: Conveyor and at least one peer are needed")
        return 0
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, shared with other work ({platform.machine()}, Linux, "
        f"Python {python_versions['conveyor']})",
        "reps": args.reps,
        "sides": sides,
        "versions": versions,
        "failed": failed,
        "load_start": f"{load_start:.1f}",
        "load_end": f"{load_end:.1f}",
        "loads": ", ".join(f"{v:.1f}" for v in facts["loads"]),
        "command": " ".join([".venv/bin/python", "bench/pipelines.py", *argv]),
    }
    update_docs(DOCS, SECTION, render_section(fig, meta, targets))
    log(f"updated {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
