"""Schedules: stored, validated, and started exactly once even with two schedulers."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import conveyor as cv
from conveyor.core import ids
from conveyor.core.clock import utcnow
from conveyor.core.errors import AlreadyExistsError, InvalidArgumentError
from conveyor.pipelines import schedules as schedules_module
from conveyor.pipelines.schedules import Scheduler, get_schedule
from conveyor.pipelines.service import STALE_AFTER
from conveyor.store.metadata.schema import schedules
from conveyor.store.workspace import Workspace
from tests.fixtures import flows


@pytest.fixture
def ws(tmp_path: Path) -> cv.Workspace:
    return cv.init(tmp_path, project="sched")


def test_a_schedule_is_stored_with_its_next_due_time(ws: cv.Workspace):
    found = cv.schedule(flows.chain, cron="0 3 * * *", params={"length": 2}, name="nightly")
    assert (found.name, found.pipeline, found.params) == ("nightly", "chain", {"length": 2})
    assert (found.next_run_at.hour, found.next_run_at.minute) == (3, 0)
    assert [s.name for s in cv.pipelines.list_schedules()] == ["nightly"]
    with pytest.raises(AlreadyExistsError):
        cv.schedule(flows.chain, cron="0 4 * * *", name="nightly")
    cv.pipelines.delete_schedule("nightly")
    assert cv.pipelines.list_schedules() == []


def test_a_bad_cron_or_parameter_is_refused(ws: cv.Workspace):
    with pytest.raises(InvalidArgumentError, match="not a cron expression"):
        cv.schedule(flows.chain, cron="every day")
    with pytest.raises(InvalidArgumentError, match="not a cron expression"):
        cv.schedule(flows.chain, cron="* * * * * *")  # six fields: every second
    with pytest.raises(InvalidArgumentError, match="never fires"):
        cv.schedule(flows.chain, cron="0 0 31 2 *")  # the 31st of February
    assert cv.schedule(flows.chain, cron="@daily").cron == "@daily"
    with pytest.raises(InvalidArgumentError, match="no parameter 'size'"):
        cv.schedule(flows.chain, cron="* * * * *", params={"size": 3})


def test_two_schedulers_start_a_due_run_exactly_once(ws: cv.Workspace, tmp_path: Path):
    made = cv.schedule(
        "tests.fixtures.flows:chain", cron="*/5 * * * *", params={"length": 2}, executor="inline"
    )
    due = made.next_run_at + timedelta(seconds=1)
    started: list[object] = []
    barrier = threading.Barrier(2)

    def scheduler(holder: str) -> None:
        own = Workspace.from_settings(tmp_path, project="sched")  # its own connections
        barrier.wait()
        started.extend(Scheduler(own, holder=holder).tick(now=due))
        own.close()

    threads = [threading.Thread(target=scheduler, args=(h,)) for h in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(started) == 1
    assert len(cv.pipelines.list_runs("chain")) == 1
    after = get_schedule(made.name)
    assert after.next_run_at > due
    assert after.last_run_id == cv.pipelines.list_runs("chain")[0].id


def test_the_lease_keeps_a_second_scheduler_idle_until_it_expires(ws: cv.Workspace):
    first = Scheduler(ws, holder="first", lease_ttl=timedelta(seconds=60))
    second = Scheduler(ws, holder="second", lease_ttl=timedelta(seconds=60))
    assert first.acquire_lease()
    assert not second.acquire_lease()
    first.release_lease()
    assert second.acquire_lease()


def test_after_downtime_at_most_catch_up_missed_runs_start(ws: cv.Workspace):
    made = cv.schedule(
        flows.chain, cron="* * * * *", params={"length": 1}, executor="inline", catch_up=1
    )
    hours_later = made.next_run_at + timedelta(hours=2)
    scheduler = Scheduler(ws)
    runs = scheduler.tick(now=hours_later)
    assert len(runs) == 2  # the due run and one catch-up, not 120
    assert scheduler.tick(now=hours_later) == []  # nothing due until the next minute


def test_a_due_time_is_claimed_once_even_without_the_lease(ws: cv.Workspace):
    made = cv.schedule(flows.chain, cron="*/5 * * * *", executor="inline")
    due = made.next_run_at + timedelta(seconds=1)
    first, second = Scheduler(ws, holder="a"), Scheduler(ws, holder="b")
    assert first._claim(made, due) == 1
    assert second._claim(made, due) == 0  # the compare-and-set: the same due time, once


def test_a_schedule_whose_pipeline_does_not_import_stays_due(ws: cv.Workspace, tmp_path: Path):
    module = tmp_path / "later.py"
    module.write_text(
        "import conveyor as cv\n\n@cv.step\ndef one() -> int:\n    return 1\n\n"
        "@cv.pipeline(name='later')\ndef later():\n    one()\n"
    )
    made = cv.schedule(f"{module}:later", cron="*/5 * * * *", executor="inline")
    module.write_text("raise ImportError('half-edited')\n")
    for name in [m for m in sys.modules if m.startswith("_conveyor_pipeline_")]:
        del sys.modules[name]
    scheduler = Scheduler(ws)
    due = made.next_run_at + timedelta(seconds=1)
    assert scheduler.tick(now=due) == []
    assert "half-edited" in scheduler.errors[made.name]
    assert get_schedule(made.name).next_run_at == made.next_run_at  # still due
    assert scheduler.tick(now=due) == []
    assert scheduler.errors == {}  # held a while: not imported (nor reported) every poll
    scheduler._held.clear()  # the hold is over
    module.write_text(
        "import conveyor as cv\n\n@cv.step\ndef one() -> int:\n    return 1\n\n"
        "@cv.pipeline(name='later')\ndef later():\n    one()\n"
    )
    for name in [m for m in sys.modules if m.startswith("_conveyor_pipeline_")]:
        del sys.modules[name]
    assert len(scheduler.tick(now=due)) == 1


def test_a_run_named_but_not_recorded_yet_holds_its_schedule(
    ws: cv.Workspace, monkeypatch: pytest.MonkeyPatch
):
    # A scheduler names the run on its schedule as it starts the run's process, a moment
    # before the run records itself; a scheduler restarted in that moment must wait.
    made = cv.schedule(flows.chain, cron="*/5 * * * *", params={"length": 1}, executor="inline")
    due = made.next_run_at + timedelta(seconds=1)
    with ws.metadata.transaction(project_id=ws.project.id) as uow:
        uow.conn.execute(
            schedules.update()
            .where(schedules.c.id == made.id)
            .values(last_run_id=ids.new_id(), next_run_at=made.next_run_at)
        )
    scheduler = Scheduler(ws)
    assert scheduler.tick(now=due) == []
    assert get_schedule(made.name).next_run_at == made.next_run_at  # still due
    # A run that never records itself (its process died at start) holds it no longer than
    # a silent heartbeat would.
    later = utcnow() + STALE_AFTER + timedelta(seconds=1)
    monkeypatch.setattr(schedules_module, "utcnow", lambda: later)
    assert len(scheduler.tick(now=due)) == 1


def test_a_pipeline_from_python_c_cannot_be_scheduled(ws: cv.Workspace):
    @cv.pipeline(name="adhoc")
    def adhoc():
        flows.inc(1)

    adhoc.entrypoint = "__main__:adhoc"  # as in a notebook or python -c
    with pytest.raises(InvalidArgumentError, match="notebook or `python -c`"):
        cv.schedule(adhoc, cron="0 3 * * *")


REPO = Path(__file__).resolve().parents[2]


def _until(condition: Callable[[], bool], what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit:g} s: {what}")
        time.sleep(0.05)


@pytest.fixture
def launchable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Launched run processes import tests.fixtures.flows from this repository."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


@pytest.mark.usefixtures("launchable")
def test_dispatch_lets_a_long_run_hold_up_no_other_schedule(ws: cv.Workspace, tmp_path: Path):
    gate = tmp_path / "gate"
    slow = cv.schedule(
        "tests.fixtures.flows:gated",
        cron="*/5 * * * *",
        params={"path": str(gate)},
        executor="inline",
        name="slow",
    )
    quick = cv.schedule(
        "tests.fixtures.flows:chain",
        cron="*/5 * * * *",
        params={"length": 1},
        executor="inline",
        name="quick",
    )
    due = max(slow.next_run_at, quick.next_run_at) + timedelta(seconds=1)
    ended: list[tuple[str, Any]] = []
    scheduler = Scheduler(ws, on_end=lambda found, run: ended.append((found.name, run)))
    started = scheduler.dispatch(now=due)  # returns with both runs going
    assert len(started) == 2
    assert set(scheduler.running) == {"slow", "quick"}
    try:
        _until(
            lambda: not scheduler.dispatch(now=due) and "quick" not in scheduler.running,
            "the quick run ends",
        )
        assert "slow" in scheduler.running  # still at its gate: it held nothing up
        assert [(name, str(run.status)) for name, run in ended] == [("quick", "SUCCEEDED")]
        assert get_schedule("quick").last_run_id == ended[0][1].id
        # Due again while its run goes on: it waits for that run, the other one starts.
        again = scheduler.dispatch(now=due + timedelta(minutes=5))
        assert len(again) == 1
        assert scheduler.running["quick"] == again[0]
        assert get_schedule("slow").next_run_at == slow.next_run_at + timedelta(minutes=5)
    finally:
        gate.touch()
        _until(lambda: not scheduler.dispatch(now=due) and not scheduler.running, "runs end")
    runs = {name: run for name, run in ended}
    assert str(runs["slow"].status) == "SUCCEEDED"
    assert get_schedule("slow").last_run_id == runs["slow"].id
    assert len(cv.pipelines.list_runs("gated")) == 1  # not started a second time meanwhile


def _due_an_hour_ago(ws: cv.Workspace) -> None:
    from conveyor.store.metadata.schema import schedules

    with ws.metadata.transaction(project_id=ws.project.id) as uow:
        uow.conn.execute(schedules.update().values(next_run_at=utcnow() - timedelta(hours=1)))


@pytest.mark.usefixtures("launchable")
def test_run_forever_keeps_checking_while_a_run_goes_on(ws: cv.Workspace, tmp_path: Path):
    gate = tmp_path / "gate"
    cv.schedule(
        "tests.fixtures.flows:gated", cron="0 3 * * *", params={"path": str(gate)}, name="slow"
    )
    cv.schedule("tests.fixtures.flows:chain", cron="0 3 * * *", params={"length": 1}, name="quick")
    _due_an_hour_ago(ws)
    ended: list[str] = []
    scheduler = Scheduler(ws, on_end=lambda found, run: ended.append(found.name))
    deadline = time.monotonic() + 120
    try:
        scheduler.run_forever(
            poll=0.05, stop=lambda: "quick" in ended or time.monotonic() > deadline
        )
        assert ended == ["quick"]
        assert "slow" in scheduler.running  # the loop went on while it waited at its gate
    finally:
        gate.touch()
        _until(lambda: not scheduler.dispatch() and not scheduler.running, "the slow run ends")
    assert ended == ["quick", "slow"]


def test_a_run_whose_process_cannot_start_gives_its_due_time_back(
    ws: cv.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # The scheduler has the module (imported before); a run's process, in this folder
    # without the repository on its path, has not.
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.chdir(tmp_path)
    made = cv.schedule(
        "tests.fixtures.flows:chain", cron="*/5 * * * *", executor="inline", name="lost"
    )
    due = made.next_run_at + timedelta(seconds=1)
    ended: list[tuple[str, Any]] = []
    scheduler = Scheduler(ws, on_end=lambda found, run: ended.append((found.name, run)))
    assert len(scheduler.dispatch(now=due)) == 1
    before = made.next_run_at - timedelta(seconds=1)  # only records what ended
    _until(lambda: not scheduler.dispatch(now=before) and not scheduler.running, "it ends")
    assert ended == [("lost", None)]
    assert scheduler.errors["lost"].startswith(
        "Schedule 'lost' did not start its run: There is no module 'tests.fixtures.flows'"
    )
    after = get_schedule("lost")
    assert (after.next_run_at, after.last_run_id) == (made.next_run_at, None)  # due again
    assert scheduler.dispatch(now=due) == []  # but left alone for a while (10 s, doubling)


def test_a_run_imports_its_pipeline_from_the_schedulers_folder(
    ws: cv.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    src = tmp_path / "src"  # a src layout: the scheduler runs from src/, not the project root
    src.mkdir()
    (src / "srcflow.py").write_text(
        "import conveyor as cv\n\n@cv.step\ndef one() -> int:\n    return 1\n\n"
        "@cv.pipeline(name='srcflow')\ndef srcflow():\n    one()\n"
    )
    monkeypatch.chdir(src)
    made = cv.schedule("srcflow:srcflow", cron="*/5 * * * *", executor="inline")
    ended: list[Any] = []
    scheduler = Scheduler(ws, on_end=lambda found, run: ended.append(run))
    assert len(scheduler.dispatch(now=made.next_run_at + timedelta(seconds=1))) == 1
    _until(lambda: not scheduler.dispatch(now=made.next_run_at) and bool(ended), "it ends")
    assert scheduler.errors == {}
    assert [str(run.status) for run in ended] == ["SUCCEEDED"]


@pytest.mark.usefixtures("launchable")
def test_a_catch_up_claimed_before_the_lease_was_lost_still_runs(ws: cv.Workspace):
    made = cv.schedule(
        "tests.fixtures.flows:chain", cron="* * * * *", params={"length": 1}, catch_up=1
    )
    later = made.next_run_at + timedelta(hours=2)
    ended: list[Any] = []
    first = Scheduler(ws, holder="first", on_end=lambda found, run: ended.append(run))
    other = Scheduler(ws, holder="other", lease_ttl=timedelta(days=1))  # past ``later``
    assert len(first.dispatch(now=later)) == 1  # the due run; its catch-up is claimed too
    first.release_lease()
    assert other.acquire_lease()  # the lease changes hands while the run goes on
    _until(lambda: not first.dispatch(now=later) and bool(ended), "the due run ends")
    assert len(cv.pipelines.list_runs("chain")) == 1
    other.release_lease()
    assert len(first.dispatch(now=later)) == 1  # the lease back: the catch-up starts
    _until(lambda: not first.dispatch(now=later) and len(ended) == 2, "the catch-up ends")
    assert len(cv.pipelines.list_runs("chain")) == 2


@pytest.mark.usefixtures("launchable")
def test_a_restarted_scheduler_waits_for_the_run_it_did_not_start(ws: cv.Workspace, tmp_path: Path):
    gate = tmp_path / "gate"
    made = cv.schedule("tests.fixtures.flows:gated", cron="*/5 * * * *", params={"path": str(gate)})
    due = made.next_run_at + timedelta(seconds=1)
    before = Scheduler(ws, holder="before")
    (run_id,) = before.dispatch(now=due)
    try:
        _until(lambda: _recorded(ws, run_id), "the run is recorded")
        before.release_lease()  # as if it stopped; its run goes on
        after = Scheduler(ws, holder="after")
        assert after.dispatch(now=due + timedelta(minutes=5)) == []  # due, but its run goes on
        assert get_schedule("gated").next_run_at == made.next_run_at + timedelta(minutes=5)
    finally:
        gate.touch()
        _until(lambda: not before.dispatch(now=due) and not before.running, "the run ends")
    assert len(after.dispatch(now=due + timedelta(minutes=5))) == 1  # ended: now it starts
    _until(lambda: not after.dispatch(now=due) and not after.running, "that run ends")


def _recorded(ws: cv.Workspace, run_id: str) -> bool:
    try:
        cv.pipelines.get_run(run_id, workspace=ws)
    except cv.NotFoundError:
        return False
    return True


@pytest.mark.usefixtures("launchable")
def test_at_most_max_runs_go_at_once_and_the_others_stay_due(ws: cv.Workspace, tmp_path: Path):
    gate = tmp_path / "gate"
    for name in ("one", "two"):
        cv.schedule(
            "tests.fixtures.flows:gated",
            cron="0 3 * * *",
            params={"path": str(gate)},
            name=name,
        )
    _due_an_hour_ago(ws)
    waiting = {s.name: s.next_run_at for s in cv.pipelines.list_schedules()}
    ended: list[str] = []
    scheduler = Scheduler(ws, max_runs=1, on_end=lambda found, run: ended.append(found.name))
    try:
        assert len(scheduler.dispatch()) == 1
        (going,) = scheduler.running
        (other,) = set(waiting) - {going}
        assert get_schedule(other).next_run_at == waiting[other]  # not claimed: still due
    finally:
        gate.touch()
    _until(lambda: (scheduler.dispatch() or True) and len(ended) == 2, "both end, in turn")
    assert ended == [going, other]
    with pytest.raises(InvalidArgumentError, match="max_runs must be at least 1"):
        Scheduler(ws, max_runs=0)


@pytest.mark.usefixtures("launchable")
def test_dispatch_starts_catch_up_runs_one_after_the_other(ws: cv.Workspace):
    made = cv.schedule(
        "tests.fixtures.flows:chain",
        cron="* * * * *",
        params={"length": 1},
        executor="inline",
        catch_up=1,
    )
    hours_later = made.next_run_at + timedelta(hours=2)
    ended: list[Any] = []
    scheduler = Scheduler(ws, on_end=lambda found, run: ended.append(run))
    first = scheduler.dispatch(now=hours_later)
    assert len(first) == 1  # the due run now; its catch-up once it has ended
    started = list(first)
    _until(
        lambda: bool(started.extend(scheduler.dispatch(now=hours_later))) or len(ended) == 2,
        "the due run and one catch-up end",
    )
    assert len(started) == 2  # the due run and one catch-up, not 120
    assert [run.id for run in ended] == started
    assert [str(run.status) for run in ended] == ["SUCCEEDED", "SUCCEEDED"]
    assert scheduler.dispatch(now=hours_later) == []  # nothing due until the next minute


@pytest.mark.usefixtures("launchable")
def test_the_longest_due_schedule_takes_a_free_slot_first(ws: cv.Workspace):
    for name in ("a", "b"):  # no catch-up: one run per claim
        cv.schedule(
            "tests.fixtures.flows:chain",
            cron="* * * * *",
            params={"length": 1},
            name=name,
            catch_up=0,
        )
    _due_an_hour_ago(ws)
    now = utcnow()
    ended: list[str] = []
    scheduler = Scheduler(ws, max_runs=1, on_end=lambda found, run: ended.append(found.name))
    assert len(scheduler.dispatch(now=now)) == 1
    assert set(scheduler.running) == {"a"}  # equally due: by name
    long_ago = now - timedelta(days=1)  # nothing is due then: only records what ended
    _until(lambda: not scheduler.dispatch(now=long_ago) and bool(ended), "a's run ends")
    # A minute on, a is due again, but b has waited an hour: b goes first.
    assert len(scheduler.dispatch(now=now + timedelta(minutes=1))) == 1
    assert set(scheduler.running) == {"b"}
    _until(lambda: not scheduler.dispatch(now=long_ago) and len(ended) == 2, "b's run ends")


@pytest.mark.usefixtures("launchable")
def test_a_catch_up_that_cannot_start_waits_and_is_tried_again(
    ws: cv.Workspace, caplog: pytest.LogCaptureFixture
):
    made = cv.schedule(
        "tests.fixtures.flows:chain", cron="* * * * *", params={"length": 1}, catch_up=1
    )
    later = made.next_run_at + timedelta(hours=2)
    starts: list[str] = []

    def on_start(found: Any) -> None:
        starts.append(found.name)
        if len(starts) == 2:  # the catch-up's first start fails
            raise OSError("no more processes")

    ended: list[Any] = []
    scheduler = Scheduler(ws, on_start=on_start, on_end=lambda found, run: ended.append(run))
    scheduler.poll = 0.05  # the wait after a failure starts at one poll
    assert len(scheduler.dispatch(now=later)) == 1
    _until(
        lambda: (scheduler.dispatch(now=later) or True) and len(ended) == 2,
        "the due run ends, then the catch-up, tried again",
    )
    assert starts == ["chain"] * 3  # the due run, the failed start, the catch-up
    assert "Schedule 'chain' could not start a run: no more processes" in caplog.text
    assert [str(run.status) for run in ended] == ["SUCCEEDED", "SUCCEEDED"]
    assert len(cv.pipelines.list_runs("chain")) == 2
