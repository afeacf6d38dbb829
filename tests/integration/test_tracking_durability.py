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


def test_forked_children_keep_what_they_logged(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import multiprocessing as mp
        cv.start_run(experiment="parent")  # open in the parent: a child must not end it
        def child(n):
            with cv.start_run(experiment="kids", name=f"kid-{n}"):
                for i in range(1000):
                    cv.log_metric("x", float(i), step=i)
        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=child, args=(n,)) for n in range(2)]
        for p in procs: p.start()
        for p in procs: p.join()
        assert all(p.exitcode == 0 for p in procs)
        kids = cv.search_runs(experiment="kids", output="list")
        parent = cv.search_runs(experiment="parent", output="list")[0]
        print(len(kids), sorted(str(k.status) for k in kids), parent.status)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "2 ['FINISHED', 'FINISHED'] RUNNING"
    count, statuses = stored(tmp_path)
    assert count == 2000
    assert sorted(statuses) == ["FINISHED", "FINISHED", "FINISHED"]  # the parent, at its exit


def test_a_forked_child_names_its_parent_run_by_id_before_it_is_stored(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import multiprocessing as mp
        parent = cv.start_run(experiment="tune")  # forked at once: maybe not stored yet
        def child():
            with cv.start_run(parent=parent.id, name="trial"):
                pass
        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=child) for _ in range(4)]
        for p in procs: p.start()
        for p in procs: p.join()
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
        kids = [r for r in cv.search_runs(experiment="tune", output="list") if r.name == "trial"]
        print(len(kids), {k.parent_id == parent.id for k in kids})
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "4 {True}"


def test_runs_left_open_in_threads_and_tasks_end_at_exit(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import asyncio, threading
        def in_thread():
            cv.start_run(experiment="bg", name="thread")
            cv.log_metric("x", 1.0)
        t = threading.Thread(target=in_thread); t.start(); t.join()
        async def task():
            cv.start_run(experiment="bg", name="task")
            cv.log_metric("x", 2.0)
        asyncio.run(task())
        """,
    )
    assert result.returncode == 0, result.stderr
    assert stored(tmp_path) == (2, ["FINISHED", "FINISHED"])


def test_ctrl_c_outside_a_with_block_marks_the_run_killed(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        cv.start_run(experiment="e")
        cv.log_metric("x", 1.0)
        raise KeyboardInterrupt
        """,
    )
    assert result.returncode != 0
    assert stored(tmp_path) == (1, ["KILLED"])


def test_a_thread_logs_to_the_workspace_chosen_by_init(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import threading, conveyor as cv
                cv.init({str(tmp_path)!r}, project="p")
                def work():
                    with cv.start_run(experiment="t"):
                        cv.log_metric("x", 1.0)
                t = threading.Thread(target=work); t.start(); t.join()
                """
            ),
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert stored(tmp_path) == (1, ["FINISHED"])
    assert not (elsewhere / ".conveyor").exists()


def test_a_pool_that_terminates_its_workers_keeps_their_runs(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import multiprocessing as mp
        def work(n):
            with cv.start_run(experiment="pool", name=f"job-{n}"):
                cv.log_metric("x", float(n))
            return n
        with mp.get_context("fork").Pool(2) as pool:   # leaving the block terminates workers
            print(sorted(pool.map(work, range(4))))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert stored(tmp_path) == (4, ["FINISHED"] * 4)
