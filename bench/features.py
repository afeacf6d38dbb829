"""Feature-store benchmark: Conveyor's feature store side by side with Feast and the DuckDB limit.

Run from the repository root::

    .venv/bin/python bench/features.py            # full run (3 reps), updates docs/benchmarks.md
    .venv/bin/python bench/features.py --quick    # smoke run (100,000 feature rows), docs untouched

The workload of the feature-store issue, on the same generated data for every system and in
one run. The data comes from the peers' generator, ``limits_data.py`` in ``shared/bench/peers``
(``--peers-dir``), unchanged (fixed seed): a feature table of 1,000,000 rows (100,000
entities, 10 float64 features ``f0..f9``, event times spread over 30 days, UTC) and an entity
frame of 100,000 rows (``entity_id``, ``event_timestamp``, ``label``), with a TTL of 7 days.
``--quick`` generates 100,000 feature rows, 10,000 entities and 10,000 entity rows with the same
generator. The files are written once under the ignored ``.bench/features/data/`` and reused.

* Historical retrieval (point-in-time join): for every entity row, its entity's latest feature
  row at or before the row's time and within the TTL (nulls otherwise). Timing scope of the
  peers' scripts: the entity frame is already in memory as a pandas DataFrame and the library
  imported (for Conveyor, which imports DuckDB on first use, DuckDB is imported before the
  timer too); reading the Parquet file, the join and the result as a pandas DataFrame are
  timed.
  Conveyor: ``cv.features.historical`` (first call in a fresh process, after ``import
  conveyor`` and ``cv.init`` on a project where the view was applied by an earlier process);
  the DuckDB ASOF JOIN limit and Feast (``get_historical_features().to_df()``, its default
  offline store, dask, and its DuckDB one) run as the peers' scripts do
  (``limits_pit_bench.py --worker duckdb``, ``feast_bench.py --worker hist``). Each rep of
  each side is a fresh process; peak memory is that process's ``ru_maxrss`` right after the
  first call; a second, warm call follows in the same process. Every result is checked row by
  row against the DuckDB limit's (same rows, same values, same nulls; Conveyor's also keeps
  the entity frame's rows in order).
* Materialization of the feature table to the SQLite online store, each rep on a fresh
  project: Conveyor ``cv.features.materialize(["fv"], end=<end of the data>)``, Feast
  ``materialize`` (``feast_bench.py --worker materialize``, local provider, SQLite online
  store, default offline store). The peers' hand-written floor (DuckDB latest row per entity
  and a SQLite ``executemany``) comes from ``limits_online_bench.py``.
* Online reads of 1 and 100 entities (random materialized ids, fixed seed), in process, after
  a warm-up: Conveyor ``cv.features.online`` on SQLite (the default store) and on Redis
  (``CONVEYOR_ONLINE_URI``, DB 15 of ``--redis-url``, a project of its own, deleted at the
  end), each call timed with ``perf_counter_ns``; Feast ``get_online_features().to_dict()``
  (``feast_bench.py --worker online``); the raw SQLite, Redis and NumPy reads of
  ``limits_online_bench.py`` (which starts its own ``redis-server`` on a free loopback port
  and stops it). Values are checked against the latest rows of the Parquet file.

Feast is installed on first use into ``.bench/venvs/feast`` with the version the peers' scripts
pin (``limits_data.PIP_SPECS``: ``feast[duckdb]==0.67.0``). The DuckDB limit and the raw
online reads run with Conveyor's interpreter (``LIMITS_VENV`` points at it), so the limit uses
the same DuckDB as Conveyor. The peers' scripts run unchanged, through a small wrapper (a
child mode of this script) that imports ``limits_data`` first with the sizes of the generated
data, so their workers and checks see the same sizes. Each figure is the median of ``--reps``
reps; the sides alternate rep by rep. Targets (from the issue): historical retrieval within
1.3x the DuckDB limit in time and in peak memory; materialization at least 10x faster than
Feast; online reads (in process, SQLite) p50 under 30 us for 1 entity and under 1 ms for
100; on Redis within 2x of the raw read. Each figure and target is printed as one JSON line.

This file is also the child script (``python features.py --child OP ARGS...``). Only the
standard library (and ``bench/_common.py``) is imported at the top.
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
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    DOCS,
    REPO,
    Figures,
    child_env,
    child_versions,
    ensure_peer_venv,
    import_peers_data,
    interleave,
    last_json,
    log,
    median,
    rounded,
    samples,
    spawn,
    update_docs,
)

SECTION = "features"
PEERS_DIR = REPO.parent / "shared" / "bench" / "peers"
FEAST_VENV = REPO / ".bench" / "venvs" / "feast"
WORK_ROOT = REPO / ".bench" / "features"
PEER_FILES = ("limits_data.py", "feast_bench.py", "limits_pit_bench.py", "limits_online_bench.py")
REDIS_URL = "redis://127.0.0.1:6379/15"
VIEW = "fv"
N_FEATURES = 10
FEATURES = [f"{VIEW}:f{j}" for j in range(N_FEATURES)]
FULL_SIZES = (1_000_000, 100_000, 100_000)  # feature rows, entities, entity rows
QUICK_SIZES = (100_000, 10_000, 10_000)
ONLINE_WARMUP = 50
#: Targets of the issue.
HIST_TIME_MAX = 1.3  # Conveyor / DuckDB limit, at most
HIST_MEM_MAX = 1.3
MATERIALIZE_MIN = 10.0  # Feast / Conveyor, at least
ONLINE_1_P50_US = 30.0
ONLINE_100_P50_US = 1000.0
REDIS_MAX = 2.0  # Conveyor p50 / raw p50, at most

# -------------------------------------------------------------------------------------------
# Child side: one measurement per process, result printed as one JSON line.
# -------------------------------------------------------------------------------------------


def peers_data() -> Any:
    """Import the peers' ``limits_data`` with the sizes of the generated data (its manifest)."""
    sys.dont_write_bytecode = True  # keep the peers' folder free of __pycache__
    sys.path.insert(0, os.environ["FEATURES_BENCH_PEERS"])
    import limits_data as lim

    manifest = Path(lim.data_dir()) / "manifest_features.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        lim.N_FEATURE_ROWS = m["n_feature_rows"]
        lim.N_ENTITIES = m["n_entities"]
        lim.N_ENTITY_DF_ROWS = m["n_entity_df_rows"]
    return lim


def peak_mb() -> float:
    """Return this process's peak resident memory (``ru_maxrss``) in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_data(rows: str, entities: str, entity_rows: str) -> dict[str, Any]:
    """Generate (or reuse) the data with the peers' generator at the given sizes; describe it."""
    lim = peers_data()
    lim.N_FEATURE_ROWS, lim.N_ENTITIES, lim.N_ENTITY_DF_ROWS = (
        int(rows),
        int(entities),
        int(entity_rows),
    )
    t0 = time.perf_counter()
    folder = lim.ensure_feature_data()
    seconds = time.perf_counter() - t0
    import pyarrow.parquet as pq

    out: dict[str, Any] = {"folder": folder, "seconds": seconds, "manifest": lim.manifest()}
    for name in ("features", "entity_df"):
        meta = pq.read_metadata(Path(folder) / f"{name}.parquet")
        schema = meta.schema.to_arrow_schema()
        out[name] = {
            "rows": meta.num_rows,
            "columns": {f.name: str(f.type) for f in schema},
            "mb": round((Path(folder) / f"{name}.parquet").stat().st_size / 2**20, 1),
        }
    return out


def child_peer(venv_name: str, script: str, *argv: str) -> dict[str, Any]:
    """Run a peer script as ``__main__`` with ``argv``, after ``limits_data`` got the sizes.

    The script's own output (its ``RESULT`` line) is what the parent reads.
    """
    import runpy

    lim = peers_data()
    venv = os.path.realpath(lim.venv_path(venv_name))
    if os.path.realpath(sys.prefix) != venv:  # ensure_venv would install and re-exec
        raise SystemExit(f"{script} needs {venv}; this interpreter is {sys.prefix}")
    sys.argv = [script, *argv]
    runpy.run_path(script, run_name="__main__")
    return {}


def child_feast_repo(offline: str, tag: str) -> dict[str, Any]:
    """Create a Feast repo on the shared data with the peers' ``make_repo`` (not timed)."""
    peers_data()
    import feast_bench

    repo, apply_s = feast_bench.make_repo(offline, tag)
    return {"repo": repo, "apply_s": apply_s}


def _conveyor_project(root: str, project: str, *, apply: bool) -> Any:
    """``cv.init`` on ``root``; with ``apply``, define and apply the entity and the view."""
    import conveyor as cv
    from conveyor.features import Entity, FeatureView, Field, ParquetSource

    lim = peers_data()
    cv.init(root=root, project=project)
    if apply:
        entity = Entity("entity", key="entity_id")
        view = FeatureView(
            name=VIEW,
            entities=[entity],
            source=ParquetSource(
                str(Path(lim.data_dir()) / "features.parquet"), timestamp="event_timestamp"
            ),
            features=[Field(f"f{j}", "float64") for j in range(N_FEATURES)],
            ttl=f"{lim.TTL_DAYS}d",
        )
        cv.features.apply([entity, view])
    return cv


def _profiled(path: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` under cProfile when ``path`` is not ``-``; write the top of the stats there."""
    if path == "-":
        return fn()
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    try:
        return fn()
    finally:
        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("cumulative").print_stats(45)
        out.write("\n==== by tottime ====\n")
        stats.sort_stats("tottime").print_stats(30)
        Path(path).write_text(out.getvalue())


def child_conveyor_setup(root: str, project: str) -> dict[str, Any]:
    """Create the project in ``root`` and apply the entity and the feature view (not timed)."""
    t0 = time.perf_counter()
    _conveyor_project(root, project, apply=True)
    return {"apply_s": time.perf_counter() - t0}


def child_conveyor_historical(root: str, project: str, out: str, profile: str) -> dict[str, Any]:
    """Time ``cv.features.historical`` (first call in this process, then a warm one)."""
    import pandas as pd

    cv = _conveyor_project(root, project, apply=False)
    lim = peers_data()
    entity_df = pd.read_parquet(Path(lim.data_dir()) / "entity_df.parquet")
    before = entity_df.copy()
    with open("/proc/self/statm") as f:
        rss0 = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def call() -> Any:
        return cv.features.historical(entity_df, FEATURES, timestamp="event_timestamp")

    # The limit's scope: DuckDB is imported before its timer starts. Conveyor imports DuckDB
    # on first use, so import it here first too (0.07-0.15 s on this machine), for the same
    # scope on both sides; the warm second call below needs no such care.
    import duckdb  # noqa: F401

    t0 = time.perf_counter()
    df = _profiled(profile, call)
    seconds = time.perf_counter() - t0
    peak = peak_mb()
    t0 = time.perf_counter()
    call()
    warm = time.perf_counter() - t0
    names = [f.split(":", 1)[1] for f in FEATURES]
    problems = []
    if len(df) != len(before):
        problems.append(f"{len(df)} rows out for {len(before)} in")
    elif not df[list(before.columns)].equals(before):
        problems.append("the entity frame's rows or columns are not kept in order")
    if not entity_df.equals(before):
        problems.append("the entity frame passed in was modified")
    missing = [c for c in names if c not in df.columns]
    if missing:
        problems.append(f"no column {missing}; columns are {list(df.columns)}")
    else:
        odd = {c: str(df[c].dtype) for c in names if str(df[c].dtype) != "float64"}
        if odd:
            problems.append(f"feature dtypes {odd}, expected float64")
    if out != "-" and not missing:
        df.to_parquet(out)
    return {
        "seconds": seconds,
        "warm_seconds": warm,
        "rss_before_mb": rss0,
        "peak_rss_mb": peak,
        "rows_out": len(df),
        "null_rows": int(df[names[0]].isna().sum()) if not missing else None,
        "problems": problems,
    }


def child_conveyor_materialize(root: str, project: str, end: str, profile: str) -> dict[str, Any]:
    """Apply on a fresh project (not timed), then time ``cv.features.materialize``."""
    cv = _conveyor_project(root, project, apply=True)
    from conveyor.features.service import feature_service

    end_at = dt.datetime.fromisoformat(end)
    t0 = time.perf_counter()
    done = _profiled(profile, lambda: cv.features.materialize([VIEW], end=end_at))
    seconds = time.perf_counter() - t0
    store = feature_service().online_store
    out = {
        "seconds": seconds,
        "reported_seconds": done[0].seconds,
        "rows": done[0].rows,
        "peak_rss_mb": peak_mb(),
        "online_uri": store.uri,
    }
    path = getattr(store, "path", None)
    if path is not None:
        import sqlite3

        con = sqlite3.connect(path)  # a fresh project: its tables hold this view only
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out["online_rows"] = sum(
            con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables
        )
        con.close()
        files = [Path(path), Path(f"{path}-wal")]  # WAL mode: recent pages in the -wal file
        size = sum(f.stat().st_size for f in files if f.exists())
        out["online_db_mb"] = round(size / 2**20, 1)
    return out


def _latest(end: dt.datetime) -> tuple[Any, Any, Any]:
    """Per entity (0..N-1): its latest row at or before ``end`` from the Parquet file:
    ``(event time in us, values [N x 10], present within the TTL at end)``."""
    import duckdb
    import numpy as np

    lim = peers_data()
    cols = ", ".join(f"f{j}" for j in range(N_FEATURES))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    got = con.execute(
        f"SELECT entity_id, epoch_us(event_timestamp) AS ts, {cols} FROM read_parquet(?) "
        "WHERE event_timestamp <= ? QUALIFY row_number() OVER "
        "(PARTITION BY entity_id ORDER BY event_timestamp DESC) = 1 ORDER BY entity_id",
        [str(Path(lim.data_dir()) / "features.parquet"), end],
    ).fetchnumpy()
    con.close()
    if not (got["entity_id"] == np.arange(lim.N_ENTITIES)).all():
        raise SystemExit("the data does not hold every entity id 0..N-1")
    values = np.column_stack([got[f"f{j}"] for j in range(N_FEATURES)])
    expiry = (end - dt.timedelta(days=lim.TTL_DAYS)).timestamp() * 1_000_000
    return got["ts"], values, got["ts"] >= expiry


def _pct(values: Sequence[float], q: float) -> float:
    """Percentile with linear interpolation (as ``limits_data.pct``)."""
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def child_conveyor_online(
    root: str, project: str, end: str, calls1: str, calls100: str, store: str
) -> dict[str, Any]:
    """Check, then time ``cv.features.online`` for 1 and 100 entities, call by call.

    ``store`` is ``sqlite`` (the project ``root`` was materialized by an earlier process) or
    ``redis`` (``CONVEYOR_ONLINE_URI`` is set: apply and materialize here, then delete what
    was written).
    """
    import numpy as np

    redis = store == "redis"
    cv = _conveyor_project(root, project, apply=redis)
    from conveyor.features.service import feature_service

    end_at = dt.datetime.fromisoformat(end)
    out: dict[str, Any] = {"store": store}
    service = feature_service()
    try:
        if redis:
            t0 = time.perf_counter()
            done = cv.features.materialize([VIEW], end=end_at)
            out["materialize_s"] = time.perf_counter() - t0
            out["materialized_rows"] = done[0].rows
        out["online_uri"] = service.online_store.uri.split("@")[-1]
        _, values, present = _latest(end_at)
        rng = np.random.default_rng(7)
        check_ids = [int(i) for i in rng.choice(len(values), 200, replace=False)]
        got = cv.features.online({"entity_id": check_ids}, FEATURES)
        bad = nones = 0
        for k, eid in enumerate(check_ids):
            row = [got[f"f{j}"][k] for j in range(N_FEATURES)]
            want = [float(x) for x in values[eid]] if present[eid] else [None] * N_FEATURES
            nones += row[0] is None
            bad += row != want
        out["check"] = {"entities": len(check_ids), "mismatched_entities": bad, "none": nones}
        out["present_entities"] = int(present.sum())
        pool = np.flatnonzero(present)
        for batch, calls in ((1, int(calls1)), (100, int(calls100))):
            batches = [
                [int(i) for i in rng.choice(pool, batch)] for _ in range(calls + ONLINE_WARMUP)
            ]
            for ids in batches[:ONLINE_WARMUP]:
                cv.features.online({"entity_id": ids}, FEATURES)
            took = []
            for ids in batches[ONLINE_WARMUP:]:
                t0 = time.perf_counter_ns()
                cv.features.online({"entity_id": ids}, FEATURES)
                took.append((time.perf_counter_ns() - t0) / 1000)
            out[f"batch_{batch}"] = {
                "calls": calls,
                "p50_us": _pct(took, 0.5),
                "p99_us": _pct(took, 0.99),
                "mean_us": sum(took) / len(took),
            }
    finally:
        if redis:
            online = service.online_store
            online.drop(VIEW)
            client = getattr(online, "_client", None)
            if client is not None:  # what this project left in the database (should be 0)
                out["left_keys"] = sum(1 for _ in client.scan_iter(f"cv:{online.namespace}:*"))
    return out


def child_check(results: str) -> dict[str, Any]:
    """Compare each saved historical result with the DuckDB limit's, with the peers' compare."""
    peers_data()
    import limits_pit_bench

    folder = Path(results)
    ref = folder / "limits_pit_duckdb.parquet"
    out = {}
    for name in ("conveyor_hist", "feast_hist_dask", "feast_hist_duckdb"):
        path = folder / f"{name}.parquet"
        if path.exists():
            out[name] = limits_pit_bench.compare(str(path), str(ref))
    return out


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "data": child_data,
    "peer": child_peer,
    "feast.repo": child_feast_repo,
    "versions": child_versions,
    "conveyor.setup": child_conveyor_setup,
    "conveyor.historical": child_conveyor_historical,
    "conveyor.materialize": child_conveyor_materialize,
    "conveyor.online": child_conveyor_online,
    "check": child_check,
}


def run_child(op: str, argv: Sequence[str]) -> None:
    """Run ``op`` in this process and print its result as one JSON line (peers print theirs)."""
    result = CHILDREN[op](*argv)
    if op != "peer":
        print(json.dumps(result), flush=True)


# -------------------------------------------------------------------------------------------
# Parent side: the Feast venv, processes, the phases.
# -------------------------------------------------------------------------------------------


def free_port() -> int:
    """Return a loopback TCP port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_reachable(url: str) -> bool:
    """Return whether something listens at the host and port of the Redis ``url``."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), 2).close()
    except OSError:
        return False
    return True


def load() -> float:
    """Return the 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def file_digest(path: Path) -> str:
    """Return the first 12 hex digits of the sha256 of ``path``."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@dataclass
class Bench:
    """The scratch layout, the interpreters, and how each side runs each measurement."""

    args: argparse.Namespace
    scratch: Path
    conveyor: Path
    feast: Path | None
    env: dict[str, str]
    end: str

    def __post_init__(self) -> None:
        self.script = Path(__file__).resolve()
        self.results = self.scratch / "fs" / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self._dirs = 0
        self.last: dict[str, Any] = {}
        self.runs: dict[str, list[dict[str, Any]]] = {}

    def new_dir(self, label: str) -> Path:
        """Return a new empty folder under the scratch folder."""
        self._dirs += 1
        path = self.scratch / f"{self._dirs:03d}-{label}"
        path.mkdir()
        return path

    def child(
        self, python: Path, op: str, *args: object, env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Run a child mode of this script; return its JSON line."""
        out = spawn([python, self.script, "--child", op, *args], env or self.env, self.scratch)
        return last_json(out)

    def peer(self, python: Path, venv_name: str, script: str, *args: object) -> str:
        """Run a peer script unchanged (through the wrapper); return its stdout."""
        path = self.args.peers_dir / script
        argv = [python, self.script, "--child", "peer", venv_name, path, *args]
        return spawn(argv, self.env, self.scratch)

    def keep(self, key: str, res: dict[str, Any]) -> float:
        """Record one result of ``key``; return its seconds (online: its 1-entity p50)."""
        self.runs.setdefault(key, []).append(res)
        return float(res["seconds"] if "seconds" in res else res["batch_1"]["p50_us"])

    # -- historical --------------------------------------------------------------------------

    def hist_setup(self, feast_offlines: Sequence[str]) -> None:
        """The Conveyor project and the Feast repos the historical reps read (not timed)."""
        self.hist_root = self.new_dir("conveyor-hist")
        self.child(self.conveyor, "conveyor.setup", self.hist_root, "bench")
        self.feast_repos = {}
        for offline in feast_offlines:
            assert self.feast is not None
            res = self.child(self.feast, "feast.repo", offline, "hist")
            self.feast_repos[offline] = res["repo"]
            log(f"feast: {offline} repo applied in {res['apply_s']:.1f} s (not timed)")

    def hist_conveyor(self, rep: int, profile: str = "-") -> float:
        out = str(self.results / "conveyor_hist.parquet") if rep == 0 else "-"
        res = self.child(
            self.conveyor, "conveyor.historical", self.hist_root, "bench", out, profile
        )
        if res["problems"]:
            raise SystemExit(f"Conveyor's historical result is wrong: {res['problems']}")
        log(f"  historical conveyor     {res['seconds']:6.2f} s  {res['peak_rss_mb']:5.0f} MB")
        return self.keep("hist:conveyor", res)

    def hist_limit(self, rep: int) -> float:
        extra = ["--save-out"] if rep == 0 else []
        out = self.peer(
            self.conveyor, "limits", "limits_pit_bench.py", "--worker", "duckdb", *extra
        )
        res = last_json(out, "RESULT ")
        log(f"  historical duckdb-asof  {res['seconds']:6.2f} s  {res['peak_rss_mb']:5.0f} MB")
        return self.keep("hist:duckdb-asof", res)

    def hist_feast(self, offline: str) -> Callable[[int], float]:
        def step(rep: int) -> float:
            assert self.feast is not None
            extra = ["--save-out"] if rep == 0 else []
            args = ["--worker", "hist", "--offline", offline, "--repo", self.feast_repos[offline]]
            res = last_json(
                self.peer(self.feast, "feast", "feast_bench.py", *args, *extra), "RESULT "
            )
            log(
                f"  historical feast-{offline:<7}{res['seconds']:6.2f} s  "
                f"{res['peak_rss_mb']:5.0f} MB"
            )
            return self.keep(f"hist:feast-{offline}", res)

        return step

    # -- materialize -----------------------------------------------------------------------

    def mat_conveyor(self, rep: int, profile: str = "-") -> float:
        root = self.new_dir("conveyor-mat")
        res = self.child(self.conveyor, "conveyor.materialize", root, "bench", self.end, profile)
        res["root"] = str(root)
        previous = self.last.get("conveyor_root")
        if previous:
            shutil.rmtree(previous, ignore_errors=True)
        self.last["conveyor_root"] = str(root)
        log(f"  materialize conveyor    {res['seconds']:6.2f} s  {res['rows']:,} rows")
        return self.keep("mat:conveyor", res)

    def mat_feast(self, rep: int) -> float:
        assert self.feast is not None
        args = ["--worker", "materialize", "--offline", "dask", "--tag", f"mat{rep}"]
        res = last_json(self.peer(self.feast, "feast", "feast_bench.py", *args), "RESULT ")
        previous = self.last.get("feast_repo")
        if previous:
            shutil.rmtree(previous, ignore_errors=True)
        self.last["feast_repo"] = res["repo"]
        log(f"  materialize feast       {res['seconds']:6.2f} s")
        return self.keep("mat:feast", res)

    # -- online ----------------------------------------------------------------------------

    def online_conveyor(self, rep: int) -> float:
        calls1, calls100 = self.args.calls
        res = self.child(
            self.conveyor,
            "conveyor.online",
            self.last["conveyor_root"],
            "bench",
            self.end,
            calls1,
            calls100,
            "sqlite",
        )
        check_online("conveyor (SQLite)", res)
        log_online("conveyor-sqlite", res)
        return self.keep("online:conveyor-sqlite", res)

    def online_conveyor_redis(self, rep: int) -> float:
        calls1, calls100 = self.args.calls
        env = dict(self.env, CONVEYOR_ONLINE_URI=self.args.redis_url)
        project = f"bench_features_{os.getpid()}_{rep}"
        res = self.child(
            self.conveyor,
            "conveyor.online",
            self.new_dir("conveyor-redis"),
            project,
            self.end,
            calls1,
            calls100,
            "redis",
            env=env,
        )
        check_online("conveyor (Redis)", res)
        if res.get("left_keys"):
            log(f"warning: {res['left_keys']} keys of the bench project left in Redis")
        log_online("conveyor-redis", res)
        return self.keep("online:conveyor-redis", res)

    def online_feast(self, rep: int) -> float:
        assert self.feast is not None
        args = ["--worker", "online", "--offline", "dask", "--repo", self.last["feast_repo"]]
        args += ["--online-calls", self.args.feast_calls]
        res = last_json(self.peer(self.feast, "feast", "feast_bench.py", *args), "RESULT ")
        log_online("feast", res)
        return self.keep("online:feast", res)

    def online_limits(self) -> dict[str, Any]:
        """The peers' raw reads (NumPy, SQLite, Redis): one run of their script, own reps."""
        args = ["--calls", self.args.calls[0], "--reps", self.args.reps]
        args += ["--redis-port", free_port()]
        self.peer(self.conveyor, "limits", "limits_online_bench.py", *args)
        res: dict[str, Any] = json.loads((self.results / "limits_online_results.json").read_text())
        for name, store in res["stores"].items():
            log(
                f"  online {name:<16} 1: p50 {store['batch_1']['p50_us']:8.1f} us   "
                f"100: p50 {store['batch_100']['p50_us']:8.1f} us"
            )
        return res


def check_online(side: str, res: dict[str, Any]) -> None:
    """Stop when Conveyor's online values differ from the latest rows of the data."""
    if res["check"]["mismatched_entities"]:
        raise SystemExit(f"{side}: online values differ from the data: {res['check']}")


def log_online(side: str, res: dict[str, Any]) -> None:
    """Log the p50 of one online child."""
    log(
        f"  online {side:<16} 1: p50 {res['batch_1']['p50_us']:8.1f} us   "
        f"100: p50 {res['batch_100']['p50_us']:8.1f} us"
    )


# -------------------------------------------------------------------------------------------
# Figures and targets.
# -------------------------------------------------------------------------------------------

HIST_SIDES = {
    "conveyor": "Conveyor `historical`",
    "duckdb-asof": "DuckDB ASOF JOIN (limit)",
    "feast-dask": "Feast, default offline store (dask)",
    "feast-duckdb": "Feast, DuckDB offline store",
}
ONLINE_SIDES = {
    "conveyor-sqlite": "Conveyor `online`, SQLite",
    "conveyor-redis": "Conveyor `online`, Redis",
    "feast": "Feast `get_online_features().to_dict()`, SQLite",
    "sqlite": "raw SQLite, primary key, 10 REAL columns",
    "sqlite_blob": "raw SQLite, primary key, 80-byte BLOB",
    "redis_blob": "raw Redis GET / MGET, 80-byte blob per entity",
    "redis": "raw Redis HGETALL (100: pipelined)",
    "numpy": "in-process NumPy array (floor)",
}


def emit_runs(fig: Figures, bench: str, tool: str, runs: list[dict[str, Any]], **ctx: Any) -> None:
    """Emit the median seconds and peak memory of a side's historical or materialize runs."""
    secs = [float(r["seconds"]) for r in runs]
    extra: dict[str, Any] = {"samples": samples(secs), "n": len(runs), **ctx}
    if all("warm_seconds" in r for r in runs):
        extra["warm_s"] = rounded(median([r["warm_seconds"] for r in runs]))
    fig.emit(f"{bench}.s", tool, median(secs), "s", **extra)
    peaks = [float(r["peak_rss_mb"]) for r in runs]
    fig.emit(f"{bench}.peak_mb", tool, median(peaks), "MB", samples=samples(peaks))


def emit_online(fig: Figures, tool: str, runs: list[dict[str, Any]], **ctx: Any) -> None:
    """Emit the medians over runs of each percentile of a side's online reads."""
    for batch in (1, 100):
        for q in ("p50_us", "p99_us"):
            values = [float(r[f"batch_{batch}"][q]) for r in runs]
            fig.emit(f"online.{batch}.{q}", tool, median(values), "us", samples=samples(values))
    if ctx:
        print(json.dumps({"bench": "online.facts", "tool": tool, **ctx}), flush=True)


def target(
    targets: dict[str, dict[str, Any]],
    key: str,
    value: float,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    definition: str,
    per_rep: Sequence[float] = (),
) -> None:
    """Record and print whether one target of the issue is met."""
    met = (
        (at_most is None or value <= at_most)
        and (at_least is None or value >= at_least)
        and (below is None or value < below)
    )
    bound = (
        f"<= {at_most:g}"
        if at_most is not None
        else f">= {at_least:g}"
        if at_least is not None
        else f"< {below:g}"
    )
    rec: dict[str, Any] = {
        "bench": key,
        "tool": "target",
        "value": rounded(value),
        "target": bound,
        "met": met,
        "definition": definition,
    }
    if per_rep:
        rec["per_rep_range"] = [rounded(min(per_rep)), rounded(max(per_rep))]
    targets[key] = rec
    print(json.dumps(rec), flush=True)


def pair(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str, flip: bool) -> list[float]:
    """Per-rep ratios ``a/b`` (``b/a`` with ``flip``) of ``key`` over runs made side by side."""
    return [(y[key] / x[key]) if flip else (x[key] / y[key]) for x, y in zip(a, b, strict=False)]


def compute_targets(fig: Figures, bench: Bench) -> dict[str, dict[str, Any]]:
    """The issue's targets from the figures (medians); per-rep ranges where sides were paired."""
    targets: dict[str, dict[str, Any]] = {}
    runs, val = bench.runs, (lambda b, t: float((fig.get(b, t) or {"value": "nan"})["value"]))
    conv, lim = runs["hist:conveyor"], runs["hist:duckdb-asof"]
    target(
        targets,
        "historical.time",
        val("historical.s", "conveyor") / val("historical.s", "duckdb-asof"),
        at_most=HIST_TIME_MAX,
        definition="Conveyor seconds / DuckDB ASOF limit seconds (first call, medians)",
        per_rep=pair(conv, lim, "seconds", flip=False),
    )
    target(
        targets,
        "historical.memory",
        val("historical.peak_mb", "conveyor") / val("historical.peak_mb", "duckdb-asof"),
        at_most=HIST_MEM_MAX,
        definition="Conveyor peak RSS / DuckDB ASOF limit peak RSS (medians)",
        per_rep=pair(conv, lim, "peak_rss_mb", flip=False),
    )
    if "mat:feast" in runs:
        target(
            targets,
            "materialize",
            val("materialize.s", "feast") / val("materialize.s", "conveyor"),
            at_least=MATERIALIZE_MIN,
            definition="Feast seconds / Conveyor seconds, materialize to SQLite (medians)",
            per_rep=pair(runs["mat:conveyor"], runs["mat:feast"], "seconds", flip=True),
        )
    target(
        targets,
        "online.1.sqlite",
        val("online.1.p50_us", "conveyor-sqlite"),
        below=ONLINE_1_P50_US,
        definition="Conveyor online read of 1 entity, SQLite, p50 in us",
    )
    target(
        targets,
        "online.100.sqlite",
        val("online.100.p50_us", "conveyor-sqlite"),
        below=ONLINE_100_P50_US,
        definition="Conveyor online read of 100 entities, SQLite, p50 in us",
    )
    if fig.get("online.1.p50_us", "conveyor-redis") and fig.get("online.1.p50_us", "redis_blob"):
        for batch, raw in ((1, "GET"), (100, "MGET")):
            target(
                targets,
                f"online.{batch}.redis",
                val(f"online.{batch}.p50_us", "conveyor-redis")
                / val(f"online.{batch}.p50_us", "redis_blob"),
                at_most=REDIS_MAX,
                definition=f"Conveyor p50 on Redis / raw Redis {raw} p50, {batch} entit"
                + ("y" if batch == 1 else "ies"),
            )
    return targets


# -------------------------------------------------------------------------------------------
# docs/benchmarks.md
# -------------------------------------------------------------------------------------------

TITLE = "## Feature store (bench/features.py)"


def cell(fig: Figures, bench: str, tool: str, fmt: str = "{:,}") -> str:
    """Return a figure's value formatted for a table cell, or a dash."""
    row = fig.get(bench, tool)
    return "—" if row is None else fmt.format(row["value"])


def us(fig: Figures, bench: str, tool: str) -> str:
    """Return a latency figure in us or ms."""
    row = fig.get(bench, tool)
    if row is None:
        return "—"
    v = float(row["value"])
    return f"{v / 1000:,.2f} ms" if v >= 1000 else f"{v:,.1f} µs"


def render_section(
    fig: Figures, bench: Bench, targets: dict[str, dict[str, Any]], meta: dict[str, Any]
) -> str:
    """Return the Feature store section (between its markers) as markdown."""
    runs = bench.runs
    checks = meta["checks"]

    def correct(side: str) -> str:
        if side == "duckdb-asof":
            return "reference"
        c = checks.get({"conveyor": "conveyor_hist"}.get(side, side.replace("-", "_hist_")))
        if c is None:
            return "—"
        dropped = c["only_in_b"]
        if c["common_rows_value_mismatch"] == 0 and dropped == 0 and c["only_in_a"] == 0:
            return "identical" + (", rows in order" if side == "conveyor" else "")
        parts = []
        if dropped:
            parts.append(f"**{dropped:,} entity rows dropped**")
        if c["common_rows_value_mismatch"]:
            parts.append(f"**{c['common_rows_value_mismatch']:,} rows differ**")
        if not c["common_rows_value_mismatch"]:
            parts.append("values equal on the rows returned")
        return "; ".join(parts)

    hist_rows = []
    for side, label in HIST_SIDES.items():
        key = f"hist:{side}"
        if key not in runs:
            continue
        s = fig.get("historical.s", side) or {}
        rows_out = runs[key][0]["rows_out"]
        hist_rows.append(
            f"| {label} | {cell(fig, 'historical.s', side, '{:,} s')} "
            f"({min(s['samples']):g}..{max(s['samples']):g}) | "
            f"{s.get('warm_s', '—')} s | {cell(fig, 'historical.peak_mb', side, '{:,} MB')} | "
            f"{rows_out:,} | {correct(side)} |"
        )

    ref = meta["online_limits"].get("materialize_reference_s", {})
    by_hand = ref.get("duckdb_latest_per_entity_from_parquet", 0) + ref.get(
        "sqlite_wide_100k_rows", 0
    )
    mat_rows = []
    if "mat:conveyor" in runs:
        r = runs["mat:conveyor"][-1]
        mat_rows.append(
            f"| Conveyor `materialize`, SQLite | {cell(fig, 'materialize.s', 'conveyor', '{:,} s')}"
            f" | {cell(fig, 'materialize.peak_mb', 'conveyor', '{:,} MB')} | {r['rows']:,} "
            f"entities ({r.get('online_db_mb', '—')} MB file) |"
        )
    if "online:conveyor-redis" in runs:
        rr = runs["online:conveyor-redis"]
        mat_rows.append(
            "| Conveyor `materialize`, Redis | "
            f"{rounded(median([r['materialize_s'] for r in rr])):,} s | — | "
            f"{rr[-1]['materialized_rows']:,} entities |"
        )
    if "mat:feast" in runs:
        r = runs["mat:feast"][-1]
        written = sum(r.get("online_table_rows", {}).values())
        mat_rows.append(
            f"| Feast `materialize`, SQLite | {cell(fig, 'materialize.s', 'feast', '{:,} s')} | "
            f"{cell(fig, 'materialize.peak_mb', 'feast', '{:,} MB')} | {written:,} rows, one per "
            f"(entity, feature) ({r['online_db_mb']:.0f} MB file) |"
        )
    if by_hand:
        mat_rows.append(
            f"| by hand: DuckDB latest row per entity + SQLite `executemany` (peers' floor, "
            f"1 run) | {rounded(by_hand):,} s | — | {meta['entities']:,} entities |"
        )

    online_rows = []
    limits = meta["online_limits"].get("stores", {})
    for side, label in ONLINE_SIDES.items():
        if fig.get("online.1.p50_us", side) is None:
            continue
        if side.startswith("conveyor"):
            c = runs[f"online:{side}"][-1]["check"]
            checked = f"{c['entities']} ids, 0 mismatches ({c['none']} expired: None)"
        elif side == "feast":
            c = runs["online:feast"][-1]["check"]
            checked = (
                f"{c['entities']} ids, {c['value_mismatches']} mismatches, {c['none_values']} None"
            )
        else:
            checked = f"200 ids, {limits[side]['check_mismatched_entities']} mismatches"
        online_rows.append(
            f"| {label} | {us(fig, 'online.1.p50_us', side)} | {us(fig, 'online.1.p99_us', side)}"
            f" | {us(fig, 'online.100.p50_us', side)} | {us(fig, 'online.100.p99_us', side)} | "
            f"{checked} |"
        )

    def met(key: str) -> str:
        t = targets.get(key)
        return "—" if t is None else ("yes" if t["met"] else "**no**")

    def tval(key: str, unit: str = "x") -> str:
        t = targets.get(key)
        if t is None:
            return "—"
        rng = t.get("per_rep_range")
        if unit == "us":
            return f"{t['value']:,.1f} µs"
        extra = f" ({rng[0]:.2f} to {rng[1]:.2f})" if rng else ""
        return f"{t['value']:.2f}x{extra}"

    target_rows = [
        f"| historical retrieval, time: Conveyor / DuckDB limit | {tval('historical.time')} "
        f"| ≤ {HIST_TIME_MAX:g}x | {met('historical.time')} |",
        f"| historical retrieval, peak memory: Conveyor / DuckDB limit | "
        f"{tval('historical.memory')} | ≤ {HIST_MEM_MAX:g}x | {met('historical.memory')} |",
        f"| materialize: Feast / Conveyor | {tval('materialize')} | ≥ {MATERIALIZE_MIN:g}x | "
        f"{met('materialize')} |",
        f"| online, SQLite, 1 entity: p50 | {tval('online.1.sqlite', 'us')} | "
        f"< {ONLINE_1_P50_US:g} µs | {met('online.1.sqlite')} |",
        f"| online, SQLite, 100 entities: p50 | {tval('online.100.sqlite', 'us')} | "
        f"< {ONLINE_100_P50_US / 1000:g} ms | {met('online.100.sqlite')} |",
        f"| online, Redis, 1 entity: Conveyor p50 / raw GET p50 | {tval('online.1.redis')} | "
        f"≤ {REDIS_MAX:g}x | {met('online.1.redis')} |",
        f"| online, Redis, 100 entities: Conveyor p50 / raw MGET p50 | "
        f"{tval('online.100.redis')} | ≤ {REDIS_MAX:g}x | {met('online.100.redis')} |",
    ]

    def speedup(bench_name: str, peer: str) -> str:
        a, b = fig.get(bench_name, "conveyor"), fig.get(bench_name, peer)
        return "—" if not a or not b else f"{float(b['value']) / float(a['value']):.1f}x"

    versions = meta["versions"]
    warm = [fig.get("historical.s", side) or {} for side in ("conveyor", "duckdb-asof")]
    warm_ratio = (
        f"{warm[0]['warm_s'] / warm[1]['warm_s']:.2f}x" if all("warm_s" in w for w in warm) else "—"
    )
    intro = (
        f"The workload of the feature-store issue on the same generated data for every system "
        f"(the peers' `limits_data.py`, seed {meta['seed']}): a feature table of "
        f"{meta['rows']:,} rows ({meta['entities']:,} entities, 10 float64 features, 30 days), "
        f"an entity frame of {meta['entity_rows']:,} rows, TTL 7 days. Conveyor "
        f"{versions['conveyor']} against Feast {versions.get('feast', '—')} (local provider, "
        "SQLite online store; installed by the script into `.bench/venvs/feast`) and against "
        "hand-written limits, all run by the peers' scripts in `shared/bench/peers` unchanged. "
        "Historical retrieval: the entity frame is already in memory as a pandas DataFrame; "
        "reading the Parquet file, the point-in-time join and the result as a DataFrame are "
        "timed, as the first call in a fresh process (Feast's includes its lazy imports, "
        "Conveyor's its import of DuckDB); peak memory is that process's `ru_maxrss` after "
        "the call; a second call in the same process gives the warm time. Each result is "
        "checked row by row against the DuckDB ASOF JOIN limit's. Materialization writes the "
        "latest values at the end of the data to the SQLite online store of a fresh project. "
        "Online reads are timed call by call in process after a warm-up. Measured "
        f"{meta['date']} on {meta['machine']}: absolute figures are noisy, the ratios measured "
        f"side by side are what count. Medians of {meta['reps']} reps, each a fresh process, "
        "the sides alternating rep by rep; in brackets the lowest and highest of the reps."
    )
    notes = (
        f"Notes: Conveyor is {speedup('historical.s', 'feast-dask')} faster than Feast's "
        f"default offline store on historical retrieval and "
        f"{speedup('historical.s', 'feast-duckdb')} faster than its DuckDB one; the DuckDB "
        "limit runs with Conveyor's interpreter, so on the same DuckDB "
        f"({versions.get('duckdb', '—')}); on the warm (second) calls, Conveyor / limit is "
        f"{warm_ratio}. Conveyor's materialization honours the TTL: it "
        f"writes the {meta['materialized']:,} entities whose latest row is at most 7 days "
        "older than the end of the data and none of the others, which online reads then return "
        "as None; Feast writes every entity's latest row (it ignores the TTL online). The "
        "online reads draw their ids among the materialized entities. Conveyor's Redis figures "
        f"use the Redis at `{meta['redis']}` (a project of its own, deleted afterwards); the "
        "raw Redis reads use the `redis-server` that `limits_online_bench.py` starts on a free "
        f"loopback port (redis-py {versions.get('redis', '—')}, no hiredis). Online call counts "
        f"per run: Conveyor {meta['calls'][0]:,} (1 entity) and {meta['calls'][1]:,} (100 "
        f"entities); Feast {meta['feast_calls']} and half as many; raw reads "
        f"{meta['calls'][0]:,} and a quarter as many, {meta['reps']} runs each. "
        f"Load average {meta['load_start']} at the start, {meta['load_end']} at the end (at "
        f"the start of each phase: {meta['loads']})."
    )
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        TITLE,
        "",
        textwrap.fill(intro, 100),
        "",
        "| target (from the issue) | measured (per-rep range) | target | met |",
        "| --- | --- | --- | --- |",
        *target_rows,
        "",
        f"Historical retrieval ({meta['entity_rows']:,} entity rows x {meta['rows']:,} feature "
        "rows):",
        "",
        "| system | first call (min..max) | warm call | peak RSS | rows out | result vs limit |",
        "| --- | --- | --- | --- | --- | --- |",
        *hist_rows,
        "",
        "Materialization to the online store:",
        "",
        "| system | seconds | peak RSS | written |",
        "| --- | --- | --- | --- |",
        *mat_rows,
        "",
        "Online reads of 10 float features:",
        "",
        "| system | 1 entity p50 | 1 entity p99 | 100 entities p50 | 100 entities p99 "
        "| values checked |",
        "| --- | --- | --- | --- | --- | --- |",
        *online_rows,
        "",
        textwrap.fill(notes, 100),
        "",
        textwrap.fill(
            "Reproduce from the repository root (installs Feast into `.bench/venvs/feast` on "
            "first use; runs the peers' scripts from `shared/bench/peers`, or `--peers-dir`; "
            "the Redis figures need `redis-server` on the PATH and a Redis at `--redis-url`):",
            100,
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
    """Parse the command line; ``--quick`` shrinks the data, the reps and the call counts."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, help="repetitions per figure (default 3; --quick: 1)")
    ap.add_argument("--quick", action="store_true", help="smoke run; docs are left unchanged")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--no-feast", action="store_true", help="leave Feast out")
    ap.add_argument("--no-redis", action="store_true", help="leave the Redis figures out")
    ap.add_argument("--redis-url", default=REDIS_URL, help="Redis for Conveyor's Redis store")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also run Conveyor's historical and materialize once under cProfile "
        "(written to .bench/features/profiles/)",
    )
    ap.add_argument("--peers-dir", type=Path, default=PEERS_DIR, help="the peers' scripts")
    ap.add_argument("--feast-venv", type=Path, default=FEAST_VENV, help="Feast's venv")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 3)
    args.sizes = QUICK_SIZES if args.quick else FULL_SIZES
    args.calls = (400, 50) if args.quick else (2000, 200)
    args.feast_calls = 100 if args.quick else 400
    return args


def conveyor_has_features(python: Path) -> str:
    """Return what is missing from this Conveyor's feature-store API ('' when complete)."""
    code = (
        "import conveyor as cv, conveyor.features as f\n"
        "need = ['Entity', 'FeatureView', 'Field', 'ParquetSource', 'apply', 'historical', "
        "'materialize', 'online']\n"
        "print(','.join(n for n in need if not hasattr(f, n)))"
    )
    proc = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, env=child_env(), check=False
    )
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["import failed"])[-1]
    return proc.stdout.strip()


def main(argv: Sequence[str]) -> int:
    """Run the feature-store workloads on Conveyor, Feast and the limits; report the figures."""
    if argv[:1] == ["--child"]:
        run_child(argv[1], argv[2:])
        return 0
    args = parse_args(argv)
    absent = [f for f in PEER_FILES if not (args.peers_dir / f).is_file()]
    if absent:
        raise SystemExit(f"{', '.join(absent)} not found in {args.peers_dir} (--peers-dir)")
    lim = import_peers_data(args.peers_dir)
    conveyor = Path(sys.executable)
    missing = conveyor_has_features(conveyor)
    if missing:
        raise SystemExit(f"Conveyor has no feature-store API here ({missing})")
    package = REPO / "src" / "conveyor"
    if package.is_dir():  # an editable install: compile once, as a wheel install would
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    feast = (
        None
        if args.no_feast
        else ensure_peer_venv(args.feast_venv, lim.PIP_SPECS["feast"], "Feast")
    )
    if not args.no_redis and not shutil.which("redis-server"):
        log("redis-server is not on the PATH: no Redis figures")
        args.no_redis = True
    if not args.no_redis and not redis_reachable(args.redis_url):
        log(f"nothing listens at {args.redis_url}: no Redis figures")
        args.no_redis = True

    rows, entities, entity_rows = args.sizes
    data_dir = WORK_ROOT / "data" / f"{rows}-{entities}-{entity_rows}"
    data_dir.mkdir(parents=True, exist_ok=True)
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    scratch = WORK_ROOT / f"run-{os.getpid()}"
    scratch.mkdir()
    env = child_env()
    env.update(
        ANCHORS_FS_ROOT=str(scratch / "fs"),
        ANCHORS_DATA_DIR=str(data_dir),
        FEAST_VENV=str(args.feast_venv),
        LIMITS_VENV=sys.prefix,
        FEAST_USAGE="False",
        FEATURES_BENCH_PEERS=str(args.peers_dir),
    )
    end = (
        dt.datetime.fromisoformat(lim.T0).replace(tzinfo=dt.UTC) + dt.timedelta(days=lim.SPAN_DAYS)
    ).isoformat()
    load_start = load()
    loads: list[float] = []
    fig = Figures()
    try:
        bench = Bench(args, scratch, conveyor, feast, env, end)
        data = bench.child(conveyor, "data", rows, entities, entity_rows)
        log(
            f"data: {data['features']['rows']:,} feature rows, {data['entity_df']['rows']:,} "
            f"entity rows in {data['folder']} ({data['seconds']:.1f} s)"
        )
        versions = bench.child(
            conveyor, "versions", "conveyor-mlops", "duckdb", "pandas", "pyarrow", "numpy", "redis"
        )
        versions["conveyor"] = (
            versions.pop("conveyor-mlops")
            or spawn(
                [conveyor, "-c", "import conveyor; print(conveyor.__version__)"], env, scratch
            ).strip()
        )
        if feast is not None:
            fv = bench.child(feast, "versions", "feast", "dask", "pandas", "duckdb", "pyarrow")
            versions["feast"] = fv["feast"]
            versions["feast_venv"] = fv
        print(
            json.dumps(
                {
                    "bench": "info",
                    "versions": versions,
                    "data": data,
                    "end": end,
                    "peer_files": {f: file_digest(args.peers_dir / f) for f in PEER_FILES},
                    "cpus": os.cpu_count(),
                    "loadavg_1m": load_start,
                    "reps": args.reps,
                    "redis": None if args.no_redis else args.redis_url,
                }
            ),
            flush=True,
        )

        offlines = [] if feast is None else ["dask", "duckdb"]
        bench.hist_setup(offlines)
        loads.append(load())
        log(f"historical retrieval: {args.reps} reps (load average {loads[-1]})")
        steps: dict[str, Callable[[int], float]] = {
            "conveyor": bench.hist_conveyor,
            "duckdb-asof": bench.hist_limit,
            **{f"feast-{o}": bench.hist_feast(o) for o in offlines},
        }
        interleave(args.reps, steps)
        checks = bench.child(conveyor, "check", bench.results)
        print(json.dumps({"bench": "historical.check", **checks}), flush=True)
        c = checks.get("conveyor_hist")
        if c is None or c["common_rows_value_mismatch"] or c["only_in_a"] or c["only_in_b"]:
            raise SystemExit(f"Conveyor's historical result differs from the DuckDB limit: {c}")
        for side in steps:
            emit_runs(fig, "historical", side, bench.runs[f"hist:{side}"])

        loads.append(load())
        log(f"materialize: {args.reps} reps (load average {loads[-1]})")
        mat_steps: dict[str, Callable[[int], float]] = {"conveyor": bench.mat_conveyor}
        if feast is not None:
            mat_steps["feast"] = bench.mat_feast
        interleave(args.reps, mat_steps)
        for side in mat_steps:
            runs = bench.runs[f"mat:{side}"]
            rows_ctx = {"rows": runs[-1]["rows"]} if "rows" in runs[-1] else {}
            emit_runs(fig, "materialize", side, runs, **rows_ctx)

        loads.append(load())
        log(f"online reads: {args.reps} reps (load average {loads[-1]})")
        on_steps: dict[str, Callable[[int], float]] = {"conveyor-sqlite": bench.online_conveyor}
        if feast is not None:
            on_steps["feast"] = bench.online_feast
        if not args.no_redis:
            on_steps["conveyor-redis"] = bench.online_conveyor_redis
        interleave(args.reps, on_steps)
        for side in on_steps:
            emit_online(fig, side, bench.runs[f"online:{side}"])
        online_limits = bench.online_limits()
        for name, store in online_limits["stores"].items():
            for batch in (1, 100):
                for q in ("p50_us", "p99_us"):
                    fig.emit(f"online.{batch}.{q}", name, store[f"batch_{batch}"][q], "us")
        print(
            json.dumps({"bench": "materialize.limit", **online_limits["materialize_reference_s"]}),
            flush=True,
        )

        if args.profile:
            profiles = WORK_ROOT / "profiles"
            profiles.mkdir(exist_ok=True)
            log(f"profiling Conveyor's historical and materialize into {profiles}")
            bench.hist_conveyor(1, str(profiles / "historical.txt"))
            bench.mat_conveyor(1, str(profiles / "materialize.txt"))
            bench.runs["hist:conveyor"].pop()
            bench.runs["mat:conveyor"].pop()
        targets = compute_targets(fig, bench)
    finally:
        if args.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    for key, rec in targets.items():
        log(f"{key}: {rec['value']} (target {rec['target']}: {'met' if rec['met'] else 'NOT met'})")
    load_end = load()
    if args.quick or args.no_docs:
        log("docs/benchmarks.md left unchanged (--quick or --no-docs)")
        return 0
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, shared with other work ({platform.machine()}, Linux, "
        f"Python {versions['python']})",
        "reps": args.reps,
        "seed": data["manifest"]["seed"],
        "rows": rows,
        "entities": entities,
        "entity_rows": entity_rows,
        "versions": versions,
        "checks": checks,
        "online_limits": online_limits,
        "materialized": bench.runs["mat:conveyor"][-1]["rows"],
        "calls": args.calls,
        "feast_calls": args.feast_calls,
        "redis": "—" if args.no_redis else args.redis_url,
        "load_start": f"{load_start:.1f}",
        "load_end": f"{load_end:.1f}",
        "loads": ", ".join(f"{v:.1f}" for v in loads),
        "command": " ".join([".venv/bin/python", "bench/features.py", *argv]),
    }
    update_docs(DOCS, SECTION, render_section(fig, bench, targets, meta))
    log(f"updated {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
