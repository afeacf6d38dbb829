"""Model-registry benchmark: ``cv.models.log``/``load`` side by side with MLflow's sklearn flavor.

Run from the repository root::

    .venv/bin/python bench/models.py              # full run, updates docs/benchmarks.md
    .venv/bin/python bench/models.py --quick      # smoke run (2 reps), docs untouched
    .venv/bin/python bench/models.py --profile    # cProfile of Conveyor's log and load only

The workload of the model-registry issue: a scikit-learn
``RandomForestClassifier(n_estimators=100, random_state=0)`` fitted on
``load_breast_cancer(return_X_y=True, as_frame=True)``, logged with a 5-row input example and
loaded back. Conveyor: ``cv.models.log(model, "rf", input_example=X[:5])`` inside
``cv.start_run`` (the signature is inferred from the example), then
``cv.models.load(mv.ref)``. MLflow 3.17 (in ``.bench/venvs/mlflow``, installed on first use,
with the scikit-learn and skops of ``constraints.txt``), as in
``shared/bench/peers/mlflow_bench.py``: ``mlflow.sklearn.log_model(model, name="model",
signature=infer_signature(X, model.predict(X)), input_example=X[:5],
skops_trusted_types=["sklearn.tree._tree.Tree"])`` inside ``mlflow.start_run`` with its
defaults (pip requirements inferred) and with ``pip_requirements=["scikit-learn", "skops"]``;
then ``mlflow.sklearn.load_model`` and ``mlflow.pyfunc.load_model`` of the model URI. Both on a
SQLite store with local artifacts, in a fresh temporary folder.

Every timing is in process, after the imports the user writes (``import conveyor``,
``import mlflow``), after the model is fitted and after the store is opened (Conveyor:
``cv.init`` and ``cv.start_run``; MLflow: ``set_tracking_uri`` and ``set_experiment``), so
interpreter start-up, imports, migrations and fitting are excluded. Each rep runs one fresh
process per side and variant, the sides alternating rep by rep: a log process times its first
``log`` call, then ``--warm`` more (a new run each, starting at least 2.1 s after the previous
call ended, so skops' zip timestamps differ and no call can reuse the previous one's bytes);
a load process opens the store that rep's log process wrote, then times its first ``load``
(the imports it triggers included) and ``--warm`` more. Steady state is the median over reps
of each process's median warm call. Each figure is printed as one JSON line; ratio lines give
how many times faster Conveyor is (above 1: Conveyor is faster).

This file is also the child script (``python models.py --child OP ARGS...``). Only the standard
library (and ``bench/_common.py``) is imported at the top, so the MLflow venv can run it too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from _common import (
    DOCS,
    MLFLOW_VENV,
    REPO,
    Figures,
    Runner,
    elapsed,
    ensure_mlflow_venv,
    fmt,
    log,
    median,
    samples,
    section_footer,
    sqlite_uri,
    update_docs,
)

SECTION = "models"
CHILD_TIMEOUT_S = 900
MODEL_NAME = "rf"
EXPERIMENT = "bench"
EXAMPLE_ROWS = 5
#: MLflow 3.x saves scikit-learn models with skops and refuses a forest's tree type unless told.
SKOPS_TRUST = ["sklearn.tree._tree.Tree"]
EXPLICIT_REQUIREMENTS = ["scikit-learn", "skops"]
#: skops writes zip members with the current time at 2 s resolution: calls at least this far
#: apart store different bytes, so a content-addressed store cannot reuse the previous call's.
SPACING_S = 2.1
#: The packages MLflow's side must share with Conveyor's (same model, same file format).
PINNED = ("scikit-learn", "skops")
LOG_TARGET_S = 0.3
LOG_SIDES = ("conveyor", "mlflow", "mlflow-pip-reqs")
LOAD_SIDES = ("conveyor", "mlflow-sklearn", "mlflow-pyfunc")
#: Optional array libraries that scikit-learn's bundled ``array_api_compat`` imports when they
#: are installed. ``import skops.io`` walks every scikit-learn package (``all_estimators``), so
#: one of them installed on one side only (torch, in ``.venv`` through the dev extras) adds its
#: import time to that side's first call. Each side's processes are run with the ones the other
#: side lacks made unimportable (as if not installed); Conveyor is also measured as installed.
ARRAY_BACKENDS = ("torch", "cupy", "dask")
HIDE_ENV = "BENCH_HIDE_MODULES"
LABELS = {
    "conveyor": "Conveyor",
    "mlflow": "MLflow, defaults (requirements inferred)",
    "mlflow-pip-reqs": "MLflow, explicit `pip_requirements`",
    "mlflow-sklearn": "`mlflow.sklearn.load_model`",
    "mlflow-pyfunc": "`mlflow.pyfunc.load_model`",
}

# -------------------------------------------------------------------------------------------
# Child side: one process per measurement, result printed as one JSON object.
# -------------------------------------------------------------------------------------------


def train() -> tuple[Any, Any]:
    """Return the issue's random forest, fitted, and its data ``X`` (a DataFrame)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y), X


def data() -> Any:
    """Return the features the model was fitted on."""
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(return_X_y=True, as_frame=True)[0]


def predictions_digest(predictions: Any) -> str:
    """Return a short sha256 of predictions, the same for equal labels on either side."""
    import numpy as np

    return hashlib.sha256(np.asarray(predictions).astype("int64").tobytes()).hexdigest()[:16]


def _timed_calls(call: Callable[[], Any], count: int) -> tuple[list[float], list[Any]]:
    """Call ``call`` ``count`` times in a row; return the seconds of each call and its results."""
    times, results = [], []
    for _ in range(count):
        t0 = time.perf_counter()
        results.append(call())
        times.append(time.perf_counter() - t0)
    return times, results


def child_conveyor_log(work: str, warm: str) -> dict[str, Any]:
    """Log the forest ``1 + warm`` times with ``cv.models.log`` in a new run each; time each."""
    import conveyor as cv
    from conveyor.models.service import model_service
    from conveyor.store.artifacts.cas import key_of

    model, X = train()
    ws = cv.init(work, project="bench")
    example = X[:EXAMPLE_ROWS]

    def log_once() -> Any:
        with cv.start_run(experiment=EXPERIMENT):  # the store is created here, before timing
            t0 = time.perf_counter()
            mv = cv.models.log(model, MODEL_NAME, input_example=example)
            seconds = time.perf_counter() - t0
        return mv, seconds

    # The run is started outside the timed region, like MLflow's: only the log call counts.
    results = [log_once()]
    for _ in range(int(warm)):
        time.sleep(SPACING_S)  # log_once returns right after the call ends
        results.append(log_once())
    times = [s for _, s in results]
    versions = [mv for mv, _ in results]

    service = model_service(ws)
    documents = [service.document(v) for v in versions]
    model_digests = [digest for d in documents for digest, _ in d.files.values()]
    first = documents[0]
    objects = [digest for digest, _ in first.files.values()] + [versions[0].digest]
    if first.input_example is not None:
        objects.append(first.input_example[0])
    store = ws.artifacts
    local = getattr(store.backend, "local_path", None)

    def on_disk(digest: str) -> int:
        path = local(key_of(digest)) if local else None
        return path.stat().st_size if path is not None else store.size(digest)

    loaded = cv.models.load(versions[0].ref)
    expected = model.predict(X)
    return {
        "first_s": times[0],
        "warm_s": times[1:],
        "ref": versions[0].ref,
        "refs": [v.ref for v in versions],
        "signature_inferred": versions[0].signature is not None,
        "bytes": sum(on_disk(d) for d in objects),
        "files": sorted([*first.files, "input example (Parquet)", "model document (JSON)"]),
        "model_bytes_reused": len(model_digests) - len(set(model_digests)),
        "predictions": predictions_digest(expected),
        "roundtrip_ok": bool((loaded.predict(X) == expected).all()),
    }


def _mlflow(work: str, *submodules: str) -> Any:
    """Import ``mlflow`` (and ``mlflow.<submodule>``), quieten it, point it at ``work``."""
    import importlib
    import logging

    import mlflow

    for name in submodules:
        importlib.import_module(f"mlflow.{name}")

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(sqlite_uri(Path(work) / "mlflow.db"))
    return mlflow


def _local_dir(location: str) -> Path:
    """Return the local folder of an artifact location (a path or a ``file:`` URI)."""
    parsed = urlparse(location)
    return Path(unquote(parsed.path) if parsed.scheme == "file" else location)


def child_mlflow_log(work: str, variant: str, warm: str) -> dict[str, Any]:
    """Log the forest ``1 + warm`` times with ``mlflow.sklearn.log_model``; time each call."""
    mlflow = _mlflow(work, "sklearn", "models")
    infer_signature = mlflow.models.infer_signature

    model, X = train()
    mlflow.set_experiment(EXPERIMENT)  # the store is created and migrated here, before timing
    t0 = time.perf_counter()
    signature = infer_signature(X, model.predict(X))  # before the timed calls, as in the peer
    signature_s = time.perf_counter() - t0
    kwargs: dict[str, Any] = {
        "signature": signature,
        "input_example": X[:EXAMPLE_ROWS],
        "skops_trusted_types": SKOPS_TRUST,
    }
    if variant == "pip-reqs":
        kwargs["pip_requirements"] = EXPLICIT_REQUIREMENTS

    def log_once() -> tuple[Any, float]:
        with mlflow.start_run():
            t0 = time.perf_counter()
            info = mlflow.sklearn.log_model(model, name="model", **kwargs)
            seconds = time.perf_counter() - t0
        return info, seconds

    results = [log_once()]
    for _ in range(int(warm)):
        time.sleep(SPACING_S)  # the same spacing as Conveyor's side
        results.append(log_once())
    first = results[0][0]
    folder = _local_dir(mlflow.get_logged_model(first.model_id).artifact_location)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    expected = model.predict(X)
    loaded = mlflow.sklearn.load_model(first.model_uri)
    return {
        "first_s": results[0][1],
        "warm_s": [s for _, s in results[1:]],
        "uri": first.model_uri,
        "bytes": sum((folder / f).stat().st_size for f in files),
        "files": files,
        "requirements": (folder / "requirements.txt").read_text().split(),
        "infer_signature_s": signature_s,
        "predictions": predictions_digest(expected),
        "roundtrip_ok": bool((loaded.predict(X) == expected).all()),
    }


def child_mlflow_plain(work: str) -> dict[str, Any]:
    """Try the plain default call (no ``skops_trusted_types``) once; report what it does."""
    mlflow = _mlflow(work, "sklearn", "models")
    infer_signature = mlflow.models.infer_signature

    model, X = train()
    mlflow.set_experiment(EXPERIMENT)
    sig = infer_signature(X, model.predict(X))
    with mlflow.start_run():
        try:
            mlflow.sklearn.log_model(
                model, name="model", signature=sig, input_example=X[:EXAMPLE_ROWS]
            )
        except Exception as e:  # noqa: BLE001 - MLflow 3.17 + skops: the forest is "untrusted"
            return {"outcome": "error", "exception": type(e).__name__, "message": str(e)[:300]}
    return {"outcome": "ok"}


def child_conveyor_load(work: str, ref: str, warm: str) -> dict[str, Any]:
    """Open the store, then time ``cv.models.load(ref)`` ``1 + warm`` times in this process."""
    import conveyor as cv

    ws = cv.init(work, project="bench")
    open_s = elapsed(lambda: ws.project)  # opens the metadata store: not part of the load
    times, loaded = _timed_calls(lambda: cv.models.load(ref), 1 + int(warm))
    X = data()  # after the timed calls, so the first load pays for the imports it needs
    return {
        "first_s": times[0],
        "warm_s": times[1:],
        "open_s": open_s,
        "predictions": predictions_digest(loaded[-1].predict(X)),
    }


def child_mlflow_load(work: str, uri: str, api: str, warm: str) -> dict[str, Any]:
    """Open the store, then time ``mlflow.<api>.load_model(uri)`` ``1 + warm`` times."""
    mlflow = _mlflow(work, api)  # what the user imports: mlflow.sklearn or mlflow.pyfunc
    load_model = getattr(mlflow, api).load_model
    open_s = elapsed(lambda: mlflow.get_experiment_by_name(EXPERIMENT))
    times, loaded = _timed_calls(lambda: load_model(uri), 1 + int(warm))
    X = data()
    return {
        "first_s": times[0],
        "warm_s": times[1:],
        "open_s": open_s,
        "predictions": predictions_digest(loaded[-1].predict(X)),
    }


# -- profile (``--profile``): where Conveyor's time goes ---------------------------------------


def _bucket(filename: str, func: str) -> str:
    """Return the library a profiled function belongs to."""
    if filename == "~":
        return "builtins (C)"
    rel = filename.split("site-packages/", 1)[1] if "site-packages/" in filename else ""
    if "/src/conveyor/" in filename or rel.startswith("conveyor/"):
        return "conveyor"
    top = rel.split("/", 1)[0]
    if top:
        return top.removesuffix(".py")
    for name in ("json", "zipfile", "sqlite3", "importlib", "pickle", "hashlib"):
        if f"/{name}/" in filename or filename.endswith(f"/{name}.py"):
            return name
    return "stdlib"


def _profile(label: str, fn: Callable[[], Any], top: int = 12) -> dict[str, Any]:
    """Run ``fn`` under cProfile; return its self time by library and its hottest functions."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(fn)
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    rows = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in rows.values()) or 1.0
    buckets: dict[str, float] = {}
    for (filename, _, func), (_, _, tt, _, _) in rows.items():
        key = _bucket(filename, func)
        buckets[key] = buckets.get(key, 0.0) + tt

    def name(key: tuple[str, int, str]) -> str:
        filename, line, func = key
        where = filename.split("site-packages/")[-1].split("/src/")[-1]
        return f"{where}:{line}({func})" if filename != "~" else func

    by_self = sorted(rows.items(), key=lambda kv: -kv[1][2])[:top]
    ours = [kv for kv in rows.items() if _bucket(kv[0][0], kv[0][2]) == "conveyor"]
    by_cum = sorted(ours, key=lambda kv: -kv[1][3])[:top]
    return {
        "bench": f"profile.{label}",
        "wall_s": round(wall, 4),
        "self_time_by_library_pct": {
            k: round(v / total * 100, 1) for k, v in sorted(buckets.items(), key=lambda kv: -kv[1])
        },
        "hottest_self": [f"{name(k)} {v[2] * 1e3:.1f} ms" for k, v in by_self],
        "conveyor_cumulative": [f"{name(k)} {v[3] * 1e3:.1f} ms" for k, v in by_cum],
    }


def child_conveyor_profile(work: str) -> dict[str, Any]:
    """Profile a first and a warm ``log``, then a warm ``load``, in one process."""
    import conveyor as cv

    model, X = train()
    cv.init(work, project="bench")
    example = X[:EXAMPLE_ROWS]
    out, refs = [], []
    for label in ("log_first_call", "log_warm"):
        time.sleep(SPACING_S)
        with cv.start_run(experiment=EXPERIMENT):
            out.append(
                _profile(
                    label,
                    lambda: refs.append(cv.models.log(model, MODEL_NAME, input_example=example)),
                )
            )
    cv.models.load(refs[0].ref)
    out.append(_profile("load_warm", lambda: cv.models.load(refs[0].ref)))
    return {"profiles": out, "ref": refs[0].ref}


def child_conveyor_profile_load(work: str, ref: str) -> dict[str, Any]:
    """Profile the first ``load`` in a fresh process (the store opened before)."""
    import conveyor as cv

    ws = cv.init(work, project="bench")
    _ = ws.project
    return {"profiles": [_profile("load_first_call_fresh_process", lambda: cv.models.load(ref))]}


def child_backends() -> dict[str, Any]:
    """Return which of ``ARRAY_BACKENDS`` this interpreter can import."""
    from importlib.util import find_spec

    return {"importable": [name for name in ARRAY_BACKENDS if find_spec(name) is not None]}


class _Hidden:
    """A meta path finder that makes some top-level packages look not installed."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "conveyor.backends": child_backends,
    "mlflow.backends": child_backends,
    "conveyor.log": child_conveyor_log,
    "conveyor.load": child_conveyor_load,
    "conveyor.profile": child_conveyor_profile,
    "conveyor.profile_load": child_conveyor_profile_load,
    "mlflow.log": child_mlflow_log,
    "mlflow.load": child_mlflow_load,
    "mlflow.plain": child_mlflow_plain,
}


def run_child(op: str, argv: Sequence[str]) -> None:
    """Run the measurement ``op`` in this process and print its result as JSON."""
    hidden = {n for n in os.environ.get(HIDE_ENV, "").split(",") if n}
    if hidden:
        sys.meta_path.insert(0, _Hidden(hidden))  # type: ignore[arg-type]
    print(json.dumps(CHILDREN[op](*argv)), flush=True)


# -------------------------------------------------------------------------------------------
# Parent side: the peer's environment and the workload.
# -------------------------------------------------------------------------------------------


def constraint_pins(names: Sequence[str]) -> list[str]:
    """Return the ``name==version`` lines of ``constraints.txt`` for ``names``."""
    wanted = {re.sub(r"[-_.]+", "-", n).lower() for n in names}
    pins = []
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, sep, _ = line.split("#", 1)[0].strip().partition("==")
        if sep and re.sub(r"[-_.]+", "-", name).lower() in wanted:
            pins.append(line.split("#", 1)[0].strip())
    return sorted(pins)


def ensure_peer(venv: Path) -> Path:
    """Return the MLflow venv's python, with the scikit-learn and skops Conveyor is tested with."""
    python = ensure_mlflow_venv(venv)
    pins = constraint_pins(PINNED)
    stamp = venv / f".installed-{','.join(pins)}"
    if stamp.exists():
        return python
    log(f"installing {' '.join(pins)} into {venv} (the versions of constraints.txt)")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
        check=True,
    )
    stamp.touch()
    return python


def git_state() -> str:
    """Return the short commit of the repository, with ``+dirty`` when src/ has changes."""

    def git(*argv: str) -> str:
        proc = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "src") else "")


def load() -> float:
    """Return the 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def _check(ok: bool, message: str) -> None:
    """Stop the benchmark when a side did not store or load what it should."""
    if not ok:
        raise SystemExit(f"sanity check failed: {message}")


class Rep:
    """One repetition: a log process per side and variant, then a load process per API.

    ``hide`` gives, per tool, the packages its processes run without; ``extra`` names the
    Conveyor side measured as installed (nothing hidden) when something is hidden, else None.
    """

    def __init__(self, run: Runner, warm: int, hide: dict[str, list[str]]) -> None:
        self.run = run
        self.warm = warm
        self.hide = hide
        self.extra = f"conveyor+{'+'.join(hide['conveyor'])}" if hide["conveyor"] else None

    def hidden(self, side: str) -> list[str]:
        """Return the packages the processes of ``side`` run without."""
        if side == self.extra:
            return []
        return self.hide["conveyor" if side.startswith("conveyor") else "mlflow"]

    def child(self, side: str, op: str, *args: object, cwd: Path) -> dict[str, Any]:
        saved = self.run.env
        self.run.env = {**saved, HIDE_ENV: ",".join(self.hidden(side))}
        try:
            return self.run.child(op, *args, cwd=cwd)
        finally:
            self.run.env = saved

    def log(self, side: str) -> dict[str, Any]:
        work = self.run.new_dir(f"log-{side}")
        if side.startswith("conveyor"):
            res = self.child(side, "conveyor.log", work, self.warm, cwd=work)
        else:
            variant = "pip-reqs" if side == "mlflow-pip-reqs" else "defaults"
            res = self.child(side, "mlflow.log", work, variant, self.warm, cwd=work)
        return {**res, "work": str(work)}

    def load(self, side: str, logged: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if side.startswith("conveyor"):
            work, ref = Path(logged[side]["work"]), logged[side]["ref"]
            return self.child(side, "conveyor.load", work, ref, self.warm, cwd=work)
        work, uri = Path(logged["mlflow"]["work"]), logged["mlflow"]["uri"]
        api = side.removeprefix("mlflow-")
        return self.child(side, "mlflow.load", work, uri, api, self.warm, cwd=work)

    def sides(self, base: Sequence[str]) -> tuple[str, ...]:
        return (base[0], self.extra, *base[1:]) if self.extra else tuple(base)

    def __call__(self, rep: int) -> dict[str, dict[str, Any]]:
        """Run the rep (sides in turn, reversed on odd reps); return each side's results."""
        out: dict[str, dict[str, Any]] = {}
        logs, loads = self.sides(LOG_SIDES), self.sides(LOAD_SIDES)
        for side in logs if rep % 2 == 0 else logs[::-1]:
            out[f"log.{side}"] = self.log(side)
        logged = {side: out[f"log.{side}"] for side in logs}
        for side in loads if rep % 2 == 0 else loads[::-1]:
            out[f"load.{side}"] = self.load(side, logged)
        return out


def steady(res: dict[str, Any]) -> float:
    """Return one process's steady-state figure: the median of its warm calls."""
    return median(res["warm_s"]) if res["warm_s"] else res["first_s"]


def bench_models(
    run: Runner, fig: Figures, args: argparse.Namespace, hide: dict[str, list[str]]
) -> dict[str, Any]:
    """Run the reps (one discarded warm-up first) and emit the figures; return sanity facts."""
    rep = Rep(run, args.warm, hide)
    log("MLflow's plain default call (no skops_trusted_types), once")
    work = run.new_dir("plain")
    plain = run.child("mlflow.plain", work, cwd=work)
    print(json.dumps({"bench": "mlflow.plain_default_call", **plain}), flush=True)
    if not args.quick:
        log("warm-up rep (discarded): page cache, bytecode")
        rep(1)
    results: list[dict[str, dict[str, Any]]] = []
    loads: list[float] = []
    for i in range(args.reps):
        loads.append(load())
        log(f"rep {i + 1}/{args.reps} (load average {loads[-1]})")
        results.append(rep(i))

    def column(key: str, pick: Callable[[dict[str, Any]], float]) -> list[float]:
        return [pick(r[key]) for r in results]

    for side in rep.sides(LOG_SIDES):
        key = f"log.{side}"
        warm_all = [s for r in results for s in r[key]["warm_s"]]
        first = column(key, lambda r: r["first_s"])
        last = results[-1][key]
        extra: dict[str, Any] = {"hidden": rep.hidden(side)}
        if side.startswith("mlflow"):
            extra["infer_signature_s_not_timed"] = round(
                median(column(key, lambda r: r["infer_signature_s"])), 4
            )
        fig.emit(
            "log",
            side,
            median(column(key, steady)),
            "s",
            reps=args.reps,
            warm_calls_per_rep=args.warm,
            samples=samples(column(key, steady)),
            all=samples(warm_all),
            first_call_s=round(median(first), 4),
            **extra,
        )
        fig.emit("log.first_call", side, median(first), "s", reps=args.reps, samples=samples(first))
        if side in ("conveyor", "mlflow"):
            fig.emit(
                "stored_size",
                side,
                last["bytes"] / 1e3,
                "kB",
                files=last["files"],
                **({"requirements": last["requirements"]} if "requirements" in last else {}),
            )
    for bench in ("log", "log.first_call"):
        fig.ratio(bench, "mlflow", higher_is_better=False)
        fig.ratio(bench, "mlflow-pip-reqs", higher_is_better=False, key=f"{bench}.pip-reqs")

    for side in rep.sides(LOAD_SIDES):
        key = f"load.{side}"
        ms = [v * 1e3 for v in column(key, steady)]
        first = [v * 1e3 for v in column(key, lambda r: r["first_s"])]
        fig.emit(
            "load",
            side,
            median(ms),
            "ms",
            reps=args.reps,
            warm_calls_per_rep=args.warm,
            samples=samples(ms),
            all=samples([s * 1e3 for r in results for s in r[key]["warm_s"]]),
            first_call_ms=round(median(first), 2),
            hidden=rep.hidden(side),
            store_open_ms_not_timed=round(median(column(key, lambda r: r["open_s"])) * 1e3, 1),
        )
        fig.emit(
            "load.first_call", side, median(first), "ms", reps=args.reps, samples=samples(first)
        )
    for bench in ("load", "load.first_call"):
        for peer in LOAD_SIDES[1:]:
            fig.ratio(bench, peer, higher_is_better=False, key=f"{bench}.{peer}")

    digests = {r[k]["predictions"] for r in results for k in r}
    sanity = {
        "same_predictions_everywhere": len(digests) == 1,
        "roundtrips_ok": all(r[k]["roundtrip_ok"] for r in results for k in r if k[:4] == "log."),
        "conveyor_signature_inferred": all(
            r["log.conveyor"]["signature_inferred"] for r in results
        ),
        "conveyor_model_bytes_reused": sum(
            r["log.conveyor"]["model_bytes_reused"] for r in results
        ),
        "conveyor_refs": results[-1]["log.conveyor"]["refs"],
        "mlflow_default_requirements": results[-1]["log.mlflow"]["requirements"],
        "mlflow_plain_call": plain["outcome"],
        "hidden": hide,
        "extra_side": rep.extra,
        "loads": loads,
    }
    print(json.dumps({"bench": "models.sanity", **sanity}), flush=True)
    _check(sanity["same_predictions_everywhere"], f"predictions differ: {sorted(digests)}")
    _check(sanity["roundtrips_ok"], "a logged model did not predict as the original after load")
    _check(
        sanity["conveyor_model_bytes_reused"] == 0, "Conveyor reused a previous call's model bytes"
    )
    targets = targets_met(fig)
    print(json.dumps({"bench": "models.targets", **targets}), flush=True)
    return {**sanity, "targets": targets, "plain": plain}


def extra_rows(fig: Figures, side: str | None) -> list[str]:
    """Return the table rows of Conveyor as installed (nothing hidden), if it was measured."""
    if side is None:
        return []
    what = side.removeprefix("conveyor+").replace("+", ", ")
    rows = []
    for label, bench in (
        ("`log`, warm process", "log"),
        ("`log`, first call in the process", "log.first_call"),
        ("`load`, warm process", "load"),
        ("`load`, first call in a fresh process", "load.first_call"),
    ):
        rows.append(
            f"| {label}, Conveyor as installed ({what} importable) | {fmt(fig.get(bench, side))} "
            "| — | — | — | — | — |"
        )
    return rows


def targets_met(fig: Figures) -> dict[str, Any]:
    """Return whether the issue's targets are met in this run."""
    warm = (fig.get("log", "conveyor") or {}).get("value")
    first = (fig.get("log.first_call", "conveyor") or {}).get("value")
    return {
        "log_under_0.3s_warm": warm is not None and warm < LOG_TARGET_S,
        "log_under_0.3s_first_call": first is not None and first < LOG_TARGET_S,
        "load_no_slower_than_mlflow_sklearn": fig.ratios["load.mlflow-sklearn"]["value"] >= 1,
        "load_no_slower_than_mlflow_pyfunc": fig.ratios["load.mlflow-pyfunc"]["value"] >= 1,
        "first_load_no_slower_than_mlflow_sklearn": (
            fig.ratios["load.first_call.mlflow-sklearn"]["value"] >= 1
        ),
        "first_load_no_slower_than_mlflow_pyfunc": (
            fig.ratios["load.first_call.mlflow-pyfunc"]["value"] >= 1
        ),
    }


def run_profile(run: Runner) -> None:
    """Profile Conveyor's log and load (cProfile) and print the summaries as JSON lines.

    Twice when an array backend (torch, ...) is installed: as installed, then with the
    backends made unimportable, as the benchmark runs Conveyor against MLflow's venv.
    """
    importable = run.child("conveyor.backends")["importable"]
    for hidden in ([], importable) if importable else ([],):
        saved = run.env
        run.env = {**saved, HIDE_ENV: ",".join(hidden)}
        try:
            work = run.new_dir("profile")
            res = run.child("conveyor.profile", work, cwd=work)
            fresh = run.child("conveyor.profile_load", work, res["ref"], cwd=work)
        finally:
            run.env = saved
        for prof in [*res["profiles"], *fresh["profiles"]]:
            print(json.dumps({**prof, "hidden": hidden}), flush=True)


# -------------------------------------------------------------------------------------------
# docs/benchmarks.md
# -------------------------------------------------------------------------------------------


def render_section(fig: Figures, meta: dict[str, Any], sanity: dict[str, Any]) -> str:
    """Return the Model registry section (between its markers) as markdown."""
    get = fig.get

    def ratio(key: str) -> str:
        r = fig.ratios.get(key)
        if r is None:
            return "—"
        low, high = r.get("per_rep_range", (r["value"], r["value"]))
        return f"**{r['value']:.2f}x** ({low:.2f} to {high:.2f})"

    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    targets = sanity["targets"]
    log_target = f"Conveyor < {LOG_TARGET_S} s"
    size_c, size_m = get("stored_size", "conveyor") or {}, get("stored_size", "mlflow") or {}
    sig_s = (get("log", "mlflow") or {}).get("infer_signature_s_not_timed", "?")
    intro = (
        f"Logging and loading a scikit-learn `RandomForestClassifier(n_estimators=100, "
        f"random_state=0)` fitted on `load_breast_cancer(as_frame=True)` (569 rows, 30 "
        f"columns), with a {EXAMPLE_ROWS}-row input example, against MLflow "
        f"{meta['mlflow_version']} (scikit-learn {meta['sklearn']} and skops {meta['skops']} on "
        "both sides; SQLite store and local artifacts on both). Conveyor: "
        f'`cv.models.log(model, "{MODEL_NAME}", input_example=X[:5])` inside `cv.start_run` '
        "(signature inferred from the example), `cv.models.load(mv.ref)` (digests verified, "
        "skops load with the recorded types). MLflow, as in "
        "`shared/bench/peers/mlflow_bench.py`: `mlflow.sklearn.log_model(model, "
        'name="model", signature=..., input_example=X[:5], '
        'skops_trusted_types=["sklearn.tree._tree.Tree"])` inside `mlflow.start_run`, with '
        'its defaults (pip requirements inferred) and with `pip_requirements=["scikit-learn", '
        '"skops"]`; `mlflow.sklearn.load_model` and `mlflow.pyfunc.load_model` of the model '
        f"URI. Measured {meta['date']} on {meta['machine']}: absolute figures are noisy, the "
        "ratios measured side by side are what count. Ratio: how many times faster Conveyor is "
        "(above 1: faster), from the medians; in brackets the lowest and highest ratio of one "
        "rep's pair. Targets are those of the model-registry issue."
    )
    rows = [
        (
            "`log`, warm process",
            "log",
            "mlflow",
            "log",
            log_target,
            yes(targets["log_under_0.3s_warm"]),
        ),
        (
            "`log`, warm process",
            "log",
            "mlflow-pip-reqs",
            "log.pip-reqs",
            log_target,
            yes(targets["log_under_0.3s_warm"]),
        ),
        (
            "`log`, first call in the process",
            "log.first_call",
            "mlflow",
            "log.first_call",
            log_target,
            yes(targets["log_under_0.3s_first_call"]),
        ),
        (
            "`log`, first call in the process",
            "log.first_call",
            "mlflow-pip-reqs",
            "log.first_call.pip-reqs",
            log_target,
            yes(targets["log_under_0.3s_first_call"]),
        ),
        (
            "`load`, warm process",
            "load",
            "mlflow-sklearn",
            "load.mlflow-sklearn",
            "≥ 1x",
            yes(targets["load_no_slower_than_mlflow_sklearn"]),
        ),
        (
            "`load`, warm process",
            "load",
            "mlflow-pyfunc",
            "load.mlflow-pyfunc",
            "≥ 1x",
            yes(targets["load_no_slower_than_mlflow_pyfunc"]),
        ),
        (
            "`load`, first call in a fresh process",
            "load.first_call",
            "mlflow-sklearn",
            "load.first_call.mlflow-sklearn",
            "≥ 1x",
            yes(targets["first_load_no_slower_than_mlflow_sklearn"]),
        ),
        (
            "`load`, first call in a fresh process",
            "load.first_call",
            "mlflow-pyfunc",
            "load.first_call.mlflow-pyfunc",
            "≥ 1x",
            yes(targets["first_load_no_slower_than_mlflow_pyfunc"]),
        ),
    ]
    table = [
        "| workload | Conveyor | peer | peer figure | ratio (per-rep range) | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {label} | {fmt(get(bench, 'conveyor'))} | {LABELS[peer]} "
            f"| {fmt(get(bench, peer))} | {ratio(key)} | {target} | {met} |"
            for label, bench, peer, key, target, met in rows
        ),
        *extra_rows(fig, sanity["extra_side"]),
        f"| stored model on disk | {fmt(size_c or None)} ({len(size_c.get('files', []))} "
        f"objects) | MLflow | {fmt(size_m or None)} ({len(size_m.get('files', []))} files) "
        "| — | — | — |",
    ]
    hidden = sanity["hidden"]
    matched = (
        (
            f"Matched environments: {', '.join(hidden['conveyor'])} is installed in `.venv` "
            "(through the dev extras) but not in MLflow's venv, and `import skops.io` imports "
            "every scikit-learn package, including its bundled `array_api_compat` backend for "
            f"{', '.join(hidden['conveyor'])}, which then imports "
            f"{', '.join(hidden['conveyor'])}; so Conveyor's processes run with "
            f"{', '.join(hidden['conveyor'])} made unimportable (as if not installed), and the "
            "rows marked 'as installed' show Conveyor with it importable, as `.venv` is. "
        )
        if hidden["conveyor"]
        else ""
    ) + (
        f"MLflow's processes run without {', '.join(hidden['mlflow'])}, which `.venv` lacks. "
        if hidden["mlflow"]
        else ""
    )
    conveyor_open = (get("load", "conveyor") or {}).get("store_open_ms_not_timed", "?")
    mlflow_open = (get("load", "mlflow-sklearn") or {}).get("store_open_ms_not_timed", "?")
    notes = (
        f"Notes: medians of {meta['reps']} reps (after one discarded warm-up rep); each rep runs "
        "one fresh process per side and variant, the sides alternating rep by rep. Timings are "
        "in process: interpreter start-up, `import conveyor` / `import mlflow`, fitting the "
        "model and opening the store (`cv.init` + `cv.start_run`; `set_tracking_uri` + "
        "`set_experiment`, migrations included) are outside them; the first call pays for "
        "what it imports itself (skops, pandas' Parquet writer, MLflow's flavor modules, ...). "
        f"A log process times its first call, then {meta['warm']} warm calls, each in a new run "
        f"and starting at least {SPACING_S} s after the previous one ended: skops stamps its zip "
        "members with the time at 2 s resolution, so each call stores new model bytes and "
        "Conveyor's content-addressed store cannot reuse the previous call's "
        f"({sanity['conveyor_model_bytes_reused']} reuses seen; the 5-row example, identical "
        "every time, is stored once). Warm figure: the median over reps of each process's "
        "median warm call. A load process opens the store a log process of the same rep wrote "
        f"(untimed: {conveyor_open} ms for Conveyor, {mlflow_open} ms for MLflow), then times "
        f"its first load and {meta['warm']} more. A first load in a fresh process is mostly "
        "imports: `skops.io` imports the whole of scikit-learn and much of SciPy on both sides; "
        "Conveyor's also imports pandas, which `import mlflow` has already loaded outside "
        f"MLflow's timing. {matched}MLflow's signature, "
        f"`infer_signature(X, model.predict(X))`, is computed before its timed call ({sig_s} "
        "s), as in the peer script; Conveyor's time includes inferring its signature from the "
        "example (one `predict` on 5 rows). MLflow's plain default call, without "
        "`skops_trusted_types`, "
        + (
            "fails: `MlflowException: The saved sklearn model references untrusted types` "
            "(`sklearn.tree._tree.Tree`). "
            if sanity["plain"]["outcome"] == "error"
            else "succeeded in this run. "
        )
        + "MLflow's inferred requirements: "
        f"{', '.join(sanity['mlflow_default_requirements'])}. Stored size: Conveyor's "
        "objects of one version (model file, Parquet example, model document); MLflow's "
        f"artifact folder ({', '.join(size_m.get('files', []))}). Sanity: every side's loaded "
        "model predicts the same labels as the fitted forest on all 569 rows. MLflow runs with "
        f"telemetry off. Load average {meta['load_start']} at the start, {meta['load_end']} at "
        f"the end (at the start of each rep: {meta['loads']})."
    )
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        "## Model registry (bench/models.py)",
        "",
        textwrap.fill(intro, 100),
        "",
        *table,
        *section_footer(notes, meta["command"], SECTION),
    ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line; ``--quick`` lowers the reps for a smoke run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--reps", type=int, help="repetitions (processes per side; default 7; --quick: 2)"
    )
    ap.add_argument("--warm", type=int, help="warm calls per process (default 3; --quick: 1)")
    ap.add_argument("--quick", action="store_true", help="smoke run; docs are left unchanged")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument(
        "--profile", action="store_true", help="only profile Conveyor's log and load (cProfile)"
    )
    ap.add_argument("--mlflow-venv", type=Path, default=MLFLOW_VENV, help="peer venv folder")
    args = ap.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 7)
    args.warm = args.warm if args.warm is not None else (1 if args.quick else 3)
    return args


def main(argv: Sequence[str]) -> int:
    """Run the model-registry workload on Conveyor and MLflow and report the figures."""
    if argv[:1] == ["--child"]:
        run_child(argv[1], argv[2:])
        return 0
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-bench-models-"))
    if args.profile:
        try:
            run_profile(Runner(Path(__file__), {"conveyor": Path(sys.executable)}, scratch))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return 0
    mlflow_python = ensure_peer(args.mlflow_venv)
    load_start = load()
    try:
        pythons = {"conveyor": Path(sys.executable), "mlflow": mlflow_python}
        run = Runner(Path(__file__), pythons, scratch, timeout_s=CHILD_TIMEOUT_S)
        conveyor_version, python_version = run.version("conveyor", "conveyor").split()
        mlflow_version, mlflow_python_version = run.version("mlflow", "mlflow").split()
        sklearn = {t: run.version(t, "sklearn").split()[0] for t in pythons}
        skops = {t: run.version(t, "skops").split()[0] for t in pythons}
        backends = {t: set(run.child(f"{t}.backends")["importable"]) for t in pythons}
        hide = {
            t: sorted(backends[t] - backends[other])
            for t, other in (("conveyor", "mlflow"), ("mlflow", "conveyor"))
        }
        info = {
            "bench": "info",
            "conveyor": conveyor_version,
            "commit": git_state(),
            "mlflow": mlflow_version,
            "python": python_version,
            "mlflow_python": mlflow_python_version,
            "sklearn": sklearn,
            "skops": skops,
            "array_backends_importable": {t: sorted(b) for t, b in backends.items()},
            "hidden": hide,
            "cpus": os.cpu_count(),
            "loadavg_1m": load_start,
            "reps": args.reps,
            "warm_calls": args.warm,
        }
        print(json.dumps(info), flush=True)
        _check(len(set(sklearn.values())) == 1, f"scikit-learn differs between sides: {sklearn}")
        _check(len(set(skops.values())) == 1, f"skops differs between sides: {skops}")
        fig = Figures()
        sanity = bench_models(run, fig, args, hide)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load_end = load()
    if args.quick or args.no_docs:
        log("docs/benchmarks.md left unchanged (--quick or --no-docs)")
        return 0
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, shared with other work ({platform.machine()}, Linux, "
        f"Python {python_version})",
        "reps": args.reps,
        "warm": args.warm,
        "mlflow_version": mlflow_version,
        "sklearn": sklearn["conveyor"],
        "skops": skops["conveyor"],
        "load_start": f"{load_start:.1f}",
        "load_end": f"{load_end:.1f}",
        "loads": ", ".join(f"{v:.1f}" for v in sanity["loads"]),
        "command": " ".join([".venv/bin/python", "bench/models.py", *argv]),
    }
    update_docs(DOCS, SECTION, render_section(fig, meta, sanity))
    log(f"updated {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
