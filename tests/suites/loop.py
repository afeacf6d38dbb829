"""The closed loop as users rely on it, on every metadata / artifact / log backend.

A subclass provides ``store_uri``, ``artifact_uri`` and ``log_uri``. The project: ``churn/1``
trained on ``train@1`` (label = a + b > 0) serves as ``churn@champion`` behind deployment
``prod``; ``train@2`` holds the new behaviour (label = a - b > 0), so a model retrained on it
beats the champion there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import conveyor as cv
from conveyor.core.errors import ConflictError
from conveyor.loop import Canary, Gate, OnDrift, Policy
from conveyor.store.logs import read_log
from conveyor.store.workspace import Workspace

pytest.importorskip("fastapi", reason="the loop rolls out through the model server")
pytest.importorskip("sklearn", reason="scikit-learn is not installed")

from sklearn.linear_model import LogisticRegression

from conveyor.loop.controller import LoopController
from conveyor.testing import ModelServerClient

PIPELINE = "tests.fixtures.loop_flow:retrain"


def frame(n: int, seed: int, *, new: bool = False, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(shift, 1, n), rng.normal(0, 1, n)
    label = (a - b > 0) if new else (a + b > 0)
    return pd.DataFrame({"a": a, "b": b, "label": label.astype(int)})


def policy(**changes: Any) -> Policy:
    values: dict[str, Any] = {
        "name": "churn-ct",
        "deployment": "prod",
        "pipeline": PIPELINE,
        "executor": "inline",
        "gate": Gate(data="train@latest", checks=("signature", "latency_p99_ms<1000")),
        "rollout": Canary(steps=(50, 100), hold="1s"),
        "cooldown": "1h",
    }
    return Policy(**{**values, **changes})


def until(check: Callable[[], Any], what: str, seconds: float = 60) -> Any:
    """Poll ``check`` until it returns something true, or fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class LoopSuite:
    @pytest.fixture
    def ws(
        self, store_uri: str, artifact_uri: str, log_uri: str, tmp_path: Path
    ) -> Iterator[Workspace]:
        ws = cv.init(
            tmp_path / "project",
            project="loop",
            store_uri=store_uri,
            artifact_uri=artifact_uri,
            log_uri=log_uri,
            actor="ada",
        )
        old = frame(2000, 0)
        cv.data.add("train", old)
        model = LogisticRegression().fit(old[["a", "b"]], old["label"])
        cv.models.log(model, "churn", input_example=old[["a", "b"]][:5])
        cv.models.set_alias("churn", "champion", 1)
        cv.serving.deployments(ws).create("prod", "churn@champion")
        cv.data.add("train", frame(2000, 1, new=True))
        yield ws
        ws.close()

    @pytest.fixture
    def bob(self, ws: Workspace, store_uri: str, artifact_uri: str, log_uri: str) -> Iterator[Any]:
        other = cv.Workspace.from_settings(
            ws.settings.root,
            project="loop",
            store_uri=store_uri,
            artifact_uri=artifact_uri,
            log_uri=log_uri,
            actor="bob",
        )
        yield other
        other.close()

    def states(self, ws: Workspace) -> list[str]:
        return [e.state for e in cv.loop.executions("churn-ct", workspace=ws)]

    def drive(
        self, ws: Workspace, client: Any, final: tuple[str, ...], holder: str | None = None
    ) -> Any:
        """Tick while sending traffic, until the execution ends in one of ``final``."""
        controller = LoopController(ws, holder=holder)
        rows = frame(20, 7)[["a", "b"]]

        def step() -> Any:
            client.predict(rows, name="prod", check=False)  # a failing canary answers 500
            controller.tick()
            (execution, *_) = cv.loop.executions("churn-ct", workspace=ws)
            return execution if execution.state in final else None

        return until(step, f"the execution to end {final}")

    def test_a_triggered_policy_retrains_gates_canaries_and_promotes(self, ws: Workspace) -> None:
        cv.loop.apply(policy(), workspace=ws)
        execution = cv.loop.trigger("churn-ct", "the data changed", workspace=ws)
        assert execution.state == "triggered"
        with ModelServerClient(deployment="prod", workspace=ws, reload_interval=0.05) as client:
            done = self.drive(ws, client, ("promoted", "rolled_back", "rejected", "failed"))
            assert done.state == "promoted", done.reason
            answer = until(
                lambda: (
                    (a := client.predict(frame(3, 8)[["a", "b"]], name="prod"))["model_version"]
                    == "churn/2"
                    and a
                ),
                "the server to serve churn/2",
            )
        assert answer["model_version"] == "churn/2"
        assert done.candidate == "churn/2"
        assert done.champion == "churn/1"
        assert done.gate["passed"] is True
        assert done.gate["candidate"]["value"] > done.gate["champion"]["value"]
        assert cv.models.get("churn@champion").version == 2
        assert cv.models.get("churn@challenger").version == 2
        current = cv.serving.deployments(ws).get("prod")
        assert current.routes == (
            {"model": "churn@champion", "weight": 100.0, "role": "primary", "version": "churn/2"},
        )
        kinds = [e["kind"] for e in cv.loop.events("churn-ct", workspace=ws)]
        for state in ("triggered", "training", "gating", "awaiting_approval", "promoted"):
            assert state in kinds
        assert kinds.count("rolling_out") >= 3  # 50% written, 50% held, then promotion
        changes = [r.change for r in reversed(cv.serving.deployments(ws).history("prod"))]
        assert changes == ["create", "canary", "promote"]  # each split written once
        from conveyor.store.records import ObjectRef

        version = cv.models.get("churn/2")
        upstream = ws.lineage(ObjectRef("model_version", version.id)).nodes()
        assert ObjectRef("loop_execution", done.id) in upstream  # the decision behind it
        downstream = ws.lineage(ObjectRef("loop_execution", done.id), direction="downstream")
        kinds = {n.kind for n in downstream.nodes()}
        assert {"pipeline_run", "model_version", "model_evaluation"} <= kinds
        assert "deployment_revision" in kinds

    def test_a_worse_candidate_is_rejected_by_the_gate(self, ws: Workspace) -> None:
        cv.loop.apply(policy(params={"quality": "bad"}), workspace=ws)
        cv.loop.trigger("churn-ct", workspace=ws)
        LoopController(ws).tick()
        (execution,) = cv.loop.executions("churn-ct", workspace=ws)
        assert execution.state == "rejected"
        assert "worse" in execution.reason
        assert cv.models.get("churn@champion").version == 1
        assert [r.change for r in cv.serving.deployments(ws).history("prod")] == ["create"]

    def test_a_canary_the_server_rolls_back_ends_the_execution_rolled_back(
        self, ws: Workspace
    ) -> None:
        cv.loop.apply(policy(rollout=Canary(steps=(20, 100), hold="1h")), workspace=ws)
        cv.loop.trigger("churn-ct", workspace=ws)
        controller = LoopController(ws)
        controller.tick()
        assert self.states(ws) == ["rolling_out"]
        # the server's guard saw too many errors on the canary and took it out
        cv.serving.deployments(ws).rollback_canary("prod", "churn/2", "error rate 40% over 5%")
        controller.tick()
        (execution,) = cv.loop.executions("churn-ct", workspace=ws)
        assert execution.state == "rolled_back"
        assert "error rate 40%" in execution.reason
        assert cv.models.get("churn@champion").version == 1

    def test_a_canary_that_fails_requests_is_rolled_back_by_the_server_guard(
        self, ws: Workspace
    ) -> None:
        failing = Canary(steps=(50, 100), hold="1h", max_error_rate=0.2)
        cv.loop.apply(
            policy(params={"quality": "broken"}, gate=None, rollout=failing), workspace=ws
        )
        cv.loop.trigger("churn-ct", workspace=ws)
        served = ModelServerClient(
            deployment="prod", workspace=ws, reload_interval=0.05, trust=True
        )
        with served as client:
            done = self.drive(ws, client, ("promoted", "rolled_back", "failed"))
        assert done.state == "rolled_back", done.reason
        assert "error rate" in done.reason
        routes = cv.serving.deployments(ws).get("prod").routes
        assert [r["model"] for r in routes] == ["churn@champion"]
        assert cv.models.get("churn@champion").version == 1

    def test_a_canary_slower_than_its_limit_is_rolled_back_after_its_hold(
        self, ws: Workspace
    ) -> None:
        slow = Canary(steps=(50, 100), hold="1s", max_p99_ms=0.000001)
        cv.loop.apply(policy(rollout=slow), workspace=ws)
        cv.loop.trigger("churn-ct", workspace=ws)
        with ModelServerClient(deployment="prod", workspace=ws, reload_interval=0.05) as client:
            done = self.drive(ws, client, ("promoted", "rolled_back", "failed"))
        assert done.state == "rolled_back"
        assert "p99 latency" in done.reason  # the server's guard or the hold's end, first wins
        routes = cv.serving.deployments(ws).get("prod").routes
        assert [r["model"] for r in routes] == ["churn@champion"]

    def test_approval_required_waits_for_a_second_person(self, ws: Workspace, bob: Any) -> None:
        cv.models.require_approval("churn")  # champion protected: only the approval moves it
        cv.loop.apply(policy(approval="required", rollout=None), workspace=ws)
        cv.loop.trigger("churn-ct", workspace=ws)
        controller = LoopController(ws)
        controller.tick()
        controller.tick()  # nothing changes while the request waits
        (waiting,) = cv.loop.executions("churn-ct", workspace=ws)
        assert waiting.state == "awaiting_approval"
        assert waiting.request_id is not None
        request = cv.models.approve(waiting.request_id, comment="looks right", workspace=bob)
        assert request.deferred is True
        assert cv.models.get("churn@champion").version == 1  # moves after the rollout only
        with pytest.raises(cv.PermissionDeniedError, match="protected"):
            cv.models.set_alias("churn", "champion", 2)
        controller.tick()
        (done,) = cv.loop.executions("churn-ct", workspace=ws)
        assert done.state == "promoted", done.reason
        assert cv.models.get("churn@champion").version == 2
        last = cv.models.alias_history("churn", "champion")[-1]
        assert last.request_id == waiting.request_id
        from conveyor.models.service import model_service

        assert cv.models.request(waiting.request_id).status == "applied"
        with pytest.raises(cv.PermissionDeniedError, match="it is applied"):
            model_service(ws).set_alias("churn", "champion", 2, request_id=waiting.request_id)

    def test_an_approval_is_usable_once_by_its_requester_and_never_moves_a_moved_champion(
        self, ws: Workspace, bob: Any
    ) -> None:
        from conveyor.models.service import model_service

        cv.loop.apply(policy(approval="required", rollout=None), workspace=ws)
        cv.loop.trigger("churn-ct", workspace=ws)
        controller = LoopController(ws)
        controller.tick()
        (waiting,) = cv.loop.executions("churn-ct", workspace=ws)
        cv.models.approve(waiting.request_id, workspace=bob)
        with pytest.raises(cv.PermissionDeniedError, match="only its requester, ada"):
            model_service(bob).set_alias("churn", "champion", 2, request_id=waiting.request_id)
        with pytest.raises(cv.PermissionDeniedError, match="asks for churn@champion -> churn/2"):
            model_service(ws).set_alias("churn", "production", 2, request_id=waiting.request_id)
        old = frame(500, 4)
        cv.models.log(
            LogisticRegression().fit(old[["a", "b"]], old["label"]),
            "churn",
            input_example=old[["a", "b"]][:5],
        )
        cv.models.set_alias("churn", "champion", 3)  # someone moved it meanwhile
        controller.tick()
        (done,) = cv.loop.executions("churn-ct", workspace=ws)
        assert done.state == "failed"
        assert "has moved since" in done.reason
        assert cv.models.get("churn@champion").version == 3  # not moved back
        assert cv.models.request(waiting.request_id).status == "withdrawn"

    def test_long_durations_given_as_timedeltas_store_and_read_back(self) -> None:
        from datetime import timedelta

        made = policy(cooldown=timedelta(days=12), rollout=Canary(hold=timedelta(seconds=1.5)))
        again = Policy.from_dict(made.to_dict())
        assert again.cooldown_seconds == 12 * 86400
        assert again.rollout is not None
        assert again.rollout.hold_seconds == 1.5

    def test_a_rejected_request_ends_the_execution(self, ws: Workspace, bob: Any) -> None:
        cv.loop.apply(policy(approval="required"), workspace=ws)
        cv.loop.trigger("churn-ct", workspace=ws)
        controller = LoopController(ws)
        controller.tick()
        (waiting,) = cv.loop.executions("churn-ct", workspace=ws)
        cv.models.reject(waiting.request_id, comment="not this week", workspace=bob)
        controller.tick()
        (done,) = cv.loop.executions("churn-ct", workspace=ws)
        assert done.state == "rejected"
        assert "not this week" in done.reason

    def test_drift_triggers_once_and_the_cooldown_holds_off_a_retrain_storm(
        self, ws: Workspace
    ) -> None:
        cv.monitoring.create("prod-watch", deployment="prod", reference="train@1")
        cv.loop.apply(
            policy(triggers=[OnDrift("prod-watch")], gate=None, rollout=None), workspace=ws
        )
        with ModelServerClient(deployment="prod", workspace=ws) as client:
            client.predict(frame(300, 3, shift=2.0)[["a", "b"]], name="prod")
        first = cv.monitoring.run("prod-watch")
        assert first.dataset_drifted is True
        controller = LoopController(ws)
        controller.tick()
        (done,) = cv.loop.executions("churn-ct", workspace=ws)
        assert done.state == "promoted", done.reason
        assert done.trigger["kind"] == "drift"
        assert done.trigger["source"] == {"kind": "monitor_result", "id": first.id}
        cv.monitoring.run("prod-watch")  # drifted again, within the cooldown
        controller.tick()
        assert len(cv.loop.executions("churn-ct", workspace=ws)) == 1
        ignored = [e for e in cv.loop.events("churn-ct", workspace=ws) if e["kind"] == "ignored"]
        assert len(ignored) == 1
        assert "cooling down" in ignored[0]["message"]
        seen = len(cv.loop.events("churn-ct", workspace=ws))
        controller.tick()  # the same result does not fire twice
        assert len(cv.loop.events("churn-ct", workspace=ws)) == seen
        cv.loop.trigger("churn-ct", "by hand", workspace=ws)  # a person overrides the cooldown
        with pytest.raises(ConflictError, match="in progress"):
            cv.loop.trigger("churn-ct", workspace=ws)

    @pytest.mark.parametrize(
        ("state", "nth"),
        [
            ("training", 1),  # the run id chosen, not recorded
            ("gating", 1),  # trained and registered
            ("awaiting_approval", 1),  # gated (evaluations stored)
            ("rolling_out", 1),  # approved
            ("rolling_out", 2),  # the 50% split written to the deployment
            ("rolling_out", 3),  # the 50% step held and judged
            ("promoted", 1),  # champion moved, the deployment serving it
        ],
    )
    def test_a_controller_killed_before_recording_a_state_resumes_without_repeating_it(
        self, ws: Workspace, state: str, nth: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from conveyor.loop import service

        quick = Canary(steps=(50, 100), hold="0s", min_rows=0)  # one tick goes all the way
        cv.loop.apply(policy(rollout=quick), workspace=ws)
        cv.loop.trigger("churn-ct", workspace=ws)
        real = service.LoopService.move

        class Killed(BaseException):
            pass

        seen: list[str] = []

        def dies(self: Any, execution: Any, to: str, *args: Any, **kwargs: Any) -> Any:
            seen.append(to)
            if seen.count(state) == nth:  # the work of the step is done, its record is not
                raise Killed
            return real(self, execution, to, *args, **kwargs)

        monkeypatch.setattr(service.LoopService, "move", dies)
        with pytest.raises(Killed):
            LoopController(ws, holder="first").tick()
        monkeypatch.setattr(service.LoopService, "move", real)
        # restarted under the same name (a pod keeps its name), so it holds the lease at once
        with ModelServerClient(deployment="prod", workspace=ws, reload_interval=0.05) as client:
            ends = ("promoted", "rolled_back", "rejected", "failed")
            done = self.drive(ws, client, ends, holder="first")
        assert done.state == "promoted", done.reason
        runs = cv.pipelines.list_runs("retrain")
        assert len(runs) == 1  # trained once
        assert sorted(v.version for v in cv.models.versions("churn")) == [1, 2]
        changes = [r.change for r in reversed(cv.serving.deployments(ws).history("prod"))]
        assert changes == ["create", "canary", "promote"]  # deployed once per step

    def test_a_controller_killed_after_asking_for_approval_asks_once(
        self, ws: Workspace, bob: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from conveyor.loop import service

        cv.loop.apply(policy(approval="required", rollout=None), workspace=ws)
        cv.loop.trigger("churn-ct", workspace=ws)
        real = service.LoopService.move

        class Killed(BaseException):
            pass

        def dies(self: Any, execution: Any, to: str, *args: Any, **kwargs: Any) -> Any:
            if to == "awaiting_approval" and kwargs.get("request_id"):
                raise Killed  # the request exists; the execution does not know it yet
            return real(self, execution, to, *args, **kwargs)

        monkeypatch.setattr(service.LoopService, "move", dies)
        with pytest.raises(Killed):
            LoopController(ws, holder="first").tick()
        monkeypatch.setattr(service.LoopService, "move", real)
        LoopController(ws, holder="first").tick()
        (request,) = cv.models.requests("churn")
        (waiting,) = cv.loop.executions("churn-ct", workspace=ws)
        assert waiting.request_id == request.id
        cv.models.approve(request.id, workspace=bob)
        LoopController(ws, holder="first").tick()
        assert self.states(ws) == ["promoted"]

    def test_only_the_controller_holding_the_lease_acts(self, ws: Workspace) -> None:
        from conveyor.store.metadata.schema import leases

        cv.loop.apply(policy(rollout=None), workspace=ws)
        first, second = LoopController(ws, holder="a"), LoopController(ws, holder="b")
        cv.loop.trigger("churn-ct", workspace=ws)
        assert first.tick()  # takes the lease and does the work
        cv.loop.trigger("churn-ct", workspace=ws)
        assert second.tick() == []
        assert second.holds_lease is False
        assert self.states(ws)[0] == "triggered"
        with ws.metadata.transaction(project_id=ws.project.id) as uow:  # a's lease runs out
            uow.conn.execute(leases.update().values(expires_at=datetime(2000, 1, 1, tzinfo=UTC)))
        assert second.tick()  # b takes over
        assert first.tick() == []  # and a stands down
        assert self.states(ws)[0] == "promoted"

    def test_two_triggers_on_one_monitor_new_data_and_a_schedule_each_fire(
        self, ws: Workspace
    ) -> None:
        from datetime import timedelta

        from conveyor.loop import OnMetric, OnNewData, Schedule

        cv.monitoring.create("prod-watch", deployment="prod", reference="train@1")
        triggers = [
            OnDrift("prod-watch"),
            OnMetric("prod-watch", "rows", ">", 100),
            OnNewData("train"),
            Schedule("0 3 * * *"),
        ]
        cv.loop.apply(policy(triggers=triggers, cooldown="0s"), workspace=ws)
        cv.loop.pause("churn-ct", workspace=ws)  # only to read what fires, one at a time
        from conveyor.loop.triggers import fired

        stored = cv.loop.get("churn-ct", workspace=ws)
        spec = Policy.from_dict(stored["spec"])
        now = datetime.now(UTC)
        assert fired(ws, spec, stored["cursors"], now)[0] == []  # nothing yet
        with ModelServerClient(deployment="prod", workspace=ws) as client:
            client.predict(frame(300, 3, shift=2.0)[["a", "b"]], name="prod")
        result = cv.monitoring.run("prod-watch")
        cv.data.add("train", frame(500, 9, new=True))
        hits, moved = fired(ws, spec, stored["cursors"], now + timedelta(days=1))
        kinds = [h.detail["kind"] for h in hits]
        assert sorted(kinds) == ["drift", "metric", "new_data", "schedule"]
        assert {h.key for h in hits if h.detail["kind"] in ("drift", "metric")} == {
            f"drift:{result.id}",
            f"metric:rows:{result.id}",
        }
        again, _ = fired(ws, spec, moved, now + timedelta(days=1))
        assert again == []  # each fires once

    def test_a_canary_that_cannot_be_judged_is_not_promoted(self, ws: Workspace) -> None:
        judged = Canary(
            steps=(50, 100), hold="0.2s", min_metric=("roc_auc", ">=", 0.5), judge_within="2s"
        )
        cv.loop.apply(policy(rollout=judged), workspace=ws)
        cv.loop.trigger("churn-ct", workspace=ws)
        served = ModelServerClient(
            deployment="prod", workspace=ws, reload_interval=0.05, flush_seconds=0.2
        )
        controller = LoopController(ws)
        rows = frame(20, 7)[["a", "b"]]

        def split_written() -> bool:
            controller.tick()
            (execution, *_) = cv.loop.executions("churn-ct", workspace=ws)
            assert execution.active, execution.reason
            return execution.state == "rolling_out" and execution.revision is not None

        def candidate_logged() -> bool:
            client.predict(rows, name="prod", check=False)
            logged = read_log(ws.log_uri, "predictions", deployment="prod")
            return not logged.empty and bool((logged["model_version"] == 2).any())

        with served as client:  # no label ever comes
            until(split_written, "the canary's split to be written")
            # the candidate's predictions are in the log before the next tick judges the
            # hold, so a slow machine cannot turn this into "no predictions in time"
            until(candidate_logged, "the candidate's predictions to be logged")
            done = self.drive(
                ws, client, ("promoted", "rolled_back", "failed"), holder=controller.holder
            )
        assert done.state == "rolled_back"
        assert "roc_auc could not be judged" in done.reason
        assert cv.models.get("churn@champion").version == 1

    def test_pause_and_resume_and_mistakes_in_a_policy(self, ws: Workspace) -> None:
        with pytest.raises(cv.InvalidArgumentError, match="MODULE:PIPELINE"):
            policy(pipeline="retrain")
        with pytest.raises(cv.InvalidArgumentError, match="must rise"):
            Canary(steps=(50, 10))
        with pytest.raises(cv.InvalidArgumentError, match="Unknown gate check"):
            Gate(data="train@latest", checks=("speed",))
        with pytest.raises(cv.NotFoundError, match="No deployment"):
            cv.loop.apply(policy(deployment="nope"), workspace=ws)
        with pytest.raises(cv.NotFoundError, match="No monitor"):
            cv.loop.apply(policy(triggers=[OnDrift("ghost")]), workspace=ws)
        assert cv.loop.list(workspace=ws) == []
        stored = cv.loop.apply(policy(), workspace=ws)
        assert Policy.from_dict(stored["spec"]) == policy()
        assert cv.loop.pause("churn-ct", workspace=ws)["paused"] is True
        assert cv.loop.resume("churn-ct", workspace=ws)["paused"] is False
        status = cv.loop.status("churn-ct", workspace=ws)
        assert (status["active"], status["last"], status["paused"]) == (None, None, False)
        cv.models.require_approval("churn")  # champion protected: no promotion on its own
        with pytest.raises(cv.InvalidArgumentError, match="approval='required'"):
            cv.loop.apply(policy(), workspace=ws)
        assert cv.loop.apply(policy(approval="required"), workspace=ws)["spec"]["approval"] == (
            "required"
        )
