"""Data-versioning benchmark: Conveyor's ``data add`` side by side with ``dvc add`` (DVC).

Run from the repository root::

    .venv/bin/python bench/data.py            # full run (2 x 1 GiB), updates docs/benchmarks.md
    .venv/bin/python bench/data.py --quick    # smoke run (2 x 64 MiB, 1 rep), docs untouched

The workload of the data-versioning issue, on the same bytes and in one run: a folder of
1,000 random files of 1 MiB each and one random 1 GiB file, generated under the ignored
``.bench/data/`` folder (removed at the end unless ``--keep-data``). For each of the two:

* first add on a fresh store (Conveyor: a new project, no objects, no stat cache; DVC: a
  repo with no cache and no state or index databases), the median of ``--reps`` adds;
* add again with nothing changed;
* incremental add after rewriting one 1 MiB file of the folder with new random bytes, or
  after overwriting 4 KiB in the middle of the big file (a different file or offset per rep);
* the limits on the same bytes: read only (``cat > /dev/null``), sha256 with hashlib
  (2 threads over the folder, 1 over the big file) and ``cp``.

Each tool is timed twice, and each way is compared with the same way of the other: in
process (``cv.data.add`` after ``import conveyor`` and ``cv.init``; DVC's
``Repo(".").add(target)`` after its import and opening the repository: interpreter start-up
excluded on both sides) and as a whole process (``conveyor data add``, when the command
exists; ``dvc add``). DVC 3.67.1 is installed on first use into ``.bench/venvs/dvc``; its
API and its command each get their own repository and copy of the data. Before every timed
step the
page cache is flushed to disk with ``sync`` (outside the timed region, after the previous
step's store was deleted), so no step pays for an earlier one's writeback; the sides and the
limits alternate rep by rep. Each figure is printed as one JSON line; ratio lines give how
many times faster Conveyor is (above 1: Conveyor is faster).

This file is also the child script (``python data.py --child OP ARGS...``). Only the standard
library (and ``bench/_common.py``) is imported at the top.
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
import textwrap
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import (
    DOCS,
    REPO,
    Figures,
    Runner,
    child_env,
    fmt,
    log,
    median,
    samples,
    update_docs,
)

SECTION = "data"
CHILD_TIMEOUT_S = 1800
DVC_SPEC = "dvc==3.67.1"
DVC_VENV = REPO / ".bench" / "venvs" / "dvc"
DATA_ROOT = REPO / ".bench" / "data"
MIB = 1024 * 1024
READ_SIZE = 4 * MIB
DATASET = "d"
#: Conveyor does not trust the stat of a file modified less than a second before it is read
#: (a second write within the timestamp granularity could leave it unchanged), so the changed
#: file is left to age this long before the incremental adds of either side.
SETTLE_AFTER_CHANGE_S = 1.1
TARGET_COLD = 3.0  # DVC first add / Conveyor first add, at least
TARGET_LIMIT = 1.5  # Conveyor first add / sha256 limit, at most
TARGET_INCREMENTAL = 10.0  # DVC incremental add / Conveyor incremental add, at least
CONVEYOR_SIDES = ("conveyor", "conveyor-cli")
#: Each side's peer: the API against DVC's Python API, the CLI against the ``dvc`` command.
PEER_OF = {"conveyor": "dvc-api", "conveyor-cli": "dvc"}
LABELS = {
    "conveyor": "Conveyor API",
    "conveyor-cli": "Conveyor CLI",
    "dvc-api": "DVC API",
    "dvc": "DVC CLI",
    "sha256": "sha256",
    "read": "read",
    "cp": "cp",
}

# -------------------------------------------------------------------------------------------
# Child side: one measurement per process, result printed as one JSON object.
# -------------------------------------------------------------------------------------------


def fingerprint(entries: Sequence[tuple[str, str]]) -> str:
    """Return one sha256 over ``(relative name, sha256)`` pairs, sorted by name."""
    lines = "".join(f"{name}\t{digest}\n" for name, digest in sorted(entries))
    return hashlib.sha256(lines.encode()).hexdigest()


def child_conveyor_init(root: str) -> dict[str, Any]:
    """Create a fresh Conveyor project in ``root`` (what ``conveyor init`` does)."""
    from conveyor.store.workspace import init_project

    ws, _ = init_project(root, project="bench")
    ws.close()
    return {}


def child_conveyor_add(root: str, name: str, path: str) -> dict[str, Any]:
    """Time ``cv.data.add(name, path)`` in the project ``root``; describe what it stored."""
    import conveyor as cv
    from conveyor.data import service

    ws = cv.init(root)
    ingested = _watch_ingest(service)
    t0 = time.perf_counter()
    version = cv.data.add(name, path)
    seconds = time.perf_counter() - t0
    manifest = service.data_service(ws).manifest(version)
    digests = [(f.path, _whole_sha256(ws.artifacts, f)) for f in manifest.files]
    ws.close()
    return {
        "s": seconds,
        "ref": version.ref,
        "digest": version.digest,
        "files": version.files,
        "size": version.size,
        "fingerprint": fingerprint(digests),
        **ingested,
    }


def child_dvc_add(target: str) -> dict[str, Any]:
    """Time DVC's Python API, ``Repo(".").add(target)``, in the repository in the cwd.

    Run by DVC's own interpreter. As on Conveyor's API side, the imports and opening the
    repository are not timed: only the add (its lock, hashing, cache and ``.dvc`` file).
    """
    from dvc.repo import Repo

    repo = Repo(".")
    try:
        t0 = time.perf_counter()
        repo.add(target)
        seconds = time.perf_counter() - t0
    finally:
        repo.close()
    return {"s": seconds}


def _whole_sha256(store: Any, entry: Any) -> str:
    """Return the sha256 of a file's bytes as stored: for a file stored in chunks, of its
    chunks read back in order (each verified by the store), outside the timed region."""
    if not getattr(entry, "chunks", ()):
        return str(entry.digest)
    h = hashlib.sha256()
    for digest in entry.chunks:
        h.update(store.get(digest))
    return h.hexdigest()


def _watch_ingest(module: Any) -> dict[str, Any]:
    """Wrap ``module.ingest`` so that what it read is known: hashed and cached file counts.

    Only a diagnostic (it tells whether a re-add read anything); the wrapper costs a call.
    """
    seen: dict[str, Any] = {}
    inner = getattr(module, "ingest", None)
    if inner is None:
        return seen

    def ingest(*args: Any, **kwargs: Any) -> Any:
        result = inner(*args, **kwargs)
        seen.update(
            hashed_files=result.hashed_files,
            hashed_mib=round(result.hashed_bytes / MIB, 1),
            cached_files=result.cached_files,
            kept_chunks=getattr(result, "kept_chunks", 0),
        )
        return result

    module.ingest = ingest
    return seen


def _files_under(path: Path) -> list[tuple[str, Path]]:
    """Return ``(relative name, path)`` of the files of ``path`` (a folder or one file)."""
    if path.is_file():
        return [(path.name, path)]
    return sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())


def _sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    size = 0
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return h.hexdigest(), size


def child_limit_sha256(path: str, threads: str) -> dict[str, Any]:
    """Time reading and hashing (sha256) every file under ``path`` on ``threads`` threads."""
    files = _files_under(Path(path))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(int(threads)) as pool:
        done = list(pool.map(lambda item: _sha256_file(item[1]), files))
    seconds = time.perf_counter() - t0
    entries = [(name, digest) for (name, _), (digest, _) in zip(files, done, strict=True)]
    return {
        "s": seconds,
        "bytes": sum(size for _, size in done),
        "fingerprint": fingerprint(entries),
    }


def child_limit_store(path: str, dest: str, threads: str) -> dict[str, Any]:
    """Time the floor of a content-addressed add: sha256 each file and copy it to ``dest``.

    Files are spread over ``threads`` threads, each hashing a file and then copying it
    (``shutil.copyfile``, a copy in the kernel); a single file is hashed on a second thread
    while it is copied.
    """
    files = _files_under(Path(path))
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)

    def one(item: tuple[str, Path]) -> str:
        digest, _ = _sha256_file(item[1])
        shutil.copyfile(item[1], out / f"{len(digest)}-{item[0].replace('/', '_')}")
        return digest

    t0 = time.perf_counter()
    if len(files) == 1:
        with ThreadPoolExecutor(1) as pool:
            hashed = pool.submit(_sha256_file, files[0][1])
            shutil.copyfile(files[0][1], out / "copy")
            digests = [hashed.result()[0]]
    else:
        with ThreadPoolExecutor(int(threads)) as pool:
            digests = list(pool.map(one, files))
    seconds = time.perf_counter() - t0
    entries = [(name, digest) for (name, _), digest in zip(files, digests, strict=True)]
    return {"s": seconds, "fingerprint": fingerprint(entries)}


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "conveyor.init": child_conveyor_init,
    "conveyor.add": child_conveyor_add,
    "limit.sha256": child_limit_sha256,
    "limit.store": child_limit_store,
    "dvc.add": child_dvc_add,
}


def run_child(op: str, argv: Sequence[str]) -> None:
    """Run the measurement ``op`` in this process and print its result as JSON."""
    print(json.dumps(CHILDREN[op](*argv)), flush=True)


# -------------------------------------------------------------------------------------------
# Parent side: environment, data, commands.
# -------------------------------------------------------------------------------------------


def ensure_dvc_venv(venv: Path) -> Path:
    """Create ``venv`` with DVC installed when it is missing; return its ``dvc`` command."""
    python, dvc = venv / "bin" / "python", venv / "bin" / "dvc"
    stamp = venv / f".installed-{DVC_SPEC}"
    if dvc.exists() and stamp.exists():
        return dvc
    if not python.exists():
        log(f"creating {venv} for the peer (DVC)")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    log(f"installing {DVC_SPEC} into {venv} (takes a minute or two)")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", DVC_SPEC],
        check=True,
    )
    stamp.touch()
    return dvc


def settle() -> None:
    """Write every dirty page to disk, so the next timed step starts with none."""
    subprocess.run(["sync"], check=True)


def load() -> float:
    """Return the 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def write_random(paths: Sequence[Path], size: int, *, offset: int | None = None) -> None:
    """Write the same ``size`` random bytes to each of ``paths`` (at ``offset``, in place)."""
    outs = [p.open("wb" if offset is None else "r+b") for p in paths]
    try:
        for out in outs:
            out.seek(offset or 0)
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MIB))
            for out in outs:
                out.write(chunk)
            left -= len(chunk)
    finally:
        for out in outs:
            out.close()


def remove(path: Path) -> None:
    """Delete a file or a folder tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def tree_mib(path: Path) -> float:
    """Return the size in MiB of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / MIB


class Bench:
    """The scratch layout, the commands of each side and the measurements."""

    def __init__(self, args: argparse.Namespace, dvc: Path, runner: Runner, cli: bool) -> None:
        self.args = args
        self.dvc = dvc
        self.run = runner
        self.cli = cli
        self.conveyor = Path(sys.executable).parent / "conveyor"
        self.work = runner.scratch
        # `dvc add` of a single file rewrites its mtime (it links the file back from its
        # cache), which would make the file look changed to Conveyor: Conveyor and each DVC
        # side get their own byte-identical copy. DVC's are git + DVC repositories (one for
        # the command, one for the Python API, so neither sees the other's adds); the limits
        # read Conveyor's.
        self.data = self.work / "data"
        self.repos = {"dvc": self.work / "repo", "dvc-api": self.work / "repo-api"}
        self.repo = self.repos["dvc"]
        self.projects = {side: self.work / side for side in CONVEYOR_SIDES}
        self.dvc_sites = {side: self.work / f"{side}-site-cache" for side in self.repos}
        self.cp_dest = self.work / "cp-dest"
        self.store_dest = self.work / "store-floor"
        self.env = dict(runner.env, DVC_NO_ANALYTICS="1", GIT_TERMINAL_PROMPT="0")
        self.sides = ["conveyor", "dvc-api", *(["conveyor-cli", "dvc"] if cli else ["dvc"])]
        self.results: dict[str, list[dict[str, Any]]] = {}

    # -- commands --------------------------------------------------------------------------

    def cmd(self, argv: Sequence[str | Path], cwd: Path | None = None) -> tuple[float, str]:
        """Run ``argv`` as a whole process; return its wall seconds and its stdout."""
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(a) for a in argv],
            cwd=cwd or self.data,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise RuntimeError(f"{' '.join(map(str, argv[:4]))} failed: exit {proc.returncode}")
        return seconds, proc.stdout

    def copies(self, name: str) -> list[Path]:
        """Return the copies of ``name``: Conveyor's, then each DVC repository's."""
        return [self.data / name, *(repo / name for repo in self.repos.values())]

    def setup(self) -> None:
        """Generate the data (twice the same bytes) and the DVC repository."""
        files, size = self.args.files, self.args.file_mib * MIB
        log(
            f"generating {files:,} files x {self.args.file_mib} MiB and a {self.args.big_mib} "
            f"MiB file under {self.work}, one copy for each side"
        )
        for folder in self.copies(self.args.dir_name):
            folder.mkdir(parents=True)
        for i in range(files):
            write_random(self.copies(f"{self.args.dir_name}/f{i:04d}.bin"), size)
        write_random(self.copies("big.bin"), self.args.big_mib * MIB)
        for side, repo in self.repos.items():
            self.cmd(["git", "init", "-q"], cwd=repo)
            self.cmd([self.dvc, "init", "-q"], cwd=repo)
            # DVC keeps its hash (state) and index databases outside the repo by default
            # (/var/tmp/dvc/repo/...): point them into the scratch folder, so a cold add is
            # cold. `dvc init` has already made this repo's (empty) folder there: remove it.
            where = "from dvc.repo import Repo; print(Repo('.').site_cache_dir)"
            default_site = self.cmd([self.dvc.parent / "python", "-c", where], cwd=repo)[1]
            dvc_config = [self.dvc, "config", "--local"]
            self.cmd([*dvc_config, "core.site_cache_dir", self.dvc_sites[side]], cwd=repo)
            self.cmd([*dvc_config, "core.analytics", "false"], cwd=repo)
            if Path(default_site.strip()) != self.dvc_sites[side]:
                shutil.rmtree(default_site.strip(), ignore_errors=True)
        settle()

    # -- resets (outside the timed region) -------------------------------------------------

    def reset_conveyor(self, side: str) -> None:
        """A new project with no objects, no stat cache and no dataset versions."""
        remove(self.projects[side])
        self.run.child("conveyor.init", self.projects[side])

    def reset_dvc(self, side: str, target: str) -> None:
        """Forget everything ``side``'s DVC knows: cache, tmp, state and index databases,
        .dvc file."""
        repo = self.repos[side]
        for path in (
            repo / ".dvc" / "cache",
            repo / ".dvc" / "tmp",
            self.dvc_sites[side],
            repo / f"{target}.dvc",
            repo / ".gitignore",
        ):
            remove(path)

    # -- one timed add per side ------------------------------------------------------------

    def add(self, side: str, target: str) -> float:
        """Settle, then time one add of ``target`` by ``side``; keep what it reported."""
        settle()
        if side == "conveyor":
            res = self.run.child(
                "conveyor.add", self.projects[side], DATASET, target, cwd=self.data
            )
        elif side == "conveyor-cli":
            argv = [self.conveyor, "--root", self.projects[side], "data", "add", DATASET, target]
            seconds, out = self.cmd([*argv, "--json"])
            res = {"s": seconds, **json.loads(out)}
        elif side == "dvc-api":
            res = self.run.child("dvc.add", target, cwd=self.repos[side])
        else:
            seconds, _ = self.cmd([self.dvc, "add", "-q", target], cwd=self.repo)
            res = {"s": seconds}
        self.results.setdefault(side, []).append(res)
        return float(res["s"])

    def limit(self, kind: str, target: str) -> float:
        """Settle, then time one limit measurement over ``target``."""
        remove(self.cp_dest)
        remove(self.store_dest)
        settle()
        threads = 1 if (self.data / target).is_file() else 2
        if kind == "sha256":
            res = self.run.child("limit.sha256", target, threads, cwd=self.data)
            self.results.setdefault(f"sha256:{target}", []).append(res)
            return float(res["s"])
        if kind == "sha256+copy":
            res = self.run.child("limit.store", target, self.store_dest, 2, cwd=self.data)
            self.results.setdefault(f"store:{target}", []).append(res)
            return float(res["s"])
        if kind == "read":
            script = f"find {target} -type f -print0 | xargs -0 cat > /dev/null"
            return self.cmd(["bash", "-c", script])[0]
        return self.cmd(["cp", "-r", target, self.cp_dest])[0]

    # -- the workload ----------------------------------------------------------------------

    def alternate(self, rep: int, steps: dict[str, Callable[[], float]]) -> dict[str, float]:
        """Run each step once, in the given order on even reps and reversed on odd ones."""
        keys = list(steps) if rep % 2 == 0 else list(steps)[::-1]
        return {key: steps[key]() for key in keys}

    def cold(self, target: str) -> dict[str, list[float]]:
        """First adds on fresh stores and the limits, alternating; a warm-up rep first."""

        def fresh(side: str) -> Callable[[], float]:
            def step() -> float:
                if side in self.repos:
                    self.reset_dvc(side, target)
                else:
                    self.reset_conveyor(side)
                return self.add(side, target)

            return step

        steps = {side: fresh(side) for side in self.sides}
        for kind in ("sha256", "read", "cp", "sha256+copy"):
            steps[kind] = lambda kind=kind: self.limit(kind, target)
        got: dict[str, list[float]] = {key: [] for key in steps}
        first = 0 if self.args.quick else -1  # rep -1 warms caches up and is not kept
        for rep in range(first, self.args.reps):
            for key, seconds in self.alternate(rep, steps).items():
                if rep >= 0:
                    got[key].append(seconds)
        for key in self.results:
            self.results[key] = self.results[key][-self.args.reps :]  # not the warm-up's
        remove(self.cp_dest)
        remove(self.store_dest)
        return got

    def nochange(self, target: str) -> dict[str, list[float]]:
        """Adds with nothing changed since the last one (stat caches hit)."""
        steps = {side: (lambda side=side: self.add(side, target)) for side in self.sides}
        got: dict[str, list[float]] = {key: [] for key in steps}
        for rep in range(self.args.reps):
            for key, seconds in self.alternate(rep, steps).items():
                got[key].append(seconds)
        return got

    def change(self, target: str, rep: int) -> None:
        """Rewrite file ``rep`` of the folder, or 4 KiB in the middle of the big file."""
        path = self.data / target
        if path.is_dir():
            victim = sorted(path.iterdir())[rep % self.args.files].name
            write_random(self.copies(f"{target}/{victim}"), self.args.file_mib * MIB)
        else:
            middle = path.stat().st_size // 2 + rep * 4096
            write_random(self.copies(target), 4096, offset=middle)
        time.sleep(SETTLE_AFTER_CHANGE_S)

    def incremental(self, target: str) -> dict[str, list[float]]:
        """Adds after one change, each side seeing the same single change per rep."""
        steps = {side: (lambda side=side: self.add(side, target)) for side in self.sides}
        got: dict[str, list[float]] = {key: [] for key in steps}
        for rep in range(self.args.reps):
            self.change(target, rep)
            for key, seconds in self.alternate(rep, steps).items():
                got[key].append(seconds)
        return got


# -------------------------------------------------------------------------------------------
# Checks: every side stored what it should.
# -------------------------------------------------------------------------------------------


def _check(ok: bool, message: str) -> None:
    """Stop the benchmark when a side did not store what it should."""
    if not ok:
        raise SystemExit(f"sanity check failed: {message}")


def check_phase(bench: Bench, target: str, phase: str, expected: dict[str, Any]) -> dict[str, Any]:
    """Check what each side reported in ``phase``; return the facts for the JSON output."""
    api, cli = bench.results.get("conveyor", []), bench.results.get("conveyor-cli", [])
    facts: dict[str, Any] = {
        "api_refs": [r["ref"] for r in api],
        "api_hashed_files": [r.get("hashed_files") for r in api],
        "api_hashed_mib": [r.get("hashed_mib") for r in api],
        "api_kept_chunks": [r.get("kept_chunks", 0) for r in api],
    }
    for r in api:
        _check(r["files"] == expected["files"], f"{target} {phase}: {r['files']} files")
        _check(r["size"] == expected["bytes"], f"{target} {phase}: {r['size']} bytes")
    if "fingerprint" in expected:
        for r in api:
            _check(
                r["fingerprint"] == expected["fingerprint"],
                f"{target} {phase}: Conveyor's file digests differ from hashlib's sha256",
            )
    if cli:
        facts["cli_refs"] = [r.get("ref") for r in cli]
        for a, c in zip(api, cli, strict=False):
            _check(a["digest"] == c.get("digest"), f"{target} {phase}: CLI and API digests differ")
    return facts


def dvc_facts(repo: Path, target: str) -> dict[str, Any]:
    """Return nfiles and size from the ``.dvc`` file of ``target`` in ``repo``."""
    text = (repo / f"{target}.dvc").read_text()
    found = {k: int(v) for k, v in re.findall(r"^\s*-?\s*(nfiles|size):\s*(\d+)", text, re.M)}
    return found


# -------------------------------------------------------------------------------------------
# Figures and ratios.
# -------------------------------------------------------------------------------------------


def emit_times(fig: Figures, bench_name: str, got: dict[str, list[float]], **context: Any) -> None:
    """Emit the median seconds of each side or limit in ``got``."""
    for tool, values in got.items():
        fig.emit(
            bench_name,
            tool,
            median(values),
            "s",
            reps=len(values),
            samples=samples(values),
            **context,
        )


def compare(
    fig: Figures,
    bench_name: str,
    mine: str,
    theirs: str,
    *,
    target: float | None = None,
    overhead: bool = False,
) -> dict[str, Any] | None:
    """Print and keep how many times faster ``mine`` is than ``theirs`` on ``bench_name``.

    With ``overhead``, ``theirs`` is a limit: the target is an upper bound on ``mine``'s time
    over the limit's (the ``overhead`` field); otherwise a lower bound on the speed-up.
    """
    a, b = fig.get(bench_name, mine), fig.get(bench_name, theirs)
    if a is None or b is None:
        return None
    value = float(b["value"]) / float(a["value"])
    per_rep = sorted(y / x for x, y in zip(a["samples"], b["samples"], strict=False))
    rec: dict[str, Any] = {
        "bench": bench_name,
        "tool": "ratio",
        "value": round(value, 3),
        "unit": "x",
        "conveyor": mine,
        "peer": theirs,
        "definition": f"{theirs} s / {mine} s (medians); above 1 means Conveyor is faster",
        "per_rep_range": [round(per_rep[0], 3), round(per_rep[-1], 3)],
    }
    if overhead:
        rec["overhead"] = round(1 / value, 3)
        rec["definition"] = (
            f"{theirs} s / {mine} s (medians); overhead = {mine} s / {theirs} s, "
            "how many times the limit Conveyor takes"
        )
    if target is not None:
        rec["target"] = f"overhead <= {target}x" if overhead else f">= {target}x"
        rec["met"] = (1 / value <= target) if overhead else (value >= target)
    fig.ratios[f"{bench_name}:{mine}:{theirs}"] = rec
    print(json.dumps(rec), flush=True)
    return rec


def ratios(fig: Figures, target: str, sides: Sequence[str]) -> None:
    """Print the ratios of one target: each Conveyor side against its DVC peer (the API
    against DVC's API, the CLI against the ``dvc`` command), and first add against the
    limits."""
    for side in (s for s in sides if s in PEER_OF):
        peer = PEER_OF[side]
        compare(fig, f"{target}.add_cold", side, peer, target=TARGET_COLD)
        compare(fig, f"{target}.add_cold", side, "sha256", target=TARGET_LIMIT, overhead=True)
        compare(fig, f"{target}.add_cold", side, "sha256+copy", overhead=True)
        compare(fig, f"{target}.add_nochange", side, peer)
        compare(fig, f"{target}.add_incremental", side, peer, target=TARGET_INCREMENTAL)


# -------------------------------------------------------------------------------------------
# docs/benchmarks.md
# -------------------------------------------------------------------------------------------


def bounds_text(fig: Figures) -> str:
    """Say, from this run's figures, how far the first-add targets can be met at all: no
    add that keeps a copy beats the sha256 + copy floor, nor a command its start-up."""

    def value(bench_name: str, tool: str) -> float | None:
        found = fig.get(bench_name, tool)
        return float(found["value"]) if found else None

    startup = value("startup", "conveyor-cli")
    parts = []
    for target, label in (("dir", "the folder"), ("file", "the big file")):
        b = f"{target}.add_cold"
        floor, sha, dvc_api = value(b, "sha256+copy"), value(b, "sha256"), value(b, "dvc-api")
        if floor is None or sha is None or dvc_api is None:
            return ""
        text = f"on {label}, {dvc_api / floor:.2f}x in process"
        dvc_cli = value(b, "dvc")
        if dvc_cli is not None and startup is not None:
            text += f" and {dvc_cli / (floor + startup):.2f}x as a command"
        limit = TARGET_LIMIT * sha
        text += (
            f", and {TARGET_LIMIT:g}x the read + sha256 limit ({limit:.3g} s) is "
            f"{'under' if limit < floor else 'over'} the floor ({floor:.3g} s)"
        )
        parts.append(text)
    return (
        "What bounds the first-add targets: no add that keeps a copy of the bytes takes less "
        "than the floor (sha256 and copy), and no command less than the floor plus its "
        "start-up (`conveyor --version`). Against DVC's medians in this run, the largest "
        f"speed-up any tool could reach is: {parts[0]}; {parts[1]}."
    )


def render_section(fig: Figures, meta: dict[str, Any]) -> str:
    """Return the Data versioning section (between its markers) as markdown."""
    get = fig.get
    cli = meta["cli"]

    def ratio(bench_name: str, mine: str, theirs: str) -> str:
        r = fig.ratios.get(f"{bench_name}:{mine}:{theirs}")
        if r is None:
            return "—"
        low, high = r["per_rep_range"]
        return f"**{r['value']:,.2f}x** ({low:,.2f} to {high:,.2f})"

    def overhead(bench_name: str, mine: str, limit: str) -> str:
        r = fig.ratios.get(f"{bench_name}:{mine}:{limit}")
        if r is None:
            return "—"
        if "met" not in r:
            return f"{r['overhead']:.2f}x"
        return f"{r['overhead']:.2f}x ({'yes' if r['met'] else '**no**'})"

    def met(bench_name: str, mine: str) -> str:
        r = fig.ratios.get(f"{bench_name}:{mine}:{PEER_OF[mine]}")
        if r is None or "met" not in r:
            return "—"
        return "yes" if r["met"] else "**no**"

    names = {"dir": meta["dir_label"], "file": meta["file_label"]}
    phases = (
        ("add_cold", "first add, fresh store", f"≥ {TARGET_COLD:g}x"),
        ("add_nochange", "add again, nothing changed", "—"),
        ("add_incremental", "add after one change", f"≥ {TARGET_INCREMENTAL:g}x"),
    )
    rows = []
    for target in ("dir", "file"):
        for phase, label, goal in phases:
            b = f"{target}.{phase}"
            change = ""
            if phase == "add_incremental":
                change = " (one 1 MiB file rewritten)" if target == "dir" else " (4 KiB rewritten)"
            rows.append(
                f"| {names[target]}: {label}{change} | {fmt(get(b, 'conveyor'))} "
                f"| {fmt(get(b, 'dvc-api'))} | {ratio(b, 'conveyor', 'dvc-api')} "
                f"| {fmt(get(b, 'conveyor-cli'))} | {fmt(get(b, 'dvc'))} "
                f"| {ratio(b, 'conveyor-cli', 'dvc')} "
                f"| {goal} | {met(b, 'conveyor')} / {met(b, 'conveyor-cli')} |"
            )
    limit_rows = []
    for target in ("dir", "file"):
        b = f"{target}.add_cold"
        threads = "2 threads" if target == "dir" else "1 thread"
        limit_rows.append(
            f"| {names[target]} | {fmt(get(b, 'read'))} | {fmt(get(b, 'sha256'))} ({threads}) "
            f"| {fmt(get(b, 'cp'))} | {fmt(get(b, 'sha256+copy'))} "
            f"| {overhead(b, 'conveyor', 'sha256')} | {overhead(b, 'conveyor-cli', 'sha256')} "
            f"| {overhead(b, 'conveyor', 'sha256+copy')} "
            f"| {overhead(b, 'conveyor-cli', 'sha256+copy')} |"
        )
    startup = (
        f"`conveyor --version` takes {fmt(get('startup', 'conveyor-cli'))} as a whole process, "
        f"`dvc --version` {fmt(get('startup', 'dvc'))}. "
        if get("startup", "dvc")
        else ""
    )
    no_cli = (
        ""
        if cli
        else "The `conveyor data add` command did not exist yet when this ran: no CLI figures. "
    )
    intro = (
        f"Versioning files against DVC {meta['dvc_version']} (`dvc add`, default settings: "
        "md5, the cache a copy on ext4), on the same bytes in the same run: "
        f"{meta['dir_desc']} and {meta['file_desc']} of random bytes, written just before "
        "(so they sit in the page cache; the store each side writes goes through the page "
        "cache too). Each side has its own byte-identical copy, because `dvc add` of a single "
        "file rewrites the file's mtime, which would make Conveyor see it as changed. "
        "Each tool is timed two ways, and each way is compared with the same way of the "
        "other: in process (API: `cv.data.add` after `import conveyor` and opening the "
        "project; DVC's `Repo('.').add(target)` after `from dvc.repo import Repo` and "
        "opening the repository; interpreter start-up and imports excluded on both sides) "
        "and as a whole process (CLI: `conveyor data add`, its modules byte-compiled first, "
        "as a wheel install leaves them, since this repository is an editable install and "
        "`PYTHONDONTWRITEBYTECODE` is set here; `dvc add -q`). DVC's API and command each "
        "have their own repository and copy of the data, so neither sees the other's adds. "
        "Before every timed step, the previous step's "
        "store is deleted and `sync` flushes every dirty page to disk, outside the timed "
        "region, so that no step pays for another's writeback. A first add starts from a "
        "fresh store: Conveyor, a new project (no objects, no stat cache); DVC, no cache and "
        "no state or index databases (DVC keeps those in `/var/tmp/dvc` by default: the "
        "script points each repository's `core.site_cache_dir` into its scratch folder and "
        "deletes it). "
        f"Medians of {meta['reps']} repetitions (first adds and limits: after one warm-up "
        "rep); the sides and the limits alternate rep by rep. Measured "
        f"{meta['date']} on {meta['machine']}. Ratio: how many times faster Conveyor is "
        "(above 1: faster), from the medians; in brackets the lowest and highest ratio of "
        "one rep's pair. Targets are those of the data-versioning issue. (Before "
        "2026-11-30's second run, the API was compared with the whole `dvc add` process, "
        "which counted DVC's start-up against DVC only.)"
    )
    notes = (
        f"Notes: {no_cli}{startup}Limits: read is `find | xargs cat > /dev/null` and `cp` is "
        "`cp -r`, whole processes; read + sha256 is hashlib with 4 MiB `readinto`, in process, "
        "on 2 threads over the folder and 1 over the big file; sha256 + copy, the floor of any "
        "add that keeps a copy, hashes each file and copies it (`shutil.copyfile`, a copy in "
        "the kernel) on 2 threads, in process (the big file: hash and copy run at the same "
        "time). Incremental adds: the file changed is a different one each rep (or 4 KiB at "
        f"a different offset), left to age {SETTLE_AFTER_CHANGE_S:g} s before the adds, since "
        "Conveyor does not trust the stat of a file modified within the last second; each "
        "side sees exactly one change per add. Conveyor stores a file larger than 64 MiB in "
        "chunks of 8 MiB and keeps an xxh3-128 fingerprint of each in its stat cache, so after "
        "the 4 KiB change it re-reads the big file but sha256-hashes and stores only the one "
        "chunk whose fingerprint changed; DVC re-hashes the file and stores a new copy of it. "
        "Sanity: Conveyor's per-file digests (for a file in chunks: the sha256 of "
        "its chunks read back from the store in order) equal hashlib's sha256 of the same files, "
        "the CLI's version digest equals the API's, and re-adding unchanged content returned "
        f"the existing version ({meta['sanity']}); Conveyor's API read {meta['reads']}. "
        f"Load average {meta['load_start']} at the start, {meta['load_end']} at the end."
    )
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        "## Data versioning (bench/data.py)",
        "",
        textwrap.fill(intro, 100),
        "",
        "| workload | Conveyor API | DVC API | ratio, API | Conveyor CLI | DVC CLI "
        "| ratio, CLI | target | met (API / CLI) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Limits on the same bytes, and Conveyor's first add over the read + sha256 limit "
        f"(target: at most {TARGET_LIMIT:g}x) and over the sha256 + copy floor (no target):",
        "",
        "| data | read (`cat > /dev/null`) | read + sha256 (hashlib) | `cp` | sha256 + copy "
        "| add / sha256: API | add / sha256: CLI | add / (sha256 + copy): API "
        "| add / (sha256 + copy): CLI |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *limit_rows,
        "",
        textwrap.fill(notes, 100),
        "",
        *([textwrap.fill(bounds, 100), ""] if (bounds := bounds_text(fig)) else []),
        "Reproduce from the repository root (installs DVC into `.bench/venvs/dvc` on first use;",
        "needs about 16 GiB of free disk under `.bench/`, all removed at the end):",
        "",
        "```",
        meta["command"],
        "```",
        f"<!-- bench:{SECTION}:end -->",
    ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line; ``--quick`` shrinks the data and the reps for a smoke run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, help="repetitions per figure (default 3; --quick: 1)")
    ap.add_argument("--files", type=int, help="files in the folder (default 1000; --quick: 64)")
    ap.add_argument("--file-mib", type=int, default=1, help="size of each file in MiB")
    ap.add_argument("--big-mib", type=int, help="size of the big file (default 1024; --quick: 64)")
    ap.add_argument("--quick", action="store_true", help="smoke run; docs are left unchanged")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument(
        "--only",
        choices=["dir", "file"],
        help="run one workload: the folder or the big file (docs are left unchanged)",
    )
    ap.add_argument("--no-cli", action="store_true", help="skip `conveyor data add` (CLI)")
    ap.add_argument("--keep-data", action="store_true", help="keep the scratch folder")
    ap.add_argument("--dvc-venv", type=Path, default=DVC_VENV, help="peer venv folder")
    args = ap.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 3)
    args.files = args.files or (64 if args.quick else 1000)
    args.big_mib = args.big_mib or (64 if args.quick else 1024)
    args.dir_name = f"dir{args.files}"
    return args


def cli_available(conveyor: Path) -> bool:
    """Return whether this Conveyor has the ``conveyor data add`` command."""
    if not conveyor.exists():
        return False
    proc = subprocess.run(
        [str(conveyor), "data", "add", "--help"],
        capture_output=True,
        env=child_env(),
        check=False,
    )
    return proc.returncode == 0


def refs_text(facts: dict[str, Any]) -> str:
    """Return the distinct version refs of a phase (API side), as markdown code."""
    return ", ".join(f"`{ref}`" for ref in dict.fromkeys(facts["api_refs"]))


def reads_text(facts: dict[str, Any]) -> str:
    """Return how many files (MiB) the API's adds of a phase read, e.g. ``1 file (1 MiB)``,
    and how many chunks of those kept their sha256 (fingerprint unchanged, not re-hashed)."""
    files, mib = facts.get("api_hashed_files", []), facts.get("api_hashed_mib", [])
    if not files or None in files:
        return "an unknown number of files"
    kept = facts.get("api_kept_chunks") or [0] * len(files)
    per = sorted({(f, m, k) for f, m, k in zip(files, mib, kept, strict=True)})
    return " or ".join(
        f"{f} file{'s' if f != 1 else ''} ({m:g} MiB)"
        + (f", {k} chunks of it not re-hashed" if k else "")
        for f, m, k in per
    )


def size_label(mib: int) -> str:
    """Return ``mib`` as ``1 GiB`` or ``64 MiB``."""
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"


def bench_target(bench: Bench, fig: Figures, target: str, path: str) -> dict[str, Any]:
    """Run the three phases on ``path`` (``target`` is ``dir`` or ``file``); return facts."""
    args = bench.args
    is_dir = target == "dir"
    expected: dict[str, Any] = {
        "files": args.files if is_dir else 1,
        "bytes": args.files * args.file_mib * MIB if is_dir else args.big_mib * MIB,
    }
    ctx = {"data": path, "files": expected["files"], "bytes": expected["bytes"]}
    facts: dict[str, Any] = {}

    warm = "" if args.quick else "warm-up + "
    log(f"{target}: first add on fresh stores, and the limits ({warm}{args.reps} reps)")
    bench.results.clear()
    load_before = load()
    got = bench.cold(path)
    sha = bench.results[f"sha256:{path}"]
    _check(all(r["bytes"] == expected["bytes"] for r in sha), f"sha256 read {sha[0]['bytes']}")
    expected["fingerprint"] = sha[0]["fingerprint"]
    floors = bench.results[f"store:{path}"]
    _check(all(r["fingerprint"] == expected["fingerprint"] for r in floors), "floor digests")
    facts["cold"] = check_phase(bench, target, "first add", expected)
    cold_refs = {side: bench.results[side][-1]["ref"] for side in CONVEYOR_SIDES if side in got}
    emit_times(fig, f"{target}.add_cold", got, load=load_before, **ctx)

    log(f"{target}: add again, nothing changed ({args.reps} reps)")
    bench.results.clear()
    load_before = load()
    got = bench.nochange(path)
    facts["nochange"] = check_phase(bench, target, "no change", expected)
    for side, ref in cold_refs.items():
        refs = {r["ref"] for r in bench.results[side]}
        _check(refs == {ref}, f"{target}: {side} re-add of unchanged data gave {refs}, not {ref}")
    emit_times(fig, f"{target}.add_nochange", got, load=load_before, **ctx)

    log(f"{target}: add after one change ({args.reps} reps)")
    bench.results.clear()
    load_before = load()
    got = bench.incremental(path)
    final = bench.run.child("limit.sha256", path, 2, cwd=bench.data)  # untimed: final content
    del expected["fingerprint"]  # the content changed: checked against ``final`` below
    facts["incremental"] = check_phase(bench, target, "incremental", expected)
    for repo in bench.repos.values():
        peer_copy = bench.run.child("limit.sha256", path, 2, cwd=repo)
        _check(peer_copy["fingerprint"] == final["fingerprint"], f"{target}: the copies differ")
    last = bench.results["conveyor"][-1]
    _check(last["fingerprint"] == final["fingerprint"], f"{target}: last version is not current")
    for side in cold_refs:
        refs = [r["ref"] for r in bench.results[side]]
        _check(len(set(refs)) == len(refs), f"{target}: {side} incremental refs repeat: {refs}")
    for side, repo in bench.repos.items():
        dvc = dvc_facts(repo, path)
        _check(dvc.get("size") == expected["bytes"], f"{target}: {side} recorded {dvc}")
        if is_dir:
            _check(dvc.get("nfiles") == expected["files"], f"{target}: {side} recorded {dvc}")
        facts[side] = dvc
    stores = {"conveyor_objects_mib": round(tree_mib(bench.projects["conveyor"] / ".conveyor"))}
    stores["dvc_cache_mib"] = round(tree_mib(bench.repo / ".dvc" / "cache"))
    emit_times(
        fig,
        f"{target}.add_incremental",
        got,
        load=load_before,
        change="one file rewritten" if is_dir else "4 KiB overwritten in the middle",
        **stores,
        **ctx,
    )
    print(json.dumps({"bench": f"{target}.sanity", **facts}), flush=True)
    ratios(fig, target, bench.sides)
    return facts


def bench_startup(bench: Bench, fig: Figures) -> None:
    """The CLI floor of each side: ``--version`` as a whole process (after one warm-up)."""
    commands = {"dvc": [bench.dvc, "--version"]}
    if bench.cli:
        commands["conveyor-cli"] = [bench.conveyor, "--version"]
    got: dict[str, list[float]] = {k: [] for k in commands}
    for rep in range(-1, bench.args.reps):
        for key in commands if rep % 2 == 0 else list(commands)[::-1]:
            seconds = bench.cmd(commands[key])[0]
            if rep >= 0:
                got[key].append(seconds)
    emit_times(fig, "startup", got, note="--version, whole process")


def main(argv: Sequence[str]) -> int:
    """Run the data-versioning workloads on Conveyor and DVC and report the figures."""
    if argv[:1] == ["--child"]:
        run_child(argv[1], argv[2:])
        return 0
    args = parse_args(argv)
    package = REPO / "src" / "conveyor"
    if package.is_dir():  # an editable install: compile once, as a wheel install would
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    dvc = ensure_dvc_venv(args.dvc_venv)
    conveyor_cmd = Path(sys.executable).parent / "conveyor"
    cli = not args.no_cli and cli_available(conveyor_cmd)
    if not cli:
        log("`conveyor data add` is not available: Conveyor is timed in process only")
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    scratch = DATA_ROOT / f"run-{os.getpid()}"
    scratch.mkdir()
    load_start = load()
    try:
        pythons = {
            "conveyor": Path(sys.executable),
            "limit": Path(sys.executable),
            "dvc": dvc.parent / "python",
        }
        runner = Runner(Path(__file__), pythons, scratch, timeout_s=CHILD_TIMEOUT_S)
        bench = Bench(args, dvc, runner, cli)
        conveyor_version, python_version = runner.version("conveyor", "conveyor").split()
        dvc_version = bench.cmd([dvc, "--version"], cwd=scratch)[1].strip()
        info = {
            "bench": "info",
            "conveyor": conveyor_version,
            "dvc": dvc_version,
            "python": python_version,
            "conveyor_cli": cli,
            "cpus": os.cpu_count(),
            "loadavg_1m": load_start,
            "reps": args.reps,
            "folder": f"{args.files} x {args.file_mib} MiB",
            "big_file_mib": args.big_mib,
        }
        print(json.dumps(info), flush=True)
        bench.setup()
        fig = Figures()
        bench_startup(bench, fig)
        targets = {"dir": args.dir_name, "file": "big.bin"}
        sanity = {
            target: bench_target(bench, fig, target, path)
            for target, path in targets.items()
            if args.only in (None, target)
        }
    finally:
        if args.keep_data:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    load_end = load()
    if args.quick or args.no_docs or args.only:
        log("docs/benchmarks.md left unchanged (--quick, --no-docs or --only)")
        return 0
    dir_mib = args.files * args.file_mib
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, shared with other work ({platform.machine()}, Linux, "
        f"ext4, Python {python_version})",
        "reps": args.reps,
        "cli": cli,
        "dvc_version": dvc_version.split()[-1],
        "dir_label": f"folder, {args.files:,} files",
        "file_label": f"one {size_label(args.big_mib)} file",
        "dir_desc": f"a folder of {args.files:,} files of {args.file_mib} MiB "
        f"({size_label(dir_mib)})",
        "file_desc": f"one {size_label(args.big_mib)} file",
        "sanity": "; ".join(
            f"{target}: first adds {refs_text(facts['cold'])}, re-adds "
            f"{refs_text(facts['nochange'])}, incremental adds {refs_text(facts['incremental'])}"
            for target, facts in sanity.items()
        ),
        "reads": "; ".join(
            f"{target}: {reads_text(facts['nochange'])} on the re-adds, "
            f"{reads_text(facts['incremental'])} on the incremental adds"
            for target, facts in sanity.items()
        ),
        "load_start": f"{load_start:.1f}",
        "load_end": f"{load_end:.1f}",
        "command": " ".join([".venv/bin/python", "bench/data.py", *argv]),
    }
    update_docs(DOCS, SECTION, render_section(fig, meta))
    log(f"updated {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
