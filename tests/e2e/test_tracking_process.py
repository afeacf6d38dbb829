"""How a tracked process ends: stopped by SIGTERM, and metrics logged by pool workers."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import conveyor as cv

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork")

STOPPED = """
import sys, time
import conveyor as cv
cv.init()
with cv.start_run(experiment="term") as run:
    for step in range(5):
        cv.log_metric("loss", 1.0 / (step + 1))
    print(run.id, flush=True)
    time.sleep(120)
"""

POOL = """
import multiprocessing
import conveyor as cv

def work(i):
    cv.log_metric(f"w{i}", i)
    return i

if __name__ == "__main__":
    cv.init()
    with cv.start_run(experiment="pool") as run:
        with multiprocessing.get_context("fork").Pool(2) as pool:  # terminated on exit
            pool.map(work, range(4))
    print(run.id, flush=True)
"""


def test_sigterm_ends_the_run_killed_with_what_it_logged(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text('project = "signals"\n')
    (tmp_path / "train.py").write_text(STOPPED)
    proc = subprocess.Popen(
        [sys.executable, "train.py"], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()  # the run has logged and is sleeping
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        proc.kill()
        proc.wait()
    with cv.init(tmp_path):
        run = cv.get_run(run_id)
        assert run.status is cv.RunStatus.KILLED
        assert len(cv.get_metric_history(run_id, "loss")) == 5


def test_metrics_logged_in_pool_workers_are_all_stored(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text('project = "pool"\n')
    (tmp_path / "work.py").write_text(POOL)
    for _ in range(3):  # the loss depended on when the pool's SIGTERM met a worker
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "work.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - started < 120
        with cv.init(tmp_path):
            assert sorted(cv.get_run(done.stdout.strip()).metrics) == ["w0", "w1", "w2", "w3"]


def test_an_earlier_error_in_an_interactive_session_does_not_fail_a_later_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "conveyor.toml").write_text('project = "repl"\n')
    typed = (
        "import conveyor as cv\n"
        "1/0\n"  # shown, and kept as sys.last_value for the rest of the session
        "run = cv.start_run(experiment='repl')\n"
        "cv.log_metric('a', 1.0)\n"
        "print('RUN', run.id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-i"], cwd=tmp_path, input=typed, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    run_id = done.stdout.split("RUN ")[1].split()[0]
    with cv.init(tmp_path):
        assert cv.get_run(run_id).status is cv.RunStatus.FINISHED
