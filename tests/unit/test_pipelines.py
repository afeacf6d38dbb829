"""Pipelines on the embedded default: DAGs, executors, caching, failures, resume, materializers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import conveyor as cv
from conveyor.core.errors import ConflictError, InvalidArgumentError, NotFoundError
from conveyor.pipelines import PipelineFailed, PipelineStatus, StepStatus
from conveyor.pipelines.loader import PipelineImportError, load_pipeline
from conveyor.store.records import ObjectRef
from tests.fixtures import flows


@pytest.fixture
def ws(tmp_path: Path) -> cv.Workspace:
    return cv.init(tmp_path, project="pipes")


def statuses(run: cv.PipelineRun) -> dict[str, str]:
    return {s.name: str(s.status) for s in run.steps}


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_pipeline_gives_the_same_outputs_on_each_executor(ws: cv.Workspace, executor: str):
    run = flows.numbers.run(executor=executor, n=4, factor=3)
    assert run.status is PipelineStatus.SUCCEEDED
    assert statuses(run) == {"make": "SUCCEEDED", "scale": "SUCCEEDED", "total": "SUCCEEDED"}
    assert run.outputs["make"] == [0, 1, 2, 3]
    assert run.outputs["total"] == 18


def test_independent_steps_fan_out_and_join(ws: cv.Workspace):
    run = flows.fanout.run(executor="local:2", width=6)
    assert run.outputs["add_up"] == 30
    assert sorted(s.name for s in run.steps if s.step == "double") == [
        "double",
        *(f"double_{i}" for i in range(2, 7)),
    ]


def test_each_step_is_a_tracked_child_run_with_its_params_and_metrics(ws: cv.Workspace):
    run = flows.numbers.run(executor="local", n=3)
    scale = run.step("scale")
    tracked = cv.get_run(scale.id)
    assert tracked.parent_id == run.id
    assert tracked.params == {"factor": "2"}
    assert tracked.metrics == {"length": 3.0}
    assert str(tracked.status) == "FINISHED"
    parent = cv.get_run(run.id)
    assert parent.params == {"n": "3", "factor": "2"}


def test_lineage_runs_from_inputs_through_step_runs_to_outputs(ws: cv.Workspace):
    run = flows.numbers.run(executor="inline", n=3)
    graph = ws.lineage(ObjectRef("run", run.step("total").id), direction="upstream")
    kinds = {(n.kind, n.id) for n in graph.nodes()}
    assert ("run", run.step("make").id) in kinds
    assert ("step_output", f"{run.step('scale').id}/output") in kinds


def test_a_second_run_takes_every_step_from_the_cache(ws: cv.Workspace):
    first = flows.chain.run(executor="local", length=5)
    second = flows.chain.run(executor="local", length=5)
    assert set(statuses(second).values()) == {"CACHED"}
    assert [s.cached_from for s in second.steps] == [s.id for s in first.steps]
    assert second.outputs["inc_5"] == 5


def test_a_cached_step_run_ends_when_it_starts(ws: cv.Workspace):
    flows.chain.run(executor="inline", length=3)
    second = flows.chain.run(executor="inline", length=3)
    for step in second.steps:
        tracked = cv.get_run(step.id)
        assert tracked.end_time == tracked.start_time == step.started_at, step.name


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_cached_step_run_shows_the_metrics_of_the_run_it_reuses(ws: cv.Workspace, executor: str):
    first = flows.numbers.run(executor=executor, n=3)
    second = flows.numbers.run(executor=executor, n=3)
    third = flows.numbers.run(executor=executor, n=3)  # a cache hit of a cache hit
    for run in (second, third):
        scale = run.step("scale")
        assert scale.status is StepStatus.CACHED
        assert cv.get_run(scale.id).metrics == {"length": 3.0}, run.id
    assert cv.get_run(third.step("make").id).metrics == {}  # it logged none
    assert cv.get_run(first.step("scale").id).metrics == {"length": 3.0}


def test_a_cached_step_takes_the_last_point_of_each_metric(ws: cv.Workspace):
    @cv.step(name="learn")
    def learn() -> int:
        for step, loss in enumerate([0.9, 0.5, 0.2]):
            cv.log_metric("loss", loss, step=step)
        return 1

    @cv.pipeline(name="learning")
    def learning():
        learn()

    first = learning.run(executor="inline")
    again = learning.run(executor="inline").step("learn")
    assert again.cached_from == first.step("learn").id
    assert cv.get_run(again.id).metrics == {"loss": 0.2}
    history = cv.get_metric_history(again.id, "loss")
    assert [(p.step, p.value) for p in history] == [(2, 0.2)]


def test_cache_false_runs_every_step(ws: cv.Workspace):
    flows.chain.run(executor="inline", length=3)
    again = flows.chain.run(executor="inline", length=3, cache=False)
    assert set(statuses(again).values()) == {"SUCCEEDED"}


def test_a_changed_argument_reruns_its_step_and_what_depends_on_it(ws: cv.Workspace):
    flows.numbers.run(executor="inline", n=4, factor=2)
    run = flows.numbers.run(executor="inline", n=4, factor=5)
    assert statuses(run) == {"make": "CACHED", "scale": "SUCCEEDED", "total": "SUCCEEDED"}
    assert run.outputs["total"] == 30


def test_bumping_a_step_version_forces_a_new_run(ws: cv.Workspace):
    def build(version: str) -> cv.pipelines.Pipeline:
        @cv.step(name="answer", version=version)
        def answer() -> int:
            return 42

        @cv.pipeline(name="versions")
        def versions():
            answer()

        return versions

    build("1").run(executor="inline")
    assert statuses(build("1").run(executor="inline")) == {"answer": "CACHED"}
    assert statuses(build("2").run(executor="inline")) == {"answer": "SUCCEEDED"}


def test_a_new_dataset_version_invalidates_the_step_that_loaded_latest(ws: cv.Workspace):
    cv.data.add("customers", pd.DataFrame({"x": [1, 2]}))

    @cv.step(name="count_rows")
    def count_rows() -> int:
        return len(cv.data.load("customers@latest"))

    @cv.pipeline(name="reads")
    def reads():
        count_rows()

    assert reads.run(executor="inline").outputs["count_rows"] == 2
    assert statuses(reads.run(executor="inline")) == {"count_rows": "CACHED"}
    cv.data.add("customers", pd.DataFrame({"x": [1, 2, 3]}))
    run = reads.run(executor="inline")
    assert statuses(run) == {"count_rows": "SUCCEEDED"}
    assert run.outputs["count_rows"] == 3
    used = ws.lineage(ObjectRef("run", run.step("count_rows").id), direction="upstream")
    assert any(n.kind == "dataset_version" for n in used.nodes())
    cached = reads.run(executor="inline").step("count_rows")  # the same read, from the cache
    assert cached.cached_from == run.step("count_rows").id
    again = ws.lineage(ObjectRef("run", cached.id), direction="upstream")
    assert [(e.src.kind, e.relation) for e in again.edges] == [("dataset_version", "used_by")]


def test_a_step_is_linked_only_to_the_upstream_outputs_it_takes(ws: cv.Workspace):
    @cv.step(name="split")
    def split() -> tuple[list[int], list[int]]:
        return [1, 2, 3], [4]

    @cv.step(name="fit")
    def fit(rows: list[int]) -> int:
        return sum(rows)

    @cv.pipeline(name="splits")
    def splits():
        train, _test = split()
        fit(train)

    run = splits.run(executor="inline")
    graph = ws.lineage(ObjectRef("run", run.step("fit").id), direction="upstream")
    used = sorted(e.src.id for e in graph.edges if e.relation == "used_by")
    assert used == [f"{run.step('split').id}/output_0"]  # the train split, not the test one


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_steps_log_keeps_what_it_printed_and_how_it_failed(ws: cv.Workspace, executor: str):
    Path("fail-total").touch()
    with pytest.raises(PipelineFailed) as caught:
        flows.numbers.run(executor=executor, n=3)
    failed = caught.value.run
    text = cv.pipelines.step_log(failed.id, "total")
    assert text.startswith("adding up 3 values\nabout to fail\n")
    assert text.rstrip().endswith("ValueError: total was told to fail")
    assert cv.pipelines.step_log(failed.id, "make") == ""  # printed nothing

    Path("fail-total").unlink()
    resumed = cv.pipelines.resume(failed.id)
    cached = cv.pipelines.step_log(resumed.id, "scale")
    assert cached.startswith(f"[cache hit: this is the log of step run {failed.step('scale').id}]")
    assert cv.pipelines.step_log(resumed.id, "total") == "adding up 3 values\n"


def test_a_retried_step_keeps_the_log_of_its_last_attempt(ws: cv.Workspace):
    run = flows.flaky_pipeline.run(executor="local", fails=1)
    assert cv.pipelines.step_log(run.id, "flaky") == "[attempt 2]\nattempt 2 starts\n"


def test_a_retry_killed_by_its_timeout_says_the_log_is_an_earlier_attempts(ws: cv.Workspace):
    with pytest.raises(PipelineFailed) as caught:
        flows.stubborn_pipeline.run(executor="local")
    text = cv.pipelines.step_log(caught.value.run.id, "stubborn")
    assert text.startswith("[attempt 2 stored no log (Step 'stubborn' failed after 2 attempts: ")
    assert "timed out after 1s); below" in text
    assert "below, an earlier attempt's log]\nfirst attempt\n" in text


def test_a_cache_hit_of_a_cache_hit_shows_the_log_of_the_step_that_ran(ws: cv.Workspace):
    first = flows.numbers.run(executor="inline", n=2)
    flows.numbers.run(executor="inline", n=2)
    third = flows.numbers.run(executor="inline", n=2)
    text = cv.pipelines.step_log(third.id, "total")
    assert text == (
        f"[cache hit: this is the log of step run {first.step('total').id}]\nadding up 2 values\n"
    )


def test_a_step_may_write_bytes_and_call_basic_config(ws: cv.Workspace):
    import logging

    @cv.step
    def chatty(n: int) -> int:
        import sys

        sys.stdout.buffer.write(b"")  # the real stream's buffer is there
        if n == 1:  # the handler it makes (on the proxy) serves the next step too
            logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
        logging.getLogger("chatty").info("record %d", n)
        return n

    @cv.pipeline(name="chatty")
    def chatter(n: int = 1):
        chatty(n)

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        first = chatter.run(executor="inline", n=1)
        second = chatter.run(executor="inline", n=2)  # the handler made in step 1 still counts
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert cv.pipelines.step_log(first.id, "chatty") == "record 1\n"
    assert cv.pipelines.step_log(second.id, "chatty") == "record 2\n"


def test_a_step_that_wraps_stdout_leaves_later_steps_printing_once(ws: cv.Workspace):
    import sys

    from conveyor.pipelines.steplog import capture

    class Wrapper:
        def __init__(self, stream: object) -> None:
            self.stream = stream

        def write(self, text: str) -> int:
            return self.stream.write(text)  # type: ignore[attr-defined]

        def flush(self) -> None:
            self.stream.flush()  # type: ignore[attr-defined]

    real = sys.stdout
    try:
        with capture():
            sys.stdout = Wrapper(sys.stdout)  # left in place, as some scripts do
        with capture() as second:
            print("from the second step")
    finally:
        sys.stdout = real
    assert second.text() == "from the second step\n"


def test_steps_in_two_threads_keep_their_own_logs(ws: cv.Workspace):
    import sys

    from conveyor.pipelines.steplog import capture

    real = sys.stdout
    ready = threading.Barrier(2)
    logs: dict[str, str] = {}

    def step(name: str) -> None:
        with capture() as log:
            ready.wait()
            print(f"from {name}")
            ready.wait()
        logs[name] = log.text()

    threads = [threading.Thread(target=step, args=(n,)) for n in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert logs == {"A": "from A\n", "B": "from B\n"}
    assert sys.stdout is real


def test_a_steps_log_takes_log_records_bound_for_the_terminal(ws: cv.Workspace):
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s said: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        run = flows.numbers.run(executor="inline", n=2)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert "flows said: a log record from total\n" in cv.pipelines.step_log(run.id, "total")


def test_a_steps_log_keeps_its_newest_part_and_says_what_it_left_out():
    from conveyor.pipelines.steplog import StepLog

    log = StepLog(limit=10)
    for part in ("abcdef", "ghij", "klmno"):
        log.write(part)
    assert log.text() == "[5 earlier characters left out]\nfghijklmno"


def test_a_step_printing_far_past_the_log_limit_does_not_rejoin_it_each_write(
    monkeypatch: pytest.MonkeyPatch,
):
    from conveyor.pipelines.steplog import StepLog

    trims = []
    trim = StepLog._trim
    monkeypatch.setattr(StepLog, "_trim", lambda self: trims.append(1) or trim(self))
    log = StepLog(limit=1 << 20)
    line = "x" * 89 + "\n"
    for _ in range(50_000):  # 4.5 MB through a 1 MiB log
        log.write(line)
    assert len(trims) <= 50_000 // 256 + 1  # a join per few hundred writes (it was each one)
    text = log.text()
    assert text.endswith(line)
    assert len(text) - len(text.partition("\n")[0]) - 1 == 1 << 20  # the newest MiB, whole


def test_asking_for_the_log_of_a_step_the_run_lacks_names_its_steps(ws: cv.Workspace):
    run = flows.numbers.run(executor="inline", n=2)
    with pytest.raises(NotFoundError, match="no step called 'nope'"):
        cv.pipelines.step_log(run.id, "nope")


def test_a_failed_step_fails_the_run_with_its_traceback_and_resume_reuses_the_rest(
    ws: cv.Workspace,
):
    Path("fail-total").touch()
    with pytest.raises(PipelineFailed) as caught:
        flows.numbers.run(executor="local", n=4)
    failed = caught.value.run
    assert failed.status is PipelineStatus.FAILED
    assert statuses(failed) == {"make": "SUCCEEDED", "scale": "SUCCEEDED", "total": "FAILED"}
    assert "failed at step 'total'" in str(caught.value)
    assert "ValueError: total was told to fail" in failed.error
    assert 'flows.py", line' in failed.step("total").error  # the user's own frame
    assert failed.outputs["scale"] == [0, 2, 4, 6]  # finished outputs stay

    Path("fail-total").unlink()
    resumed = cv.pipelines.resume(failed.id[-8:])
    assert resumed.resumed_from == failed.id
    assert statuses(resumed) == {"make": "CACHED", "scale": "CACHED", "total": "SUCCEEDED"}
    assert resumed.step("scale").cached_from == failed.step("scale").id
    with pytest.raises(ConflictError, match="only FAILED or KILLED"):
        cv.pipelines.resume(resumed.id)


def test_a_resume_without_the_cache_runs_what_its_run_had_not_finished(ws: cv.Workspace):
    first = flows.numbers.run(executor="inline", n=3)  # every step cached from here on
    Path("fail-total").touch()
    with pytest.raises(PipelineFailed) as caught:
        flows.numbers.run(executor="inline", n=3, cache=False)
    Path("fail-total").unlink()
    resumed = cv.pipelines.resume(caught.value.run.id, cache=False)
    assert statuses(resumed) == {"make": "CACHED", "scale": "CACHED", "total": "SUCCEEDED"}
    assert resumed.step("total").cached_from is None  # trained here, not taken from `first`
    assert resumed.step("make").cached_from == caught.value.run.step("make").id
    assert first.step("total").id != resumed.step("total").id


def test_a_step_is_retried_until_it_succeeds(ws: cv.Workspace):
    run = flows.flaky_pipeline.run(executor="local", fails=2)
    assert run.step("flaky").attempts == 3
    assert run.outputs["flaky"] == 3


def test_retries_give_up_after_the_last_attempt(ws: cv.Workspace):
    with pytest.raises(PipelineFailed, match="after 3 attempts: RuntimeError: attempt 3 fails"):
        flows.flaky_pipeline.run(executor="inline", fails=5)


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_a_timeout_stops_the_step(ws: cv.Workspace, executor: str):
    started = time.monotonic()
    with pytest.raises(PipelineFailed, match=r"timed out after 0\.5s") as caught:
        flows.sleeper.run(executor=executor, seconds=30.0)
    assert time.monotonic() - started < 15
    text = cv.pipelines.step_log(caught.value.run.id, "slow")
    if executor == "inline":  # interrupted in this process: where it was is kept
        assert "time.sleep(seconds)" in text
    else:  # its worker was killed with what it printed
        assert text.startswith("[no log was stored: the step did not finish its call]\n")
        assert "timed out after 0.5s" in text


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie no one reaped yet counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states in /proc")
def test_a_timeout_also_stops_the_processes_the_step_started(ws: cv.Workspace):
    with pytest.raises(PipelineFailed, match=r"timed out after 0\.5s"):
        flows.spawner.run(executor="local")
    pid = int(Path("child.pid").read_text())
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid), f"the process the step started ({pid}) outlived the step's timeout"


def test_the_log_of_a_running_step_says_when_it_will_be_there(ws: cv.Workspace, tmp_path: Path):
    gate = tmp_path / "go"
    runner = threading.Thread(target=lambda: flows.gated.run(executor="local", path=str(gate)))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while not (running := cv.pipelines.list_runs(status="RUNNING")):
            assert time.monotonic() < deadline, "the pipeline did not start"
            time.sleep(0.05)
        while cv.pipelines.get_run(running[0].id).step("wait_for").status != "RUNNING":
            assert time.monotonic() < deadline, "the step did not start"
            time.sleep(0.05)
        text = cv.pipelines.step_log(running[0].id, "wait_for")
    finally:
        gate.touch()
        runner.join()
    assert text == "[the step is running: its log is stored when its attempt ends]\n"


def test_cancel_stops_a_running_pipeline_and_marks_it_killed(ws: cv.Workspace):
    def cancel_when_running() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            running = cv.pipelines.list_runs(status="RUNNING", workspace=ws)
            if running:
                cv.pipelines.cancel(running[0].id, workspace=ws)
                return
            time.sleep(0.05)

    @cv.step(name="wait_long")
    def wait_long() -> int:
        time.sleep(30)
        return 1

    @cv.pipeline(name="long")
    def long():
        wait_long()

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    started = time.monotonic()
    with pytest.raises(PipelineFailed) as caught:
        long.run(executor="local")
    canceller.join()
    assert caught.value.run.status is PipelineStatus.KILLED
    assert caught.value.run.step("wait_long").status is StepStatus.KILLED
    assert time.monotonic() - started < 15


# -- outputs of many types -------------------------------------------------------------------


def test_frames_arrays_and_models_round_trip_through_the_artifact_store(ws: cv.Workspace):
    from sklearn.linear_model import LogisticRegression

    @cv.step(name="frame")
    def frame() -> pd.DataFrame:
        return pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]})

    @cv.step(name="split")
    def split(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        return df[["a"]], df["y"].to_numpy()

    @cv.step(name="fit")
    def fit(x: pd.DataFrame, y: np.ndarray) -> LogisticRegression:
        return LogisticRegression().fit(x, y)

    @cv.pipeline(name="types")
    def types():
        x, y = split(frame())
        fit(x, y)

    run = types.run(executor="local")
    kinds = {s.name: s.outputs[0]["materializer"] for s in run.steps}
    assert kinds == {"frame": "pandas", "split": "pandas", "fit": "model"}
    x, y = run.outputs["split"]
    assert list(x.columns) == ["a"]
    assert y.tolist() == [0, 1, 0, 1]
    assert run.outputs["fit"].predict(pd.DataFrame({"a": [1.0]})).shape == (1,)


def test_a_registered_materializer_stores_its_type(ws: cv.Workspace):
    class Words(list):  # type: ignore[type-arg]
        pass

    class WordsMaterializer(cv.pipelines.Materializer):
        name = "words"

        def handles(self, value: object) -> bool:
            return isinstance(value, Words)

        def save(self, value: Words) -> tuple[dict[str, bytes], dict[str, object]]:
            return {"words.txt": " ".join(value).encode()}, {}

        def load(self, files: dict[str, bytes], info: dict[str, object]) -> Words:
            return Words(files["words.txt"].decode().split())

    cv.pipelines.register_materializer(WordsMaterializer())

    @cv.step(name="words")
    def words() -> Words:
        return Words(["to", "be"])

    @cv.pipeline(name="custom")
    def custom():
        words()

    run = custom.run(executor="inline")
    assert run.step("words").outputs[0]["materializer"] == "words"
    assert run.outputs["words"] == ["to", "be"]


# -- bad input -----------------------------------------------------------------------------


def test_a_value_the_annotation_rejects_fails_naming_the_step_and_type(ws: cv.Workspace):
    @cv.step(name="liar")
    def liar() -> int:
        return "seven"  # type: ignore[return-value]

    @cv.pipeline(name="lies")
    def lies():
        liar()

    with pytest.raises(PipelineFailed, match=r"Step 'liar' returned a str .* says int"):
        lies.run(executor="inline")

    @cv.step(name="three")
    def three() -> tuple[int, int]:
        return 1, 2, 3  # type: ignore[return-value]

    @cv.pipeline(name="counts")
    def counts():
        three()

    with pytest.raises(PipelineFailed, match=r"return 2 values .* returned a tuple of 3"):
        counts.run(executor="inline")


def test_a_step_called_outside_a_pipeline_with_a_future_is_refused():
    captured = []

    @cv.pipeline(name="leak")
    def leak():
        captured.append(flows.inc(1))

    leak.build({})  # a valid graph; the future escapes
    with pytest.raises(InvalidArgumentError, match="outside a pipeline"):
        flows.inc(captured[0])
    assert flows.inc(1) == 2  # outside a pipeline a step is a plain call


def test_an_unknown_parameter_lists_the_pipelines_parameters(ws: cv.Workspace):
    with pytest.raises(InvalidArgumentError, match=r"no parameter 'm'.*n=4, factor=2"):
        flows.numbers.run(m=3)


def test_unpacking_a_single_output_says_how_to_annotate(ws: cv.Workspace):
    @cv.pipeline(name="unpack")
    def unpack():
        _a, _b = flows.inc(1)

    with pytest.raises(InvalidArgumentError, match=r"tuple\[A, B\]"):
        unpack.run(executor="inline")


def test_a_pipeline_module_that_does_not_import_says_why(tmp_path: Path):
    bad = tmp_path / "broken.py"
    bad.write_text("import conveyor as cv\nraise RuntimeError('no database configured')\n")
    with pytest.raises(PipelineImportError, match="RuntimeError: no database configured"):
        load_pipeline(f"{bad}:train")
    with pytest.raises(NotFoundError, match=r"no pipeline called 'nope'.*chain"):
        load_pipeline("tests.fixtures.flows:nope")


def test_an_unknown_executor_is_refused_before_anything_is_recorded(ws: cv.Workspace):
    with pytest.raises(InvalidArgumentError, match="Unknown executor 'dask'"):
        flows.chain.run(executor="dask")
    assert cv.pipelines.list_runs() == []


# -- what a careful review found ------------------------------------------------------------


def _finishes_within(seconds: float, fn: Callable[[], object]) -> object:
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it takes too long."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            outcome["error"] = e

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


def test_a_pending_retry_is_dropped_when_another_step_fails(ws: cv.Workspace):
    @cv.step(name="broken")
    def broken() -> int:
        raise ValueError("broken for good")

    @cv.step(name="wobbly", retries=3, retry_delay=0.5)
    def wobbly() -> int:
        raise RuntimeError("wobbly for now")

    @cv.pipeline(name="both")
    def both():
        broken()
        wobbly()

    with pytest.raises(PipelineFailed) as caught:
        _finishes_within(30, lambda: both.run(executor="inline"))
    assert {s.name: str(s.status) for s in caught.value.run.steps} == {
        "broken": "FAILED",
        "wobbly": "FAILED",
    }


def test_an_error_of_the_coordinator_ends_the_run_failed_not_running(ws: cv.Workspace):
    @cv.step(name="takes_lock")
    def takes_lock(lock: object) -> int:
        return 1

    @cv.pipeline(name="locked")
    def locked():
        takes_lock(threading.Lock())  # cannot be digested for the cache key

    with pytest.raises(InvalidArgumentError, match="cannot be digested"):
        locked.run(executor="inline")
    (run,) = cv.pipelines.list_runs()
    assert run.status is PipelineStatus.FAILED
    assert "coordinator failed with InvalidArgumentError" in run.error


def test_projects_share_no_cache(tmp_path: Path):
    cv.init(tmp_path, project="first")
    flows.chain.run(executor="inline", length=2)
    cv.init(tmp_path, project="second")
    run = flows.chain.run(executor="inline", length=2)
    assert set(statuses(run).values()) == {"SUCCEEDED"}


def test_a_run_without_the_cache_still_feeds_it(ws: cv.Workspace):
    fresh = flows.chain.run(executor="inline", length=2, cache=False)
    later = flows.chain.run(executor="inline", length=2)
    assert [s.cached_from for s in later.steps] == [s.id for s in fresh.steps]


def test_resume_runs_again_a_step_whose_arguments_changed(ws: cv.Workspace):
    def build(factor: int) -> cv.pipelines.Pipeline:
        @cv.pipeline(name="numbers")
        def numbers(n: int = 4):
            flows.total(flows.scale(flows.make(n), factor=factor))

        return numbers

    Path("fail-total").touch()
    with pytest.raises(PipelineFailed) as caught:
        build(2).run(executor="inline")
    Path("fail-total").unlink()
    resumed = cv.pipelines.resume(caught.value.run.id, pipeline=build(10))
    assert statuses(resumed) == {"make": "CACHED", "scale": "SUCCEEDED", "total": "SUCCEEDED"}
    assert resumed.outputs["total"] == 60


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_star_args_and_keyword_arguments_reach_the_step(ws: cv.Workspace, executor: str):
    @cv.step(name="gather")
    def gather(first: int, *rest: int, **named: int) -> dict[str, object]:
        return {"first": first, "rest": list(rest), "named": named}

    @cv.pipeline(name="gathering")
    def gathering():
        gather(1, 2, 3, x=4)

    run = gathering.run(executor=executor)
    assert run.outputs["gather"] == {"first": 1, "rest": [2, 3], "named": {"x": 4}}


def test_a_timeout_counts_from_when_a_worker_takes_the_step(ws: cv.Workspace):
    @cv.step(name="pause", timeout=2.0)
    def pause(i: int) -> int:
        time.sleep(0.8)
        return i

    @cv.pipeline(name="queue")
    def queue():
        for i in range(3):
            pause(i)

    run = queue.run(executor="local:1")  # 2.4 s of work queued on one worker
    assert set(statuses(run).values()) == {"SUCCEEDED"}


def test_a_parameter_named_like_a_run_option_is_refused():
    def executor_param(executor: str = "x") -> None:
        pass

    with pytest.raises(InvalidArgumentError, match="'executor', which run\\(\\) takes"):
        cv.pipeline(executor_param)


def test_a_run_whose_coordinator_died_can_be_cancelled_and_resumed(ws: cv.Workspace):
    import socket
    import subprocess
    import sys

    from conveyor.store.metadata.schema import pipeline_runs

    Path("fail-total").touch()
    with pytest.raises(PipelineFailed) as caught:
        flows.numbers.run(executor="inline")
    Path("fail-total").unlink()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = caught.value.run.id
    with ws.metadata.transaction() as uow:  # as a coordinator killed with -9 leaves it
        uow.conn.execute(
            pipeline_runs.update()
            .where(pipeline_runs.c.id == run_id)
            .values(status="RUNNING", coordinator=f"{socket.gethostname()}:{dead.stdout.strip()}")
        )
    cancelled = cv.pipelines.cancel(run_id)
    assert cancelled.status is PipelineStatus.KILLED
    assert "is gone" in cancelled.error
    resumed = cv.pipelines.resume(run_id)
    assert statuses(resumed)["total"] == "SUCCEEDED"


@pytest.mark.usefixtures("default_sigint")
def test_a_ctrl_c_while_a_worker_starts_is_acted_on_once_the_worker_is_tracked():
    import signal

    from conveyor.pipelines.executors import _signals_deferred

    tracked = []

    def start_a_worker() -> None:
        with _signals_deferred():
            signal.raise_signal(signal.SIGINT)
            tracked.append("worker")  # what the interrupt would have skipped

    with pytest.raises(KeyboardInterrupt):
        start_a_worker()
    assert tracked == ["worker"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_steps_duration_leaves_out_the_time_it_waited_for_a_worker(ws: cv.Workspace):
    @cv.step(name="wait_a_bit")
    def wait_a_bit(i: int) -> int:
        time.sleep(0.4)
        return i

    @cv.pipeline(name="two_waits")
    def two_waits():
        wait_a_bit(1)
        wait_a_bit(2)

    run = two_waits.run(executor="inline")  # one after the other: the second waits 0.4 s
    first, second = sorted(run.steps, key=lambda s: s.ended_at)
    assert first.ended_at <= second.started_at  # their times do not overlap


def test_a_scripts_own_materializer_stores_its_outputs_on_the_local_executor(tmp_path: Path):
    # As the guide runs it: a script (__main__) defines a type and its materializer, and its
    # steps run in forked workers, which must see the very same class.
    script = tmp_path / "lines_flow.py"
    script.write_text(
        "import conveyor as cv\n\n"
        "class Lines(list):\n    pass\n\n"
        "class LinesMaterializer(cv.pipelines.Materializer):\n"
        "    name = 'lines'\n"
        "    def handles(self, value):\n        return isinstance(value, Lines)\n"
        "    def save(self, value):\n        return {'lines.txt': '\\n'.join(value).encode()}, {}\n"
        "    def load(self, files, info):\n"
        "        return Lines(files['lines.txt'].decode().split('\\n'))\n\n"
        "cv.pipelines.register_materializer(LinesMaterializer())\n\n"
        "@cv.step\ndef make() -> Lines:\n    return Lines(['a', 'b'])\n\n"
        "@cv.pipeline(name='lines')\ndef lines():\n    make()\n\n"
        "if __name__ == '__main__':\n"
        "    cv.init()\n"
        "    run = lines.run(executor='local', cache=False)\n"
        "    print([o.get('materializer') for s in run.steps for o in s.outputs])\n"
    )
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['lines']"


def test_a_stored_reference_is_taken_from_the_project_folder_wherever_this_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import sys

    project = tmp_path / "project"
    (project / "ct_pipes").mkdir(parents=True)
    (project / "ct_pipes" / "__init__.py").write_text("")
    (project / "ct_pipes" / "flow.py").write_text(
        "import conveyor as cv\n\n@cv.pipeline(name='ct')\ndef ct():\n    pass\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "path", list(sys.path))  # put back as it was afterwards
    assert load_pipeline("ct_pipes/flow.py:ct", root=project).name == "ct"
    assert load_pipeline("ct_pipes.flow:ct", root=project).name == "ct"
    with pytest.raises(NotFoundError):
        load_pipeline("ct_pipes/missing.py:ct", root=project)


FLOW = """
import conveyor as cv

FACTOR = {factor}
SETTINGS = {{"offsets": {{1, 2}}, "name": "x"}}

def helper(x):
    return x * FACTOR + {bump}

@cv.step
def scale(x: int) -> int:
    return helper(x) + len(SETTINGS["offsets"])

@cv.pipeline
def flow(x: int = 2):
    return scale(x)
"""


def _flow(module: str, factor: int, bump: int = 0) -> dict[str, Any]:
    """The names FLOW defines as module ``module`` would (a fresh namespace)."""
    namespace: dict[str, Any] = {"__name__": module}
    exec(compile(FLOW.format(factor=factor, bump=bump), f"{module}.py", "exec"), namespace)
    return namespace


def test_the_cache_key_sees_the_globals_and_helpers_a_step_uses(ws: cv.Workspace):
    digest = _flow("flows_a", 10)["scale"].source_digest
    assert _flow("flows_b", 10)["scale"].source_digest == digest  # the same code and values
    for changed in (_flow("flows_c", 100), _flow("flows_d", 10, bump=1)):  # constant, helper
        assert changed["scale"].source_digest != digest
    first = _flow("flows_e", 10)["flow"].run(executor="inline")
    again = _flow("flows_f", 100)["flow"].run(executor="inline")
    assert str(again.step("scale").status) == "SUCCEEDED"  # not a stale 22 from the cache
    assert (first.outputs["scale"], again.outputs["scale"]) == (22, 202)
    session = _flow("flows_g", 10)  # a notebook: the global changes between two runs
    assert session["flow"].run(executor="inline").outputs["scale"] == 22
    session["FACTOR"] = 1000
    assert session["flow"].run(executor="inline").outputs["scale"] == 2002


def test_the_cache_key_sees_default_arguments_and_every_literal(ws: cv.Workspace):
    def digest(source: str) -> str:
        namespace: dict[str, Any] = {"__name__": "defaults_flow"}
        exec(compile("import conveyor as cv\n" + source, "defaults_flow.py", "exec"), namespace)
        return str(namespace["f"].source_digest)

    assert digest("@cv.step\ndef f(x: int, k: int = 10) -> int:\n    return x * k\n") != digest(
        "@cv.step\ndef f(x: int, k: int = 100) -> int:\n    return x * k\n"
    )
    assert digest("@cv.step\ndef f(x: list) -> int:\n    return x[..., 0]\n") != digest(
        "@cv.step\ndef f(x: list) -> int:\n    return x[..., 1]\n"
    )


def test_the_cache_key_is_the_code_that_runs_not_the_file_on_disk(tmp_path: Path):
    import importlib
    import sys

    (tmp_path / "edited_flow.py").write_text(FLOW.format(factor=10, bump=0))
    sys.path.insert(0, str(tmp_path))
    try:
        scale = importlib.import_module("edited_flow").scale
        before = scale.source_digest
        (tmp_path / "edited_flow.py").write_text(FLOW.format(factor=10, bump=5))
        assert scale.source_digest == before  # computed again: from the code in memory
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("edited_flow", None)


def test_a_step_named_like_another_s_second_call_is_not_lost(ws: cv.Workspace):
    @cv.step
    def work(x: int) -> int:
        return x

    @cv.step(name="work_2")
    def special(x: int) -> int:
        return x * 100

    @cv.pipeline
    def clash() -> None:
        work(1)
        work(2)
        special(3)

    run = clash.run(executor="inline")
    assert sorted(run.outputs.values()) == [1, 2, 300]


def test_an_output_its_format_cannot_store_fails_the_step_clearly(ws: cv.Workspace):
    @cv.step
    def mixed() -> pd.DataFrame:
        return pd.DataFrame({"a": [1, "x", 2.5]})

    @cv.pipeline
    def storing() -> None:
        mixed()

    with pytest.raises(cv.pipelines.PipelineFailed) as failed:
        storing.run(executor="inline")
    step = failed.value.run.step("mixed")
    assert str(step.status) == "FAILED"
    assert "returned a pandas.DataFrame for output that cannot be stored" in (step.error or "")


def test_a_pipeline_function_that_raises_is_the_user_s_error_not_an_internal_one(
    ws: cv.Workspace,
):
    @cv.step
    def pair() -> tuple[int, int]:
        return 1, 2

    @cv.pipeline
    def unpacks_three() -> None:
        _a, _b, _c = pair()  # the mistake under test: pair gives two

    with pytest.raises(InvalidArgumentError, match="pipeline 'unpacks_three' raised ValueError"):
        unpacks_three.run(executor="inline")


def test_a_parameter_of_the_wrong_type_is_refused_before_anything_runs(ws: cv.Workspace):
    @cv.step
    def double(n: int) -> int:
        return 2 * n

    @cv.pipeline
    def typed(n: int = 1, rate: float = 0.5, name: str = "x") -> None:
        double(n)

    with pytest.raises(InvalidArgumentError, match="takes n: int; got str 'abc'"):
        typed.run(executor="inline", n="abc")
    with pytest.raises(InvalidArgumentError, match="takes n: int; got bool"):
        typed.run(executor="inline", n=True)
    assert cv.pipelines.list_runs() == []  # nothing was recorded
    assert typed.run(executor="inline", n=3, rate=1).outputs["double"] == 6  # an int is a float


def test_a_step_calling_sys_exit_fails_inline_as_in_a_worker(ws: cv.Workspace):
    import sys

    @cv.step
    def quits() -> int:
        sys.exit(3)

    @cv.pipeline
    def quitting() -> None:
        quits()

    with pytest.raises(cv.pipelines.PipelineFailed) as failed:
        quitting.run(executor="inline")
    step = failed.value.run.step("quits")
    assert (str(step.status), "SystemExit: 3" in (step.error or "")) == ("FAILED", True)


def test_listing_runs_by_an_unknown_status_is_refused(ws: cv.Workspace):
    with pytest.raises(InvalidArgumentError, match="status must be one of RUNNING"):
        cv.pipelines.list_runs(status="BOGUS")
    assert cv.pipelines.list_runs(status="failed") == []  # any case


def test_a_text_parameter_given_digits_on_the_command_line_stays_text():
    from conveyor.cli.pipelines import parse_params

    @cv.step
    def tagged(tag: str) -> str:
        return tag

    @cv.pipeline
    def tagging(tag: str, n: int = 1) -> None:
        tagged(tag)

    assert parse_params(tagging, ["tag=2024", "n=3"]) == {"tag": "2024", "n": 3}
