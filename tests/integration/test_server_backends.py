"""The team server on real backends: 50 clients logging through it into PostgreSQL with
nothing lost or duplicated, and its OpenAPI schema fuzzed (no input gets a 500)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

pytest.importorskip("fastapi", reason="the server needs conveyor-mlops[server]")

from conveyor.store.workspace import Workspace
from conveyor.testing.team import TeamServer
from conveyor.tracking.runs import Tracker

CLIENTS = 50
POINTS = 10_000


def test_fifty_clients_log_ten_thousand_metrics_each_exactly_once(
    tmp_path: Path, postgres_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"CONVEYOR_STORE_URI": postgres_uri}
    with TeamServer(tmp_path / "server", env=env, workers=2) as server:
        token = server.token_for("loader", project="load", role="editor")
        monkeypatch.setenv("CONVEYOR_TOKEN", token)
        run_ids: list[str] = []
        failures: list[BaseException] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            try:
                ws = Workspace.from_settings(
                    tmp_path / f"client{i}", project="load", store_uri=server.url
                )
                tracker = Tracker(ws)
                run = tracker.start_run("load", name=f"client-{i}")
                for step in range(POINTS):
                    run.log_metric("loss", step / POINTS, step=step, timestamp=1.0 + step)
                run.end()
                tracker.close()
                with lock:
                    run_ids.append(run.id)
            except Exception as e:  # noqa: BLE001 - reported below, after every client ends
                failures.append(e)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert not failures, failures[:3]
        assert len(run_ids) == CLIENTS
        engine = sa.create_engine(postgres_uri.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT run_id, count(*), count(DISTINCT step), min(step), max(step) "
                    "FROM metrics GROUP BY run_id"
                )
            ).all()
        engine.dispose()
    counts = {r[0]: tuple(r[1:]) for r in rows}
    assert sorted(counts) == sorted(run_ids)
    assert set(counts.values()) == {(POINTS, POINTS, 0, POINTS - 1)}


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    schemathesis = pytest.importorskip("schemathesis", reason="fuzzing needs schemathesis")
    from hypothesis import HealthCheck, given, settings

    from conveyor.core.config import load_settings
    from conveyor.server.app import create_app
    from tests.suites.serving import LiveServer

    app = create_app(load_settings(tmp_path, project="fuzz"))
    identity = app.state.conveyor.identity
    token = identity.bootstrap("root")
    headers = {"Authorization": f"Bearer {token}"}
    statuses: set[int] = set()
    checked: list[str] = []
    with LiveServer(app) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json", headers=headers)
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
            def call(case: Any) -> None:
                if "project" in (case.path_parameters or {}):
                    case.path_parameters["project"] = "fuzz"
                response = case.call(base_url=server.url, headers=headers)
                assert response.status_code < 500, (case.method, case.path, response.text)
                statuses.add(response.status_code)

            call()
            checked.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /api/v1/projects/{project}/runs/batch" in checked
    assert {404, 422} <= statuses
