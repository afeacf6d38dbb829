"""Monitors as users rely on them, on every metadata / artifact / log backend.

A subclass provides ``store_uri``, ``artifact_uri`` and ``log_uri``.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import conveyor as cv
from conveyor.store.workspace import Workspace

pytest.importorskip("fastapi", reason="monitoring reads what the server logs")
pytest.importorskip("sklearn", reason="scikit-learn is not installed")

from sklearn.linear_model import LogisticRegression

from conveyor.testing import ModelServerClient


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(shift, 1, n), "b": rng.normal(0, 1, n)})


@cv.step
def prepare(ref: str) -> pd.DataFrame:
    """A pipeline step that reads raw data and writes the table the model is trained on."""
    raw = cv.data.load(ref)
    table = raw.assign(c=raw["a"] - raw["b"])
    cv.data.add("train-table", table)
    return table


@cv.step
def fit(table: pd.DataFrame) -> str:
    model = LogisticRegression().fit(table[["a", "b", "c"]], (table["a"] > 0).astype(int))
    return cv.models.log(model, "piped", input_example=table[["a", "b", "c"]][:5]).ref


@cv.pipeline(name="piped-train")
def piped(ref: str = "train@1") -> None:
    fit(prepare(ref))


class MonitoringSuite:
    @pytest.fixture
    def ws(
        self, store_uri: str, artifact_uri: str, log_uri: str, tmp_path: Path
    ) -> Iterator[Workspace]:
        ws = cv.Workspace.from_settings(
            tmp_path / "project",
            project="watch",
            store_uri=store_uri,
            artifact_uri=artifact_uri,
            log_uri=log_uri,
        )
        yield ws
        ws.close()

    @pytest.fixture
    def served(self, ws: Workspace) -> dict[str, Any]:
        """A model trained on reference data, then 300 requests whose column a moved."""
        train = frame(3000, 0)
        y = (train["a"] + train["b"] > 0).astype(int)
        cv.data.add("train", train, workspace=ws)
        model = LogisticRegression().fit(train, y)
        cv.models.log(model, "churn", input_example=train[:5], workspace=ws)
        cv.serving.deployments(ws).create("prod", "churn/1")
        # A shadow copy of every request is logged under the same ids: never counted twice.
        # (The same model again as churn/2: a shadow of the primary's own version is refused.)
        cv.models.log(model, "churn", input_example=train[:5], workspace=ws)
        cv.serving.deployments(ws).shadow("prod", "churn/2")
        now = frame(300, 1, shift=1.0)
        with ModelServerClient(deployment="prod", workspace=ws) as client:
            answers = [client.predict(now.iloc[i : i + 1], name="prod") for i in range(300)]
            deadline = time.monotonic() + 10  # let the shadow copies land in the log too
            while 'model_version="churn/2",status="200"} 300.0' not in client.metrics():
                assert time.monotonic() < deadline, "the shadow copies did not all run"
                time.sleep(0.02)
        ids = [a["prediction_ids"][0] for a in answers]
        truth = (now["a"] + now["b"] > 0).astype(int).tolist()
        return {"ids": ids, "truth": truth, "predictions": [a["predictions"][0] for a in answers]}

    def test_a_monitor_finds_drift_and_measures_performance_from_late_labels(
        self, ws: Workspace, served: dict[str, Any], tmp_path: Path
    ) -> None:
        labelled = pd.DataFrame(
            {"prediction_id": served["ids"][:120], "label": served["truth"][:120]}
        )
        assert cv.monitoring.log_labels(labelled, deployment="prod", workspace=ws) == 120
        cv.monitoring.create("prod-watch", deployment="prod", reference="train@1", workspace=ws)
        result = cv.monitoring.run("prod-watch", workspace=ws)
        assert result.rows == 300
        assert result.drift["drifted_columns"] == ["a"]
        assert result.dataset_drifted is True  # 1 of 2 columns
        expected = np.mean(np.array(served["predictions"][:120]) == np.array(served["truth"][:120]))
        assert result.performance["labelled_rows"] == 120
        assert result.performance["accuracy"] == pytest.approx(expected)
        assert result.service["versions"]["churn/1"]["rows"] == 300
        assert result.service["versions"]["churn/2 (shadow)"]["rows"] == 300
        assert result.quality["columns"]["a"]["out_of_range"] >= 0.0
        # a moved: the model says 1 far more often than on its training data
        predicted = result.drift["predictions"]["churn/1"]
        assert predicted["kind"] == "categorical"
        assert predicted["drifted"] is True
        assert result.drift["prediction_drifted"] is True
        stored = cv.monitoring.results("prod-watch", workspace=ws)
        assert [r.id for r in stored] == [result.id]
        assert stored[0].drift["drifted_columns"] == ["a"]
        page = result.to_html(str(tmp_path / "report.html"))
        assert "DATA DRIFTED" in page
        assert "<script" not in page
        assert "http" not in page
        cards = re.findall(r'<div class="card( bad)?"><h3>([^<]*)</h3>', page)
        assert cards == [(" bad", "prediction of churn/1"), (" bad", "a"), ("", "b")]
        assert page.count("<svg") >= 3  # their distributions
        assert (tmp_path / "report.html").read_text() == page
        later = cv.monitoring.run("prod-watch", workspace=ws)
        page = cv.monitoring.report("prod-watch", str(tmp_path / "r2.html"), workspace=ws)
        assert later.id != result.id
        assert "<polyline" in page  # drift over time, from both results

    def test_predictions_like_the_reference_are_steady(self, ws: Workspace) -> None:
        train = frame(3000, 0)
        cv.data.add("train", train, workspace=ws)
        model = LogisticRegression().fit(train, (train["a"] + train["b"] > 0).astype(int))
        cv.models.log(model, "churn", input_example=train[:5], workspace=ws)
        calm = frame(400, 5)  # the training distribution
        with ModelServerClient("churn", workspace=ws) as client:
            client.predict(calm)
        cv.monitoring.create("calm", deployment="churn", reference="train@1", workspace=ws)
        result = cv.monitoring.run("calm", workspace=ws)
        assert result.drift["predictions"]["churn/1"]["drifted"] is False
        assert result.drift["prediction_drifted"] is False
        assert result.dataset_drifted is False

    def test_a_window_with_far_fewer_rows_than_usual_is_a_volume_anomaly(
        self, ws: Workspace, served: dict[str, Any]
    ) -> None:
        cv.monitoring.create("watch", deployment="prod", reference="train@1", workspace=ws)
        now = datetime.now(UTC)
        first = cv.monitoring.run("watch", end=now, workspace=ws)
        assert first.quality["volume"]["anomaly"] is None  # no history yet
        for k in (1, 2):
            cv.monitoring.run("watch", end=now + timedelta(seconds=k), workspace=ws)
        usual = cv.monitoring.run("watch", end=now + timedelta(seconds=3), workspace=ws)
        assert usual.quality["volume"]["ratio"] == pytest.approx(1.0)
        assert usual.quality["volume"]["anomaly"] is False
        cv.monitoring.alert_rule("watch", "quality.volume.anomaly == 1", workspace=ws)
        outage = cv.monitoring.run(  # the hour after the traffic: nothing came
            "watch", start=now + timedelta(seconds=5), end=now + timedelta(hours=1), workspace=ws
        )
        assert outage.rows == 0
        assert outage.quality["volume"]["ratio"] == 0.0
        assert outage.quality["volume"]["anomaly"] is True
        assert [a["status"] for a in outage.alerts] == ["open"]

    def test_empty_windows_and_unknown_labels_give_results_not_errors(
        self, ws: Workspace, served: dict[str, Any]
    ) -> None:
        cv.monitoring.log_labels(
            pd.DataFrame({"prediction_id": ["nope-1", "nope-2"], "label": [1, 0]}),
            deployment="prod",
            workspace=ws,
        )
        cv.monitoring.create(
            "prod-watch", deployment="prod", reference="train@1", window="30m", workspace=ws
        )
        last_week = datetime.now(UTC) - timedelta(days=7)
        empty = cv.monitoring.run(
            "prod-watch", start=last_week, end=last_week + timedelta(hours=1), workspace=ws
        )
        assert empty.rows == 0
        assert empty.dataset_drifted is None
        assert "no predictions in the window" in empty.notes
        assert empty.performance["labelled_rows"] == 0
        current = cv.monitoring.run("prod-watch", workspace=ws)
        assert current.performance["labelled_rows"] == 0
        assert current.performance["status"].startswith("too few labels")

    def test_mistakes_in_a_monitor_are_refused_when_it_is_created(
        self, ws: Workspace, served: dict[str, Any]
    ) -> None:
        with pytest.raises(cv.InvalidArgumentError, match="Unknown drift test"):
            cv.monitoring.create(
                "m", deployment="prod", reference="train@1", tests="anova", workspace=ws
            )
        with pytest.raises(cv.InvalidArgumentError, match="must be a number"):
            cv.monitoring.create(
                "m", deployment="prod", reference="train@1", thresholds={"a": "x"}, workspace=ws
            )
        with pytest.raises(cv.InvalidArgumentError, match="deployment name"):
            cv.monitoring.create("m", deployment="../x", reference="train@1", workspace=ws)
        assert cv.monitoring.list(workspace=ws) == []

    def test_text_labels_with_gaps_are_recorded(
        self, ws: Workspace, served: dict[str, Any]
    ) -> None:
        labels = pd.DataFrame(
            {"prediction_id": served["ids"][:3], "label": ["yes", None, 2]}  # mixed, with a gap
        )
        assert cv.monitoring.log_labels(labels, deployment="prod", workspace=ws) == 3
        stored = cv.serving.read_feedback("prod", workspace=ws)["label"].tolist()
        assert stored[0] == "yes"
        assert pd.isna(stored[1])
        assert stored[2] == "2"

    def test_alert_rules_open_once_notify_and_resolve(
        self, ws: Workspace, served: dict[str, Any]
    ) -> None:
        import json

        received: list[dict[str, Any]] = []

        def answer(path: str, body: bytes) -> int:
            received.append(json.loads(body))
            return 200

        with _webhooks(answer) as port:
            cv.monitoring.create("watch", deployment="prod", reference="train@1", workspace=ws)
            hook = f"webhook:http://127.0.0.1:{port}/alerts"
            cv.monitoring.alert_rule(
                "watch", "drift.share_drifted >= 0.5", notify=["log", hook], workspace=ws
            )
            first = cv.monitoring.run("watch", workspace=ws)
            again = cv.monitoring.run("watch", workspace=ws)
            assert [a["status"] for a in first.alerts] == ["open"]
            assert again.alerts == []  # still drifting: the same alert, no second one
            assert len(received) == 1
            assert "drift.share_drifted >= 0.5" in received[0]["alert"]["message"]
            (opened,) = cv.monitoring.alerts(status="open", workspace=ws)
            assert [d["status"] for d in opened["deliveries"]] == ["sent", "sent"]
            past = datetime.now(UTC) - timedelta(days=3)  # a window with no predictions
            quiet = cv.monitoring.run(
                "watch", start=past, end=past + timedelta(hours=1), workspace=ws
            )
            assert quiet.alerts == []  # silence is not "all clear": the alert stays open
            assert len(cv.monitoring.alerts(status="open", workspace=ws)) == 1
            calm_from = datetime.now(UTC)
            calm = frame(300, 2)  # as the reference: no drift
            with ModelServerClient(deployment="prod", workspace=ws) as client:
                for i in range(0, 300, 50):
                    client.predict(calm.iloc[i : i + 50], name="prod")
            over = cv.monitoring.run("watch", start=calm_from, workspace=ws)
            assert [a["status"] for a in over.alerts] == ["resolved"]
            assert cv.monitoring.alerts(status="open", workspace=ws) == []
            assert [r.get("event") for r in received] == ["opened", "resolved"]
            (closed,) = cv.monitoring.alerts(status="resolved", workspace=ws)
            events = [(d["event"], d["status"]) for d in closed["deliveries"]]
            assert events == [("opened", "sent")] * 2 + [("resolved", "sent")] * 2
            with pytest.raises(cv.ConflictError, match="nothing left to acknowledge"):
                cv.monitoring.close_alert(closed["id"], "acknowledged", workspace=ws)
            assert cv.monitoring.alerts(status="resolved", workspace=ws)[0]["id"] == closed["id"]
            with pytest.raises(cv.InvalidArgumentError, match="one of open, acknowledged"):
                cv.monitoring.alerts(status="opened", workspace=ws)
        with pytest.raises(cv.InvalidArgumentError, match="FIELD OP NUMBER"):
            cv.monitoring.alert_rule("watch", "drift.share_drifted is big", workspace=ws)
        with pytest.raises(cv.InvalidArgumentError, match="Cannot notify"):
            cv.monitoring.alert_rule("watch", "rows < 10", notify=["email:me"], workspace=ws)
        typo = cv.monitoring.alert_rule("watch", "drift.share_drifed > 0.3", workspace=ws)
        assert "no number at drift.share_drifed" in typo["warning"]
        assert "drift.share_drifted" in typo["warning"]  # what it has, to pick from
        assert "warning" not in cv.monitoring.alert_rule("watch", "rows < 5", workspace=ws)

    def test_the_cooldown_counts_from_the_last_notification(
        self, ws: Workspace, served: dict[str, Any]
    ) -> None:
        import sqlalchemy as sa

        from conveyor.monitoring.alerting import evaluate_rules
        from conveyor.store.metadata.schema import alerts

        monitor = cv.monitoring.create(
            "watch", deployment="prod", reference="train@1", workspace=ws
        )
        cv.monitoring.alert_rule("watch", "rows >= 10", cooldown="1h", workspace=ws)

        def window(rows: int) -> list[dict[str, Any]]:
            return evaluate_rules(ws, monitor, {"rows": rows}, "result")

        notified = window(50)  # opens, and is notified (log)
        window(0)  # resolves
        window(50)  # reopens within the hour: silent
        window(0)
        with ws.metadata.transaction() as uow:  # the notified one opened two hours ago
            uow.conn.execute(
                sa.update(alerts)
                .where(alerts.c.id == notified[0]["id"])
                .values(opened_at=datetime.now(UTC) - timedelta(hours=2))
            )
        window(50)  # an hour after the last notification: notified again
        flags = [bool(a["deliveries"]) for a in cv.monitoring.alerts(workspace=ws)]
        assert sorted(flags) == [False, True, True]

    def test_alert_deliveries_go_out_side_by_side(
        self, ws: Workspace, served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import threading

        from conveyor.monitoring import alerting

        monkeypatch.setattr(alerting, "RETRY_DELAY_S", 0.01)
        # Each endpoint answers only while the other one is being called too: deliveries
        # made one after the other would find the first endpoint waiting for the second,
        # until every try of the first timed out.
        called = {"/a": threading.Event(), "/b": threading.Event()}

        def answer(path: str, body: bytes) -> int:
            called[path].set()
            other = "/b" if path == "/a" else "/a"
            return 200 if called[other].wait(timeout=30) else 500

        try:
            with _webhooks(answer) as port:
                cv.monitoring.create("watch", deployment="prod", reference="train@1", workspace=ws)
                hooks = [f"webhook:http://127.0.0.1:{port}{path}" for path in called]
                cv.monitoring.alert_rule(
                    "watch", "drift.share_drifted >= 0.5", notify=hooks, workspace=ws
                )
                assert len(cv.monitoring.run("watch", workspace=ws).alerts) == 1
        finally:
            for event in called.values():
                event.set()  # no handler left waiting
        (alert,) = cv.monitoring.alerts(status="open", workspace=ws)
        assert [d["status"] for d in alert["deliveries"]] == ["sent", "sent"]

    def test_a_scheduled_monitor_runs_once_per_due_time_in_the_scheduler(
        self, ws: Workspace, served: dict[str, Any]
    ) -> None:
        from conveyor.pipelines.schedules import Scheduler

        monitor = cv.monitoring.create(
            "watch", deployment="prod", reference="train@1", schedule="*/5 * * * *", workspace=ws
        )
        due = monitor["next_run_at"]
        assert due > datetime.now(UTC)
        first, second = Scheduler(ws), Scheduler(ws, holder="other")
        assert first.tick(now=due - timedelta(seconds=1)) == []  # not yet
        (result,) = first.tick(now=due + timedelta(seconds=1))
        first.release_lease()
        assert second.tick(now=due + timedelta(seconds=1)) == []  # claimed: not run twice
        assert result.monitor == "watch"
        assert cv.monitoring.get("watch", workspace=ws)["next_run_at"] > due
        with pytest.raises(cv.InvalidArgumentError, match="not a cron expression"):
            cv.monitoring.create(
                "bad", deployment="prod", reference="train@1", schedule="often", workspace=ws
            )

    def test_a_failing_scheduled_monitor_does_not_stop_the_others(
        self, ws: Workspace, served: dict[str, Any], tmp_path: Path
    ) -> None:
        from conveyor.pipelines.schedules import Scheduler

        (tmp_path / "raw").mkdir()
        (tmp_path / "raw" / "a.txt").write_text("not a table")
        cv.data.add("raw", tmp_path / "raw", workspace=ws)
        every = "*/5 * * * *"
        broken = cv.monitoring.create(  # "aaa": listed, and so run, first
            "aaa", deployment="prod", reference="raw@1", schedule=every, workspace=ws
        )
        cv.monitoring.create(
            "watch", deployment="prod", reference="train@1", schedule=every, workspace=ws
        )
        scheduler = Scheduler(ws)
        (result,) = scheduler.tick(now=broken["next_run_at"] + timedelta(seconds=1))
        assert result.monitor == "watch"
        assert "Scheduled monitor 'aaa' failed" in scheduler.errors["monitor aaa"]

    def test_the_reference_defaults_to_the_data_that_trained_the_served_model(
        self, ws: Workspace, served: dict[str, Any]
    ) -> None:
        from conveyor.store.workspace import use_workspace

        use_workspace(ws)
        with pytest.raises(cv.InvalidArgumentError, match="logged no predictions"):
            cv.monitoring.create("early", deployment="web", workspace=ws)
        with cv.start_run(experiment="train"):
            train = cv.data.load("train@1", workspace=ws)  # the run used train@1 (lineage)
            y = (train["a"] > 0).astype(int)
            cv.models.log(LogisticRegression().fit(train, y), "spend", input_example=train[:5])
        cv.serving.deployments(ws).create("web", "spend")
        with ModelServerClient(deployment="web", workspace=ws) as client:
            client.predict(frame(3, 9), name="web")
        monitor = cv.monitoring.create("web-watch", deployment="web", workspace=ws)
        assert monitor["reference"] == "train@1"
        # Through a pipeline: the table a step wrote, with every input the model takes, not
        # the raw data it came from (which lacks column c).
        piped.run(executor="inline", ref="train@1")
        cv.serving.deployments(ws).create("piped", "piped")
        with ModelServerClient(deployment="piped", workspace=ws) as client:
            client.predict(frame(3, 9).assign(c=0.5), name="piped")
        monitor = cv.monitoring.create("piped-watch", deployment="piped", workspace=ws)
        assert monitor["reference"] == "train-table@1"
        with pytest.raises(cv.InvalidArgumentError, match="no dataset version"):
            cv.monitoring.create("prod-watch", deployment="prod", workspace=ws)  # churn: no run


@contextlib.contextmanager
def _webhooks(answer: Callable[[str, bytes], int]) -> Iterator[int]:
    """Serve webhook POSTs on 127.0.0.1 (yields the port): ``answer(path, body)`` gives the
    status code of each; stopped on the way out."""
    import http.server
    import threading

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(answer(self.path, body))
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join(10)
