"""Nothing logged is lost: processes that exit, fail, or log synchronously."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import sqlalchemy as sa

from conveyor.store.metadata.schema import metrics, runs

N = 100_000


def run_script(
    root: Path, body: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    script = f"import conveyor as cv\ncv.init({str(root)!r}, project='durable')\n"
    return subprocess.run(
        [sys.executable, "-c", script + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def stored(root: Path) -> tuple[int, list[str]]:
    engine = sa.create_engine(f"sqlite:///{root / '.conveyor' / 'conveyor.db'}")
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(metrics)).scalar_one()
        statuses = list(conn.execute(sa.select(runs.c.status)).scalars())
    engine.dispose()
    return count, statuses


def test_a_process_that_exits_normally_keeps_every_metric(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        f"""
        cv.start_run(experiment="e")      # no 'with', no end_run, no flush
        for i in range({N}):
            cv.log_metric("loss", i * 0.5, step=i)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert stored(tmp_path) == (N, ["FINISHED"])


def test_a_run_body_that_raises_keeps_every_metric(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        f"""
        with cv.start_run(experiment="e"):
            for i in range({N}):
                cv.log_metric("loss", i * 0.5, step=i)
            raise RuntimeError("training diverged")
        """,
    )
    assert result.returncode == 1
    assert "training diverged" in result.stderr
    assert stored(tmp_path) == (N, ["FAILED"])


def test_an_uncaught_error_outside_a_with_block_marks_the_run_failed(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        cv.start_run(experiment="e")
        cv.log_metric("x", 1.0)
        raise SystemError("boom")
        """,
    )
    assert result.returncode == 1
    assert stored(tmp_path) == (1, ["FAILED"])


def test_sync_logging_is_durable_before_the_call_returns(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import os, sqlalchemy as sa
        engine = sa.create_engine(f"sqlite:///{cv.workspace().settings.state_dir}/conveyor.db")
        with cv.start_run(experiment="e"):
            cv.log_metric("x", 1.0)
            with engine.connect() as conn:   # another connection, no flush
                print(conn.exec_driver_sql("select count(*) from metrics").scalar())
            os._exit(0)                      # no atexit, no end of run
        """,
        env={"CONVEYOR_SYNC_LOGGING": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    assert stored(tmp_path) == (1, ["RUNNING"])
