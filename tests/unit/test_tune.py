"""cv.tune: Optuna search where every trial is a child run."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import conveyor as cv
from conveyor.core.errors import InvalidArgumentError

pytest.importorskip("optuna", reason="Optuna is not installed")


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    ws = cv.init(tmp_path, project="tune")
    yield ws
    ws.close()


def test_trials_are_child_runs_and_the_best_is_found(ws: cv.Workspace) -> None:
    threads: set[int] = set()

    def objective(params: dict) -> float:
        threads.add(threading.get_ident())
        cv.log_metric("inside", 1.0)  # goes to the trial's own run
        return -((params["x"] - 2.0) ** 2) - (0 if params["kind"] == "b" else 1)

    result = cv.tune(
        objective,
        {"x": (-5.0, 5.0), "n": (1, 10), "lr": (1e-4, 1e-1, "log"), "kind": ["a", "b"]},
        n_trials=30,
        parallel=2,
        seed=7,
        experiment="search",
    )
    assert (result.n_trials, result.n_failed) == (30, 0)
    assert len(threads) == 2  # trials really ran in two threads
    children = cv.search_runs(
        experiment="search", filter="attributes.name LIKE 'trial-%'", output="list"
    )
    assert len(children) == 30
    assert {c.parent_id for c in children} == {result.parent_run_id}
    assert all(c.metrics["inside"] == 1.0 and "objective" in c.metrics for c in children)
    best = max(children, key=lambda c: c.metrics["objective"])
    assert (best.id, best.metrics["objective"]) == (result.best_run_id, result.best_value)
    assert best.params["kind"] == result.best_params["kind"]
    parent = cv.get_run(result.parent_run_id)
    assert parent.status is cv.RunStatus.FINISHED
    assert parent.tags["best_run_id"] == result.best_run_id
    assert parent.metrics["best_objective"] == result.best_value
    assert 1 <= int(cv.get_run(result.best_run_id).params["n"]) <= 10


def test_a_seeded_sequential_search_finds_the_optimum(ws: cv.Workspace) -> None:
    result = cv.tune(
        lambda p: -((p["x"] - 2.0) ** 2) - (0 if p["kind"] == "b" else 1),
        {"x": (-5.0, 5.0), "kind": ["a", "b"]},
        n_trials=40,
        seed=7,
    )
    assert abs(result.best_params["x"] - 2.0) < 0.5
    assert result.best_params["kind"] == "b"


def test_a_failing_trial_is_failed_and_the_search_goes_on(ws: cv.Workspace) -> None:
    def objective(params: dict) -> float:
        if params["x"] > 0.5:
            raise RuntimeError("diverged")
        return params["x"]

    result = cv.tune(objective, {"x": (0.0, 1.0)}, n_trials=12, seed=1, direction="minimize")
    assert result.n_failed >= 1
    failed = cv.search_runs(filter="status = 'FAILED'", output="list")
    assert len(failed) == result.n_failed


def test_inside_an_active_run_that_run_is_the_parent(ws: cv.Workspace) -> None:
    with cv.start_run(experiment="outer") as run:
        result = cv.tune(lambda p: p["x"], {"x": [1, 2, 3]}, n_trials=4, seed=3)
    assert result.parent_run_id == run.id
    # Four unseeded draws from three choices need not hit the best one, so the
    # test checks what users rely on: the parent records the search's best.
    assert cv.get_run(run.id).params["best.x"] == str(result.best_params["x"])


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"x": (5, 1)}, "low < high"),
        ({"x": ("a", "b")}, "needs numbers"),
        ({"x": (1.0, 2.0, "cube")}, "may only be 'log'"),
        ({"x": 3}, "cannot read the search space entry 'x'"),
        ({}, "non-empty search space"),
    ],
)
def test_a_bad_space_says_what_is_wrong(ws: cv.Workspace, space: dict, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        cv.tune(lambda p: 0.0, space, n_trials=1)


def test_an_objective_that_returns_no_number_fails_every_trial(ws: cv.Workspace) -> None:
    with pytest.raises(InvalidArgumentError, match="all 2 trials failed"):
        cv.tune(lambda p: "good", {"x": (0.0, 1.0)}, n_trials=2)
