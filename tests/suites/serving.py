"""Serving as users rely on it, written once; run on every metadata / artifact / log backend.

A subclass provides the ``store_uri``, ``artifact_uri`` and ``log_uri`` fixtures. Servers run
for real (uvicorn on 127.0.0.1, in a thread) where behaviour under load is the point.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import conveyor as cv
from conveyor.core.errors import InvalidArgumentError
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace

pytest.importorskip("fastapi", reason="serving needs conveyor-mlops[serve]")
pytest.importorskip("sklearn", reason="scikit-learn is not installed")

import httpx
import uvicorn
from sklearn.linear_model import LogisticRegression

COLUMNS = ["a", "b"]


def training_data(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 2)), columns=COLUMNS)
    y = (X["a"] + 0.5 * X["b"] > 0).astype(int).to_numpy()
    return X, y


def rows(n: int, seed: int = 1) -> list[dict[str, float]]:
    X, _ = training_data(n, seed)
    return X.to_dict(orient="records")


class LiveServer:
    """An app served by uvicorn on a free 127.0.0.1 port, in a thread, stopped on exit."""

    def __init__(self, app: Any) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if not self.thread.is_alive():
                break
            time.sleep(0.05)
        self.server.should_exit = True
        raise AssertionError(f"the server on {self.url} did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        assert not self.thread.is_alive(), "the server did not stop"


class Traffic:
    """Threads sending one-row requests until stopped; every answer is recorded."""

    def __init__(self, url: str, name: str, threads: int = 4, limit: int | None = None) -> None:
        self.url = f"{url}/v1/models/{name}/predict"
        self.answers: list[tuple[int, str, list[str]]] = []
        self.sent_at: list[float] = []  # when each answer's request was sent (monotonic)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._limit = limit
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, seed: int) -> None:
        body = {"instances": rows(1, seed)}
        sent = 0
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set() and (self._limit is None or sent < self._limit):
                started = time.monotonic()
                response = client.post(self.url, json=body)
                data = response.json()
                with self._lock:
                    self.sent_at.append(started)
                    self.answers.append(
                        (
                            response.status_code,
                            data.get("model_version", ""),
                            data.get("prediction_ids", []),
                        )
                    )
                sent += 1

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def sent_after(self, moment: float) -> list[tuple[int, str, list[str]]]:
        """The answers to requests sent after ``moment`` (time.monotonic())."""
        with self._lock:
            return [a for a, t in zip(self.answers, self.sent_at, strict=True) if t > moment]

    def wait_for(self, version: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if any(v == version for _, v, _ in self.answers[-50:]):
                    return
            time.sleep(0.05)
        raise AssertionError(f"no answer from {version} within {timeout} s")

    def versions_after(self, start: int) -> set[str]:
        with self._lock:
            return {v for _, v, _ in self.answers[start:]}


class ServingSuite:
    @pytest.fixture
    def ws(
        self, store_uri: str, artifact_uri: str, log_uri: str, tmp_path: Path
    ) -> Iterator[Workspace]:
        ws = cv.Workspace.from_settings(
            tmp_path / "project",
            project="serving",
            store_uri=store_uri,
            artifact_uri=artifact_uri,
            log_uri=log_uri,
            actor="ada",
        )
        yield ws
        ws.close()

    @pytest.fixture
    def two_versions(self, ws: Workspace) -> tuple[Any, Any]:
        X, y = training_data()
        first = cv.models.log(
            LogisticRegression().fit(X, y), "churn", input_example=X[:5], workspace=ws
        )
        second = cv.models.log(
            LogisticRegression(C=0.01).fit(X, y), "churn", input_example=X[:5], workspace=ws
        )
        cv.models.set_alias("churn", "champion", version=first.version, workspace=ws)
        return first, second

    def test_the_server_predicts_like_the_model_and_logs_each_prediction(
        self, ws: Workspace, two_versions: tuple[Any, Any]
    ) -> None:
        from conveyor.testing import ModelServerClient

        X, _ = training_data(20, seed=5)
        expected = cv.models.load("churn@champion", workspace=ws).model.predict(X)
        with ModelServerClient("churn@champion", workspace=ws) as client:
            answer = client.predict(X, proba=True)
        assert answer["predictions"] == expected.tolist()
        assert answer["model_version"] == "churn/1"
        assert len(answer["proba"]) == 20
        assert answer["classes"] == [0, 1]
        logged = cv.serving.read_predictions("churn", workspace=ws)
        assert sorted(logged["prediction_id"]) == sorted(answer["prediction_ids"])
        assert logged["prediction"].tolist() == expected.tolist()
        np.testing.assert_allclose(logged["inputs.a"], X["a"])
        assert set(logged["model_version"]) == {1}

    def test_every_prediction_served_under_load_is_logged(
        self, ws: Workspace, two_versions: tuple[Any, Any]
    ) -> None:
        app = cv.serving.app("churn@champion", workspace=ws, flush_rows=300)
        with LiveServer(app) as server, Traffic(server.url, "churn", threads=4, limit=500) as load:
            for t in load._threads:
                t.join(120)
        served = [i for status, _, ids in load.answers for i in ids if status == 200]
        assert len(served) == 2000
        logged = cv.serving.read_predictions("churn", workspace=ws)
        assert len(logged) == 2000
        assert set(logged["prediction_id"]) == set(served)

    def test_a_new_revision_is_picked_up_under_load_without_failed_requests(
        self, ws: Workspace, two_versions: tuple[Any, Any]
    ) -> None:
        deployments = cv.serving.deployments(ws)
        deployments.create("prod", "churn@champion")
        app = cv.serving.app(deployment="prod", workspace=ws, reload_interval=0.1)
        with LiveServer(app) as server, Traffic(server.url, "prod") as load:
            load.wait_for("churn/1")
            deployments.canary("prod", "churn/2", 50)
            load.wait_for("churn/2")
            deployments.promote("prod")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # once the promotion is live, only churn/2 answers
                mark = len(load.answers)
                time.sleep(0.5)
                if load.versions_after(mark) == {"churn/2"}:
                    break
            else:
                raise AssertionError("the promotion was not picked up within 30 s")
        assert load.answers, "no traffic was sent"
        assert {status for status, _, _ in load.answers} == {200}

    def test_deployment_changes_are_revisions_with_audit_and_lineage(
        self, ws: Workspace, two_versions: tuple[Any, Any]
    ) -> None:
        _, second = two_versions
        deployments = cv.serving.deployments(ws)
        assert deployments.create("prod", "churn@champion").revision == 1
        canary = deployments.canary("prod", "churn/2", 10, limits={"max_error_rate": 0.05})
        assert [(r["model"], r["weight"], r["role"]) for r in canary.routes] == [
            ("churn@champion", 90.0, "primary"),
            ("churn/2", 10.0, "canary"),
        ]
        assert deployments.promote("prod").routes == (
            {"model": "churn/2", "weight": 100.0, "role": "primary"},
        )
        back = deployments.rollback("prod", to=1)
        assert (back.revision, back.change, back.routes[0]["model"]) == (
            4,
            "rollback",
            "churn/1",  # what churn@champion named at revision 1
        )
        assert [r.revision for r in deployments.history("prod")] == [4, 3, 2, 1]
        actions = [e.action for e in ws.metadata.audit_log(action=None, limit=50)]
        assert {
            "deployment.create",
            "deployment.canary",
            "deployment.promote",
            "deployment.rollback",
        } <= set(actions)
        downstream = ws.lineage(ObjectRef("model_version", second.id), direction="downstream")
        assert any(node.kind == "deployment_revision" for node in downstream.nodes())

    def test_a_rollback_serves_what_an_alias_named_then_and_a_deleted_alias_is_survived(
        self, ws: Workspace, two_versions: tuple[Any, Any]
    ) -> None:
        deployments = cv.serving.deployments(ws)
        cv.models.set_alias("churn", "champion", 1, workspace=ws)
        deployments.create("prod", "churn@champion")
        deployments.canary("prod", "churn/2", 10)
        cv.models.set_alias("churn", "champion", 2, workspace=ws)  # a bad move: no revision
        back = deployments.rollback("prod", to=1)
        assert [(r["model"], r["role"]) for r in back.routes] == [("churn/1", "primary")]
        deployments.serve("prod", "churn@champion")  # following the alias again
        cv.models.delete_alias("churn", "champion", workspace=ws)
        (route,) = deployments.spec("prod").routes  # servers keep what it named
        assert route.ref == "churn/2"

    def test_a_canarys_limits_end_with_it_and_a_promotion_keeps_the_shadow(
        self, ws: Workspace, two_versions: tuple[Any, Any]
    ) -> None:
        deployments = cv.serving.deployments(ws)
        deployments.create("prod", "churn/1", limits={"max_error_rate": 0.5})
        tight = deployments.canary("prod", "churn/2", 10, limits={"max_p99_ms": 0.001})
        assert tight.limits == {"max_p99_ms": 0.001}  # its own, not merged
        ramped = deployments.canary("prod", "churn/2", 50)  # the same canary, more traffic
        assert ramped.limits == {"max_p99_ms": 0.001}
        X, y = training_data()  # a third version to mirror (the primary's own is refused)
        cv.models.log(LogisticRegression(C=0.1).fit(X, y), "churn", workspace=ws)
        deployments.shadow("prod", "churn/3")
        promoted = deployments.promote("prod")
        assert [(r["model"], r["role"]) for r in promoted.routes] == [
            ("churn/2", "primary"),
            ("churn/3", "shadow"),
        ]
        assert promoted.limits == {"max_error_rate": 0.5}  # the deployment's own again
        later = deployments.canary("prod", "churn/1", 10)  # no limits of its own
        assert later.limits == {"max_error_rate": 0.5}

    def test_predictions_of_a_dataframe_keep_its_index(
        self, ws: Workspace, two_versions: tuple[Any, Any]
    ) -> None:
        X, _ = training_data(40, seed=5)
        some = X.iloc[::3]  # a filtered frame: index 0, 3, 6...
        scores = cv.predict("churn@champion", some, workspace=ws, log_predictions=False)
        assert list(scores.index) == list(some.index)
        expected = cv.models.load("churn@champion", workspace=ws).model.predict(some)
        assert some.assign(p=scores["prediction"])["p"].tolist() == expected.tolist()

    def test_batch_predictions_read_csv_files_and_datasets_and_refuse_what_is_not_a_table(
        self, ws: Workspace, two_versions: tuple[Any, Any], tmp_path: Path
    ) -> None:
        X, _ = training_data(30, seed=4)
        X.to_csv(tmp_path / "rows.csv", index=False)
        expected = cv.models.load("churn@champion", workspace=ws).model.predict(X).tolist()
        version = cv.data.add("rows", tmp_path / "rows.csv", workspace=ws)  # kept as CSV
        for source in (tmp_path / "rows.csv", version.ref):
            out = tmp_path / "preds.parquet"
            cv.predict("churn@champion", source, output=out, workspace=ws)
            assert pd.read_parquet(out)["prediction"].tolist() == expected
        X.to_parquet(tmp_path / "rows.snappy")  # Parquet under another name: still read
        cv.predict("churn@champion", tmp_path / "rows.snappy", output=out, workspace=ws)
        assert pd.read_parquet(out)["prediction"].tolist() == expected
        (tmp_path / "bad.parquet").write_bytes(b"not parquet")
        with pytest.raises(InvalidArgumentError, match="not a readable Parquet file"):
            cv.predict("churn@champion", tmp_path / "bad.parquet", output=out, workspace=ws)

    def test_batch_predictions_stream_to_parquet_with_lineage(
        self, ws: Workspace, two_versions: tuple[Any, Any], tmp_path: Path
    ) -> None:
        X, _ = training_data(2500, seed=9)
        version = cv.data.add("customers", X, workspace=ws)
        out = tmp_path / "preds.parquet"
        seen: list[int] = []
        result = cv.predict(
            "churn@champion",
            f"customers@{version.version}",
            output=out,
            chunk_rows=1000,
            workspace=ws,
            progress=lambda done, total: seen.append(done),
        )
        assert seen == [1000, 2000, 2500]
        written = pd.read_parquet(out)
        expected = cv.models.load("churn@champion", workspace=ws).model.predict(X)
        assert written["prediction"].tolist() == expected.tolist()
        assert list(written.columns[:2]) == COLUMNS
        assert result.rows == 2500
        graph = ws.lineage(ObjectRef("dataset_version", version.id), direction="downstream")
        assert any(node.kind == "batch_prediction" for node in graph.nodes())
        assert len(cv.serving.read_predictions("churn-batch", workspace=ws)) == 2500
