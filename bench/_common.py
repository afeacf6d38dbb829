"""Shared helpers of the peer benchmarks: peer venv, child processes, figures, docs sections.

Only the standard library is imported, so the peer's venv can import this module too when it
runs a benchmark script as a child.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
MLFLOW_SPEC = "mlflow==3.17.2"
MLFLOW_VENV = REPO / ".bench" / "venvs" / "mlflow"

# -------------------------------------------------------------------------------------------
# Child side
# -------------------------------------------------------------------------------------------


def elapsed(fn: Callable[[], Any]) -> float:
    """Return the wall seconds ``fn()`` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def sqlite_uri(path: Path) -> str:
    """Return the SQLAlchemy URI of the SQLite database file at ``path``."""
    return f"sqlite:///{path.resolve()}"


# -------------------------------------------------------------------------------------------
# Parent side: environments, subprocesses, figures.
# -------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    """Print a progress message to stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_mlflow_venv(venv: Path) -> Path:
    """Create ``venv`` with MLflow installed when it is missing; return its python."""
    python = venv / "bin" / "python"
    stamp = venv / f".installed-{MLFLOW_SPEC}"
    if python.exists() and stamp.exists():
        return python
    if not python.exists():
        log(f"creating {venv} for the peer (MLflow)")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    log(f"installing {MLFLOW_SPEC} into {venv} (takes a minute or two)")
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            MLFLOW_SPEC,
        ],
        check=True,
    )
    stamp.touch()
    return python


def child_env() -> dict[str, str]:
    """Return the environment for child processes: no Conveyor/MLflow settings, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CONVEYOR_"))}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "true"
    env["PYTHONWARNINGS"] = "ignore"
    return env


# Timed in a bare interpreter, so nothing else the script imports is loaded first.
IMPORT_SNIPPET = (
    "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
)


class Runner:
    """Runs child measurements of ``script`` in fresh processes of the right interpreter."""

    def __init__(
        self,
        script: Path,
        pythons: dict[str, Path],
        scratch: Path,
        *,
        timeout_s: float = 900,
    ) -> None:
        self.script = script.resolve()
        self.python = dict(pythons)
        self.scratch = scratch
        self.timeout_s = timeout_s
        self.env = child_env()
        self._dirs = 0

    def new_dir(self, label: str) -> Path:
        """Return a new empty folder under the scratch folder."""
        self._dirs += 1
        path = self.scratch / f"{self._dirs:03d}-{label}"
        path.mkdir()
        return path

    def _run(self, tool: str, argv: list[str], cwd: Path) -> str:
        proc = subprocess.run(
            [str(self.python[tool]), *argv],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
            check=False,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise RuntimeError(f"{tool} child {argv[:3]} failed with exit code {proc.returncode}")
        return proc.stdout.strip().splitlines()[-1]

    def child(self, op: str, *args: object, cwd: Path | None = None) -> dict[str, Any]:
        """Run ``op`` (``tool.name``) in a fresh process; return its JSON result."""
        tool = op.split(".", 1)[0]
        argv = [str(self.script), "--child", op, *map(str, args)]
        result: dict[str, Any] = json.loads(self._run(tool, argv, cwd or self.scratch))
        return result

    def import_time(self, tool: str, module: str, cwd: Path) -> float:
        """Return the seconds ``import module`` takes in a fresh interpreter of ``tool``."""
        return float(self._run(tool, ["-c", IMPORT_SNIPPET.format(module=module)], cwd))

    def version(self, tool: str, module: str) -> str:
        """Return ``module.__version__`` and the Python version seen by ``tool``'s interpreter."""
        code = f"import sys, {module}; print({module}.__version__, sys.version.split()[0])"
        return self._run(tool, ["-c", code], self.scratch)


def median(values: Sequence[float]) -> float:
    """Return the median of ``values``."""
    return statistics.median(values)


def rounded(value: float) -> float:
    """Round for display: 4 significant digits below 1000, whole numbers above."""
    if value >= 1000:
        return round(value)
    return float(f"{value:.4g}")


class Figures:
    """Collects figures and ratios, printing each as one JSON line."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.ratios: dict[str, dict[str, Any]] = {}

    def emit(self, bench: str, tool: str, value: float, unit: str, **context: Any) -> None:
        """Record and print one figure."""
        rec = {"bench": bench, "tool": tool, "value": rounded(value), "unit": unit, **context}
        self.rows.append(rec)
        print(json.dumps(rec), flush=True)

    def get(self, bench: str, tool: str) -> dict[str, Any] | None:
        """Return the figure of ``tool`` on ``bench``, or None."""
        return next((r for r in self.rows if r["bench"] == bench and r["tool"] == tool), None)

    def ratio(
        self, bench: str, peer: str, *, higher_is_better: bool, key: str | None = None
    ) -> float:
        """Record and print how many times faster Conveyor is than ``peer`` on ``bench``."""
        mine = next(r for r in self.rows if r["bench"] == bench and r["tool"] == "conveyor")
        theirs = next(r for r in self.rows if r["bench"] == bench and r["tool"] == peer)
        a, b = float(mine["value"]), float(theirs["value"])
        value = a / b if higher_is_better else b / a
        how = "conveyor / peer" if higher_is_better else "peer / conveyor"
        rec: dict[str, Any] = {
            "bench": bench,
            "tool": "ratio",
            "value": round(value, 3),
            "unit": "x",
            "peer": peer,
            "definition": f"{how} {mine['unit']} (medians); above 1 means Conveyor is faster",
        }
        pairs = list(zip(mine.get("samples", []), theirs.get("samples", []), strict=False))
        if pairs:  # the sides ran alternately, so rep i of each is a pair
            per_rep = sorted(x / y if higher_is_better else y / x for x, y in pairs)
            rec["per_rep_range"] = [round(per_rep[0], 3), round(per_rep[-1], 3)]
        self.ratios[key or bench] = rec
        print(json.dumps(rec), flush=True)
        return value


def samples(values: Sequence[float], digits: int = 4) -> list[float]:
    """Return ``values`` rounded for a JSON context field."""
    return [float(f"{v:.{digits}g}") for v in values]


def interleave(reps: int, steps: dict[str, Callable[[int], float]]) -> dict[str, list[float]]:
    """Run each step once per rep, alternating which goes first; return the samples by key."""
    out: dict[str, list[float]] = {k: [] for k in steps}
    keys = list(steps)
    for rep in range(reps):
        for key in keys if rep % 2 == 0 else keys[::-1]:
            out[key].append(steps[key](rep))
    return out


# -------------------------------------------------------------------------------------------
# docs/benchmarks.md
# -------------------------------------------------------------------------------------------

INTRO = """# Benchmarks

Each area of Conveyor has a script under `bench/` that runs the same workload on Conveyor and
on the tool it replaces (the peer) in one run, and writes its own section below. The peer is
installed by the script into its own virtual environment under `.bench/venvs/` (ignored by
git), so nothing is shared with Conveyor's environment. Each figure is a median of several
repetitions; startup-sensitive workloads run each repetition in a fresh process, and the two
sides alternate rep by rep.

Absolute figures depend on the machine and on what else it is doing. **The ratios, measured
side by side in the same run, are what count.** A ratio above 1 means Conveyor is faster.

`make bench` runs every script (`bench/run_all.py`); each prints one JSON line per figure.
"""


def fmt(row: dict[str, Any] | None) -> str:
    """Return a figure as ``value unit`` for a table cell, or a dash when it is missing."""
    if row is None:
        return "—"
    return f"{row['value']:,} {row['unit']}"


def section_footer(notes: str, command: str, name: str) -> list[str]:
    """Return the closing lines of a docs section: notes, how to reproduce, the end marker."""
    return [
        "",
        textwrap.fill(notes, 100),
        "",
        "Reproduce from the repository root (installs MLflow into `.bench/venvs/mlflow` on "
        "first use):",
        "",
        "```",
        command,
        "```",
        f"<!-- bench:{name}:end -->",
    ]


def update_docs(path: Path, name: str, section: str) -> None:
    """Replace section ``name`` of ``path`` (between its markers), creating what's missing."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = path.read_text() if path.exists() else INTRO
    if start in text and end in text:
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -------------------------------------------------------------------------------------------
# Peers: their data, their venvs, child processes
# -------------------------------------------------------------------------------------------

CHILD_TIMEOUT_S = 1800


def child_versions(*dists: str) -> dict[str, Any]:
    """Return the installed versions of ``dists`` and the Python version."""
    import importlib.metadata as md

    out: dict[str, Any] = {"python": sys.version.split()[0]}
    for name in dists:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def import_peers_data(peers_dir: Path) -> Any:
    """Import the peers' ``limits_data`` (standard library only at import) in this process."""
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(peers_dir))
    import limits_data as lim

    return lim


def ensure_peer_venv(venv: Path, specs: Sequence[str], peer: str) -> Path:
    """Create ``venv`` with ``specs`` installed (quietly) unless it has them; return its python.

    The stamp is the peers' own (``.anchors_installed`` holding the specs), so their scripts
    accept this venv as theirs and the other way round.
    """
    python = venv / "bin" / "python"
    stamp = venv / ".anchors_installed"
    want = " ".join(specs)
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    if not python.exists():
        log(f"creating {venv} for the peer ({peer})")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    log(f"installing {want} into {venv} (a few minutes)")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    proc = subprocess.run([*pip, *specs], capture_output=True, text=True, check=False)
    if proc.returncode != 0:  # pip's output only when it failed
        sys.stderr.write(proc.stderr[-4000:])
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    stamp.write_text(want)
    return python


class ChildFailed(RuntimeError):
    """A child process failed, timed out or did not print its result."""


def spawn(argv: Sequence[object], env: dict[str, str], cwd: Path) -> str:
    """Run ``argv`` in its own process group to its exit; return its stdout.

    On a time-out or an interrupt the whole group is killed (a peer may have started more).
    """
    import signal

    proc = subprocess.Popen(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ChildFailed(f"{' '.join(map(str, argv[1:6]))} timed out") from exc
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise ChildFailed(
            f"{' '.join(map(str, argv[1:6]))} exited {proc.returncode}\n"
            f"--- stdout (end)\n{stdout[-2000:]}\n--- stderr (end)\n{stderr[-5000:]}"
        )
    return stdout


def last_json(stdout: str, prefix: str = "") -> dict[str, Any]:
    """Return the last line of ``stdout`` starting with ``prefix``, parsed as JSON."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith(prefix):
            result: dict[str, Any] = json.loads(line[len(prefix) :])
            return result
    raise ChildFailed(f"no {prefix or 'JSON'} line in the output:\n{stdout[-1500:]}")
