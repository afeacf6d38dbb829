"""`conveyor pipeline`, `schedule` and `scheduler` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.cli_process import conveyor

ROOT = Path(__file__).parents[2]


def test_run_fail_show_resume_list_as_a_user_would(tmp_path: Path) -> None:
    shutil.copyfile(ROOT / "tests" / "fixtures" / "flows.py", tmp_path / "flows.py")
    assert conveyor(tmp_path, "init", "-p", "cli").returncode == 0

    ok = conveyor(tmp_path, "pipeline", "run", "flows.py:numbers", "-p", "n=5", "-p", "factor=3")
    assert ok.returncode == 0, ok.stderr
    assert "SUCCEEDED pipeline run" in ok.stdout
    assert "✓ total" in ok.stderr  # live progress, step by step

    (tmp_path / "fail-total").touch()
    failed = conveyor(tmp_path, "pipeline", "run", "flows.py:numbers", "-p", "n=6")
    assert failed.returncode == 1
    assert "failed at step 'total': ValueError: total was told to fail" in failed.stderr
    assert 'flows.py", line' in failed.stderr
    assert "--no-cache" not in failed.stderr.split("after a fix")[-1]

    listed = conveyor(tmp_path, "pipeline", "list", "--json")
    runs = json.loads(listed.stdout)
    assert [r["status"] for r in runs] == ["FAILED", "SUCCEEDED"]
    failed_id = runs[0]["id"]

    shown = conveyor(tmp_path, "pipeline", "show", failed_id[-8:])
    assert shown.returncode == 0, shown.stderr
    assert "✗ total" in shown.stdout
    assert "FAILED" in shown.stdout

    logged = conveyor(tmp_path, "pipeline", "logs", failed_id[-8:], "total")
    assert logged.returncode == 0, logged.stderr
    assert logged.stdout.startswith("adding up 6 values\nabout to fail\n")
    assert "ValueError: total was told to fail" in logged.stdout
    every = conveyor(tmp_path, "pipeline", "logs", failed_id[-8:]).stdout
    assert "── make ──\n(nothing printed)" in every
    assert conveyor(tmp_path, "pipeline", "logs", failed_id[-8:], "nope").returncode == 1

    (tmp_path / "fail-total").unlink()
    resumed = conveyor(tmp_path, "pipeline", "resume", failed_id[-8:])
    assert resumed.returncode == 0, resumed.stderr
    assert "2 cached, 1 succeeded" in resumed.stdout

    lines = conveyor(tmp_path, "pipeline", "list").stdout.strip().splitlines()
    assert lines[0].split()[:3] == [lines[0].split()[0], "numbers", "SUCCEEDED"]
    assert len(lines) == 3

    as_json = conveyor(tmp_path, "pipeline", "run", "flows.py:numbers", "-p", "n=4", "--json")
    assert json.loads(as_json.stdout)["status"] == "SUCCEEDED"  # stdout holds the JSON alone
    assert "adding up 4 values" in as_json.stderr  # what the step printed, on stderr

    (tmp_path / "fail-total").touch()  # a run without the cache: resumed the same way
    uncached = conveyor(tmp_path, "pipeline", "run", "flows.py:numbers", "-p", "n=6", "--no-cache")
    assert uncached.returncode == 1
    assert " --no-cache reuses the finished steps" in uncached.stderr


def test_a_cached_step_shows_the_metrics_of_the_run_it_reuses(tmp_path: Path) -> None:
    shutil.copyfile(ROOT / "tests" / "fixtures" / "flows.py", tmp_path / "flows.py")
    assert conveyor(tmp_path, "init", "-p", "cli").returncode == 0
    first = conveyor(tmp_path, "pipeline", "run", "flows.py:numbers", "-p", "n=3", "-e", "inline")
    assert first.returncode == 0, first.stderr
    again = conveyor(tmp_path, "pipeline", "run", "flows.py:numbers", "-p", "n=3", "--json")
    assert again.returncode == 0, again.stderr
    scale = next(s for s in json.loads(again.stdout)["steps"] if s["name"] == "scale")
    assert scale["status"] == "CACHED"

    shown = conveyor(tmp_path, "runs", "show", scale["id"])  # a step run is a tracked run
    assert shown.returncode == 0, shown.stderr
    metrics = shown.stdout.split("metrics", 1)[-1].split("tags", 1)[0]
    assert "length" in metrics, shown.stdout
    assert "3" in metrics, shown.stdout


def test_bad_input_gets_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('no config')\n")
    assert conveyor(tmp_path, "init").returncode == 0
    bad = conveyor(tmp_path, "pipeline", "run", "broken.py:train")
    assert bad.returncode == 1
    assert "Importing" in bad.stderr
    assert "RuntimeError: no config" in bad.stderr
    assert "Traceback" not in bad.stderr
    shutil.copyfile(ROOT / "tests" / "fixtures" / "flows.py", tmp_path / "flows.py")
    unknown = conveyor(tmp_path, "pipeline", "run", "flows.py:numbers", "-p", "size=3")
    assert "no parameter 'size'; its parameters: n=4, factor=2" in unknown.stderr
    assert "Running" not in unknown.stderr  # refused before saying it runs
    for executor, says in (("bogus", "Unknown executor 'bogus'"), ("local:0", "at least 1")):
        refused = conveyor(tmp_path, "pipeline", "run", "flows.py:numbers", "-e", executor)
        assert refused.returncode == 1
        assert says in refused.stderr
        assert "Running" not in refused.stderr


def test_schedules_from_the_command_line(tmp_path: Path) -> None:
    shutil.copyfile(ROOT / "tests" / "fixtures" / "flows.py", tmp_path / "flows.py")
    assert conveyor(tmp_path, "init").returncode == 0
    made = conveyor(
        tmp_path, "schedule", "create", "flows.py:chain", "--cron", "0 3 * * *", "-p", "length=2"
    )
    assert made.returncode == 0, made.stderr
    listed = json.loads(conveyor(tmp_path, "schedule", "list", "--json").stdout)
    assert [(s["name"], s["cron"], s["params"]) for s in listed] == [
        ("chain", "0 3 * * *", {"length": 2})
    ]
    idle = conveyor(tmp_path, "scheduler", "run", "--once")
    assert idle.returncode == 0, idle.stderr
    assert "Nothing was started" in idle.stdout
    bad = conveyor(tmp_path, "schedule", "create", "flows.py:chain", "--cron", "daily")
    assert "is not a cron expression" in bad.stderr
    assert conveyor(tmp_path, "schedule", "delete", "chain").returncode == 0


def test_a_due_schedule_that_cannot_start_is_reported_once(tmp_path: Path) -> None:
    import sqlalchemy as sa

    import conveyor as cv
    from conveyor.store.metadata.schema import schedules

    shutil.copyfile(ROOT / "tests" / "fixtures" / "flows.py", tmp_path / "flows.py")
    assert conveyor(tmp_path, "init").returncode == 0
    made = conveyor(tmp_path, "schedule", "create", "flows.py:chain", "--cron", "0 3 * * *")
    assert made.returncode == 0, made.stderr
    ws = cv.Workspace.from_settings(tmp_path)
    with ws.metadata.transaction() as uow:  # due now
        uow.conn.execute(sa.update(schedules).values(next_run_at=datetime(2020, 1, 1)))
    ws.close()
    (tmp_path / "flows.py").write_text("raise RuntimeError('half-edited')\n")
    once = conveyor(tmp_path, "scheduler", "run", "--once")
    assert once.returncode == 1
    assert once.stderr.count("half-edited") == 1, once.stderr
    assert "Schedule 'chain' cannot start: " in once.stderr


@pytest.mark.usefixtures("default_sigint")
def test_ctrl_c_stops_the_workers_and_marks_the_run_killed(tmp_path: Path) -> None:
    import signal
    import time

    import conveyor as cv

    shutil.copyfile(ROOT / "tests" / "fixtures" / "flows.py", tmp_path / "flows.py")
    assert conveyor(tmp_path, "init", "-p", "ctrlc").returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "pipeline", "run", "flows.py:napping"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ws = cv.Workspace.from_settings(tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = cv.pipelines.list_runs(workspace=ws)
            if runs and runs[0].status == "RUNNING":
                steps = cv.pipelines.get_run(runs[0].id, workspace=ws).steps
                if steps and steps[0].status == "RUNNING":
                    break
            time.sleep(0.1)
        else:
            proc.kill()
            raise AssertionError("the pipeline never started its step")
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert time.monotonic() - started < 15
        run = cv.pipelines.get_run(runs[0].id, workspace=ws)
        assert (str(run.status), str(run.steps[0].status)) == ("KILLED", "KILLED")
    finally:
        if proc.poll() is None:
            proc.kill()
        ws.close()


@pytest.mark.usefixtures("default_sigint")
def test_the_scheduler_daemon_does_not_wait_for_a_long_run(tmp_path: Path) -> None:
    import queue
    import signal
    import threading
    import time
    from datetime import timedelta

    import conveyor as cv
    from conveyor.core.clock import utcnow
    from conveyor.store.metadata.schema import schedules

    shutil.copyfile(ROOT / "tests" / "fixtures" / "flows.py", tmp_path / "flows.py")
    assert conveyor(tmp_path, "init", "-p", "daemon").returncode == 0
    gate = tmp_path / "gate"
    for args in (
        ("flows.py:gated", "-p", f"path={gate}", "--name", "slow"),
        ("flows.py:chain", "-p", "length=1", "--name", "quick"),
    ):
        made = conveyor(tmp_path, "schedule", "create", *args, "--cron", "0 3 * * *")
        assert made.returncode == 0, made.stderr
    ws = cv.Workspace.from_settings(tmp_path)
    with ws.metadata.transaction(project_id=ws.project.id) as uow:  # both due an hour ago
        uow.conn.execute(schedules.update().values(next_run_at=utcnow() - timedelta(hours=1)))
    ws.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "scheduler", "run", "--poll", "0.1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr])
    reader.start()
    said: list[str] = []

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 120
        while not any(text in line for line in said):
            try:
                said.append(lines.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                raise AssertionError(f"the scheduler never said {text!r}: {said}") from None

    try:
        wait_for("quick succeeded: run ")
        assert any("starting slow" in line for line in said)
        assert not any("slow succeeded" in line for line in said)  # still at its gate
        gate.touch()
        wait_for("slow succeeded: run ")
    finally:
        gate.touch()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join(timeout=10)
    ended = [line.split("run ")[-1].strip() for line in said if "succeeded: run " in line]
    listed = json.loads(conveyor(tmp_path, "pipeline", "list", "--json").stdout)
    assert sorted((r["id"], r["status"]) for r in listed) == sorted(
        (run_id, "SUCCEEDED") for run_id in ended
    )
    assert len(ended) == 2


FLAKY = """
from pathlib import Path

import conveyor as cv

@cv.step
def check() -> int:
    if Path(__file__).with_name("broken").exists():
        raise RuntimeError("broken")
    return 1

@cv.pipeline
def flaky():
    check()
"""


def test_a_module_pipeline_resumes_from_a_subfolder_of_the_project(tmp_path: Path) -> None:
    assert conveyor(tmp_path, "init", "-p", "sub").returncode == 0
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "__init__.py").write_text("")
    (tmp_path / "jobs" / "flaky.py").write_text(FLAKY)
    (tmp_path / "jobs" / "broken").touch()
    failed = conveyor(tmp_path, "pipeline", "run", "jobs.flaky:flaky", "--executor", "inline")
    assert failed.returncode == 1
    (tmp_path / "jobs" / "broken").unlink()
    run_id = json.loads(conveyor(tmp_path, "pipeline", "list", "--json").stdout)[0]["id"]
    (tmp_path / "notebooks").mkdir()
    resumed = conveyor(tmp_path / "notebooks", "pipeline", "resume", run_id[-8:])
    assert resumed.returncode == 0, resumed.stderr
