"""Foundation benchmark: Conveyor's metadata and artifact store side by side with MLflow.

Run from the repository root::

    .venv/bin/python bench/foundation.py            # full run, updates docs/benchmarks.md
    .venv/bin/python bench/foundation.py --quick    # smoke run (2 reps, 16 MiB), docs untouched

MLflow is installed on first use into its own virtual environment, ``.bench/venvs/mlflow``
(ignored by git). Every workload runs in subprocesses: Conveyor's side with this interpreter,
MLflow's with that venv's, alternating rep by rep so that load from other work on the machine
hits both sides alike. Each figure is printed as one JSON line; each pair ends with a ratio
line whose value is how many times faster Conveyor is (above 1: Conveyor is faster).

This file is also the child script: ``python foundation.py --child OP ARGS...`` runs one
measurement and prints its result as JSON. Only the standard library (and ``bench/_common.py``,
which uses nothing else) is imported at the top, so the MLflow venv can run it too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
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
    elapsed,
    ensure_mlflow_venv,
    fmt,
    interleave,
    log,
    median,
    rounded,
    samples,
    section_footer,
    sqlite_uri,
    update_docs,
)

SECTION = "foundation"
CHILD_TIMEOUT_S = 900
MB = 1_000_000
MIB = 1024 * 1024

# -------------------------------------------------------------------------------------------
# Child side: one measurement per process, result printed as one JSON object.
# -------------------------------------------------------------------------------------------


def child_conveyor_fresh(work: str) -> dict[str, Any]:
    """Create and migrate a new Conveyor store, then write a project; time it after imports."""
    from conveyor.store.metadata.store import MetadataStore

    uri = sqlite_uri(Path(work) / "c.db")
    return {"s": elapsed(lambda: MetadataStore(uri).open().ensure_project("p"))}


def child_conveyor_reopen(work: str) -> dict[str, Any]:
    """Open an up-to-date Conveyor store and read one project; time it after imports."""
    from conveyor.store.metadata.store import MetadataStore

    uri = sqlite_uri(Path(work) / "c.db")
    found: list[Any] = []
    seconds = elapsed(lambda: found.append(MetadataStore(uri).open().find_project("p")))
    if found[0] is None:
        raise SystemExit("project 'p' not found in the re-opened Conveyor store")
    return {"s": seconds}


def child_mlflow_fresh(work: str) -> dict[str, Any]:
    """Create and migrate a new MLflow SQLite store with one experiment; time it after imports."""
    import mlflow

    uri = sqlite_uri(Path(work) / "m.db")

    def first_write() -> None:
        mlflow.set_tracking_uri(uri)
        mlflow.MlflowClient().create_experiment("p")

    return {"s": elapsed(first_write)}


def child_mlflow_reopen(work: str) -> dict[str, Any]:
    """Open an existing MLflow SQLite store and read one experiment; time it after imports."""
    import mlflow

    uri = sqlite_uri(Path(work) / "m.db")
    found: list[Any] = []
    seconds = elapsed(lambda: found.append(mlflow.MlflowClient(uri).get_experiment_by_name("p")))
    if found[0] is None:
        raise SystemExit("experiment 'p' not found in the re-opened MLflow store")
    return {"s": seconds}


def child_conveyor_put(src: str, work: str) -> dict[str, Any]:
    """Store the file ``src`` in a new artifact store under ``work``; time the put."""
    from conveyor.store.artifacts.cas import ArtifactStore

    store = ArtifactStore(str(Path(work) / "objects"))
    result: list[Any] = []
    seconds = elapsed(lambda: result.append(store.put(src)))
    return {"s": seconds, "digest": result[0].digest, "created": result[0].created}


def child_conveyor_read(work: str, digest: str) -> dict[str, Any]:
    """Read ``digest`` back from the store under ``work`` with ``get`` and with ``verify``."""
    from conveyor.store.artifacts.cas import ArtifactStore

    store = ArtifactStore(str(Path(work) / "objects"))
    size: list[int] = []
    get_s = elapsed(lambda: size.append(len(store.get(digest))))
    verify_s = elapsed(lambda: store.verify(digest))
    return {"get_s": get_s, "verify_s": verify_s, "bytes": size[0]}


def child_floor_put(src: str, work: str) -> dict[str, Any]:
    """Time the floor of a content-addressed put: sha256 the file, then copy it (and fsync)."""
    dest = Path(work) / "copy.bin"
    t0 = time.perf_counter()
    with open(src, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    shutil.copyfile(src, dest)
    t1 = time.perf_counter()
    with open(dest, "rb+") as f:
        os.fsync(f.fileno())
    t2 = time.perf_counter()
    return {"s": t1 - t0, "s_with_fsync": t2 - t0, "digest": digest}


def child_floor_read(path: str) -> dict[str, Any]:
    """Time the floor of a verified read: sha256 of the stored file."""
    with open(path, "rb") as f:
        t0 = time.perf_counter()
        hashlib.file_digest(f, "sha256")
        return {"s": time.perf_counter() - t0}


def child_mlflow_log_artifact(src: str, work: str) -> dict[str, Any]:
    """Log ``src`` with ``mlflow.log_artifact`` in a run with a local file artifact root."""
    import mlflow

    mlflow.set_tracking_uri(sqlite_uri(Path(work) / "m.db"))
    root = (Path(work) / "artifacts").resolve().as_uri()
    experiment_id = mlflow.MlflowClient().create_experiment("p", artifact_location=root)
    with mlflow.start_run(experiment_id=experiment_id):
        seconds = elapsed(lambda: mlflow.log_artifact(src))
    return {"s": seconds}


def child_conveyor_lineage(work: str, n_tx: str, chain: str, reps: str) -> dict[str, Any]:
    """Time write transactions (one edge + one audit event each) and a long upstream walk."""
    from conveyor.store.metadata.store import MetadataStore
    from conveyor.store.records import ObjectRef

    n, length, times = int(n_tx), int(chain), int(reps)

    def one_tx(store: MetadataStore, i: int) -> None:
        with store.transaction() as uow:
            uow.link(ObjectRef("run", f"r{i}"), ObjectRef("model_version", f"m{i}"), "produced")
            uow.audit("x.create", ObjectRef("model_version", f"m{i}"))

    tx_rates = []
    for rep in range(times):
        store = MetadataStore(sqlite_uri(Path(work) / f"tx{rep}.db")).open()
        store.ensure_project("p")
        for i in range(20):  # warm-up: connection pool, statement cache
            one_tx(store, -1 - i)
        seconds = elapsed(lambda s=store: [one_tx(s, i) for i in range(n)])
        tx_rates.append(n / seconds)
        store.close()

    store = MetadataStore(sqlite_uri(Path(work) / "chain.db")).open()
    nodes = [ObjectRef("dataset_version", f"d{i}") for i in range(length)]
    with store.transaction() as uow:
        for src, dst in itertools.pairwise(nodes):
            uow.link(src, dst, "derived")
    store.lineage(nodes[-1], direction="upstream")  # warm-up
    walk_ms, edges = [], 0
    for _ in range(times):
        t0 = time.perf_counter()
        graph = store.lineage(nodes[-1], direction="upstream")
        walk_ms.append((time.perf_counter() - t0) * 1e3)
        edges = len(graph.edges)
    store.close()
    return {
        "tx_per_s": tx_rates,
        "walk_ms": walk_ms,
        "edges_returned": edges,
    }


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "conveyor.fresh": child_conveyor_fresh,
    "conveyor.reopen": child_conveyor_reopen,
    "conveyor.put": child_conveyor_put,
    "conveyor.read": child_conveyor_read,
    "conveyor.lineage": child_conveyor_lineage,
    "floor.put": child_floor_put,
    "floor.read": child_floor_read,
    "mlflow.fresh": child_mlflow_fresh,
    "mlflow.reopen": child_mlflow_reopen,
    "mlflow.log_artifact": child_mlflow_log_artifact,
}


def run_child(op: str, argv: Sequence[str]) -> None:
    """Run the measurement ``op`` in this process and print its result as JSON."""
    print(json.dumps(CHILDREN[op](*argv)), flush=True)


# -------------------------------------------------------------------------------------------
# Parent side: environments, subprocesses, figures.
# -------------------------------------------------------------------------------------------


def bench_import(run: Runner, fig: Figures, reps: int) -> None:
    """Workload 1: ``import conveyor`` vs ``import mlflow`` in fresh interpreters."""
    log("import time")
    empty = run.new_dir("import")
    for tool in ("conveyor", "mlflow"):  # warm-up: page cache, bytecode
        run.import_time(tool, tool, empty)
    got = interleave(
        reps,
        {
            tool: (lambda _rep, t=tool: run.import_time(t, t, empty))
            for tool in ("conveyor", "mlflow")
        },
    )
    for tool, values in got.items():
        ms = [v * 1e3 for v in values]
        fig.emit("import", tool, median(ms), "ms", reps=reps, samples=samples(ms))
    fig.ratio("import", "mlflow", higher_is_better=False)


def bench_metadata(run: Runner, fig: Figures, reps: int) -> None:
    """Workloads 2 and 3: a brand-new store with a first write; re-opening it with one read."""
    log("new store + first write")
    for tool in ("conveyor", "mlflow"):  # warm-up
        run.child(f"{tool}.fresh", run.new_dir(f"warm-{tool}"))

    def fresh(tool: str) -> Callable[[int], float]:
        def step(_rep: int) -> float:
            work = run.new_dir(f"fresh-{tool}")
            return float(run.child(f"{tool}.fresh", work, cwd=work)["s"]) * 1e3

        return step

    got = interleave(reps, {t: fresh(t) for t in ("conveyor", "mlflow")})
    for tool, ms in got.items():
        fig.emit(
            "store.new_and_first_write", tool, median(ms), "ms", reps=reps, samples=samples(ms)
        )
    fig.ratio("store.new_and_first_write", "mlflow", higher_is_better=False)

    log("re-open store + one read")
    stores = {}
    for tool in ("conveyor", "mlflow"):
        stores[tool] = run.new_dir(f"reopen-{tool}")
        run.child(f"{tool}.fresh", stores[tool], cwd=stores[tool])
        run.child(f"{tool}.reopen", stores[tool], cwd=stores[tool])  # warm-up

    def reopen(tool: str) -> Callable[[int], float]:
        return lambda _rep: float(run.child(f"{tool}.reopen", stores[tool], cwd=stores[tool])["s"])

    got = interleave(reps, {t: reopen(t) for t in ("conveyor", "mlflow")})
    for tool, values in got.items():
        ms = [v * 1e3 for v in values]
        fig.emit("store.reopen_and_read", tool, median(ms), "ms", reps=reps, samples=samples(ms))
    fig.ratio("store.reopen_and_read", "mlflow", higher_is_better=False)


def bench_lineage(run: Runner, fig: Figures, reps: int, n_tx: int, chain: int) -> None:
    """Workload 4 (Conveyor only): edge + audit transactions, and a long upstream walk."""
    log(f"{n_tx} lineage + audit transactions, upstream walk over a {chain}-node chain")
    work = run.new_dir("lineage")
    res = run.child("conveyor.lineage", work, n_tx, chain, reps, cwd=work)
    fig.emit(
        "lineage.tx_edge_and_audit",
        "conveyor",
        median(res["tx_per_s"]),
        "tx/s",
        peer=None,
        transactions=n_tx,
        reps=reps,
        samples=samples(res["tx_per_s"]),
        note="each transaction: BEGIN IMMEDIATE, 1 lineage edge, 1 audit event, commit",
    )
    fig.emit(
        "lineage.upstream_walk",
        "conveyor",
        median(res["walk_ms"]),
        "ms",
        peer=None,
        chain_nodes=chain,
        edges_returned=res["edges_returned"],
        reps=reps,
        samples=samples(res["walk_ms"]),
    )


def write_random_file(path: Path, size: int) -> None:
    """Write ``size`` random bytes to ``path``."""
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 8 * MIB)
            f.write(os.urandom(n))
            left -= n


def bench_artifacts(run: Runner, fig: Figures, reps: int, size_mib: int) -> None:
    """Workload 5: artifact put vs the hash+copy floor vs MLflow; verified reads vs hash floor."""
    log(f"artifacts: {size_mib} MiB file")
    size = size_mib * MIB
    src = run.new_dir("source") / "payload.bin"
    write_random_file(src, size)
    os.sync()

    def rate(seconds: float) -> float:
        return size / MB / seconds

    reads: dict[str, list[float]] = {"get": [], "verify": [], "floor": []}
    floor_fsync: list[float] = []

    def conveyor_put(_rep: int) -> float:
        work = run.new_dir("put-conveyor")
        res = run.child("conveyor.put", src, work, cwd=work)
        os.sync()
        back = run.child("conveyor.read", work, res["digest"], cwd=work)
        stored = work / "objects" / res["digest"][:2] / res["digest"][2:]
        reads["get"].append(rate(back["get_s"]))
        reads["verify"].append(rate(back["verify_s"]))
        reads["floor"].append(rate(run.child("floor.read", stored, cwd=work)["s"]))
        shutil.rmtree(work)
        os.sync()
        return rate(res["s"])

    def floor_put(_rep: int) -> float:
        work = run.new_dir("put-floor")
        res = run.child("floor.put", src, work, cwd=work)
        floor_fsync.append(rate(res["s_with_fsync"]))
        shutil.rmtree(work)
        os.sync()
        return rate(res["s"])

    def mlflow_put(_rep: int) -> float:
        work = run.new_dir("put-mlflow")
        res = run.child("mlflow.log_artifact", src, work, cwd=work)
        shutil.rmtree(work)
        os.sync()
        return rate(res["s"])

    for step in (conveyor_put, floor_put, mlflow_put):  # warm-up
        step(-1)
    for values in (*reads.values(), floor_fsync):
        values.clear()
    got = interleave(reps, {"conveyor": conveyor_put, "floor": floor_put, "mlflow": mlflow_put})
    ctx = {"size_mib": size_mib, "reps": reps}
    fig.emit(
        "artifact.put",
        "conveyor",
        median(got["conveyor"]),
        "MB/s",
        samples=samples(got["conveyor"]),
        note="ArtifactStore(dir).put(path): sha256 the file, then copy through a hashing "
        "stream to a temp file, fsync, rename",
        **ctx,
    )
    fig.emit(
        "artifact.put",
        "floor",
        median(got["floor"]),
        "MB/s",
        samples=samples(got["floor"]),
        with_fsync_mb_s=rounded(median(floor_fsync)),
        note="hashlib.file_digest sha256 + shutil.copyfile, no fsync",
        **ctx,
    )
    fig.emit(
        "artifact.put",
        "mlflow",
        median(got["mlflow"]),
        "MB/s",
        samples=samples(got["mlflow"]),
        note="mlflow.log_artifact(path) in a run, local file artifact root",
        **ctx,
    )
    fig.ratio("artifact.put", "floor", higher_is_better=True, key="artifact.put.floor")
    fig.ratio("artifact.put", "mlflow", higher_is_better=True)
    for key, label, note in (
        ("get", "artifact.read_get", "ArtifactStore.get(digest): whole content, verified"),
        ("verify", "artifact.read_verify", "ArtifactStore.verify(digest): streamed, verified"),
    ):
        fig.emit(
            label,
            "conveyor",
            median(reads[key]),
            "MB/s",
            samples=samples(reads[key]),
            note=note,
            **ctx,
        )
        fig.emit(
            label,
            "floor",
            median(reads["floor"]),
            "MB/s",
            samples=samples(reads["floor"]),
            note="hashlib.file_digest sha256 of the stored object",
            **ctx,
        )
        fig.ratio(label, "floor", higher_is_better=True)


# -------------------------------------------------------------------------------------------
# docs/benchmarks.md
# -------------------------------------------------------------------------------------------


def render_section(fig: Figures, meta: dict[str, Any]) -> str:
    """Return the Foundation section (between its markers) as markdown."""

    get = fig.get

    def ratio(key: str) -> str:
        r = fig.ratios.get(key)
        if r is None:
            return "—"
        low, high = r.get("per_rep_range", (r["value"], r["value"]))
        return f"**{r['value']:.2f}x** ({low:.2f} to {high:.2f})"

    size = meta["size_mib"]
    walk = get("lineage.upstream_walk", "conveyor") or {}
    floor_fsync = (get("artifact.put", "floor") or {}).get("with_fsync_mb_s", "?")
    intro = (
        "The metadata store and the artifact store, against MLflow "
        f"{meta['mlflow_version']} (SQLite tracking store, local file artifact root). "
        f"Measured {meta['date']} on {meta['machine']}: absolute figures are noisy, the ratios "
        f"measured side by side are what count. Medians of {meta['reps']} repetitions; the two "
        "sides alternate rep by rep. Ratio: how many times faster Conveyor is (above 1: faster), "
        "from the medians; in brackets the lowest and highest ratio of one rep's pair."
    )
    notes = (
        "Notes: import time is the `import` statement alone, in a fresh interpreter "
        "(interpreter start-up excluded). Store timings run in a fresh process, start after "
        "the imports and include engine creation and migrations. Conveyor's put hashes, "
        "fsyncs the temporary file and renames it; the floor and MLflow's `log_artifact` (a "
        "plain file copy) do not fsync — the floor with an fsync reached "
        f"{floor_fsync} MB/s. MLflow runs with telemetry off (`MLFLOW_DISABLE_TELEMETRY=true`). "
        f"Load average {meta['load_start']} at the start, {meta['load_end']} at the end."
    )
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        "## Foundation (bench/foundation.py)",
        "",
        textwrap.fill(intro, 100),
        "",
        "| workload | Conveyor | peer | peer figure | ratio (per-rep range) |",
        "| --- | --- | --- | --- | --- |",
        f"| `import` in a fresh interpreter | {fmt(get('import', 'conveyor'))} | MLflow "
        f"| {fmt(get('import', 'mlflow'))} | {ratio('import')} |",
        "| new SQLite store (create + migrate) and first write, fresh process, after imports "
        f"| {fmt(get('store.new_and_first_write', 'conveyor'))} | MLflow "
        f"| {fmt(get('store.new_and_first_write', 'mlflow'))} "
        f"| {ratio('store.new_and_first_write')} |",
        "| re-open an up-to-date store and read one project/experiment, fresh process "
        f"| {fmt(get('store.reopen_and_read', 'conveyor'))} | MLflow "
        f"| {fmt(get('store.reopen_and_read', 'mlflow'))} "
        f"| {ratio('store.reopen_and_read')} |",
        f"| {meta['n_tx']:,} transactions, each one lineage edge + one audit event "
        f"| {fmt(get('lineage.tx_edge_and_audit', 'conveyor'))} | — | no equivalent | — |",
        f"| lineage upstream over a {meta['chain']:,}-node chain "
        f"({walk.get('edges_returned', '?')} edges returned) "
        f"| {fmt(walk or None)} | — | no equivalent | — |",
        f"| put a {size} MiB file (`ArtifactStore.put`) "
        f"| {fmt(get('artifact.put', 'conveyor'))} | MLflow `log_artifact` "
        f"| {fmt(get('artifact.put', 'mlflow'))} | {ratio('artifact.put')} |",
        f"| put a {size} MiB file (`ArtifactStore.put`) "
        f"| {fmt(get('artifact.put', 'conveyor'))} | floor: sha256 + `shutil.copyfile` "
        f"| {fmt(get('artifact.put', 'floor'))} | {ratio('artifact.put.floor')} |",
        f"| verified read, `get(digest)` (whole {size} MiB in memory) "
        f"| {fmt(get('artifact.read_get', 'conveyor'))} | floor: sha256 of the stored file "
        f"| {fmt(get('artifact.read_get', 'floor'))} | {ratio('artifact.read_get')} |",
        "| verified read, `verify(digest)` (streamed) "
        f"| {fmt(get('artifact.read_verify', 'conveyor'))} | floor: sha256 of the stored file "
        f"| {fmt(get('artifact.read_verify', 'floor'))} | {ratio('artifact.read_verify')} |",
        *section_footer(notes, meta["command"], SECTION),
    ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line; ``--quick`` changes the defaults of reps and artifact size."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, help="repetitions per figure (default 5; --quick: 2)")
    ap.add_argument(
        "--artifact-mb", type=int, help="artifact size in MiB (default 256; --quick: 16)"
    )
    ap.add_argument("--transactions", type=int, default=1000, help="lineage+audit transactions")
    ap.add_argument("--chain", type=int, default=1000, help="nodes in the lineage chain")
    ap.add_argument("--quick", action="store_true", help="smoke run; docs are left unchanged")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--mlflow-venv", type=Path, default=MLFLOW_VENV, help="peer venv folder")
    args = ap.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 5)
    args.artifact_mb = args.artifact_mb or (16 if args.quick else 256)
    return args


def main(argv: Sequence[str]) -> int:
    """Run every foundation workload on Conveyor and MLflow and report the figures."""
    if argv[:1] == ["--child"]:
        run_child(argv[1], argv[2:])
        return 0
    args = parse_args(argv)
    mlflow_python = ensure_mlflow_venv(args.mlflow_venv)
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-bench-foundation-"))
    load_start = os.getloadavg()[0]
    try:
        pythons = {"conveyor": Path(sys.executable), "floor": Path(sys.executable)}
        run = Runner(
            Path(__file__), {**pythons, "mlflow": mlflow_python}, scratch, timeout_s=CHILD_TIMEOUT_S
        )
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
        bench_import(run, fig, args.reps)
        bench_metadata(run, fig, args.reps)
        bench_lineage(run, fig, args.reps, args.transactions, args.chain)
        bench_artifacts(run, fig, args.reps, args.artifact_mb)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load_end = os.getloadavg()[0]
    if args.quick or args.no_docs:
        log("docs/benchmarks.md left unchanged (--quick or --no-docs)")
        return 0
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, shared with other work ({platform.machine()}, Linux, "
        f"Python {python_version})",
        "reps": args.reps,
        "size_mib": args.artifact_mb,
        "n_tx": args.transactions,
        "chain": args.chain,
        "mlflow_version": mlflow_version,
        "load_start": f"{load_start:.1f}",
        "load_end": f"{load_end:.1f}",
        "command": " ".join([".venv/bin/python", "bench/foundation.py", *argv]),
    }
    update_docs(DOCS, SECTION, render_section(fig, meta))
    log(f"updated {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
