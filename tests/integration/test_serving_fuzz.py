"""Fuzzing the model server's OpenAPI schema (schemathesis): no request ever gets a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import conveyor as cv

schemathesis = pytest.importorskip("schemathesis", reason="fuzzing needs schemathesis")
pytest.importorskip("sklearn", reason="scikit-learn is not installed")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from tests.suites.serving import LiveServer, training_data  # noqa: E402


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    ws = cv.Workspace.from_settings(tmp_path, project="fuzz")
    X, y = training_data()
    cv.models.log(LogisticRegression().fit(X, y), "churn", input_example=X[:5], workspace=ws)
    checked: list[str] = []
    statuses: set[int] = set()
    with LiveServer(cv.serving.app("churn", workspace=ws)) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
            def call(case: Any) -> None:
                response = case.call(base_url=server.url)
                assert response.status_code < 500, (case.path, case.body, response.text)
                statuses.add(response.status_code)

            call()
            checked.append(f"{operation.method.upper()} {operation.path}")
    ws.close()
    assert "POST /v1/models/{name}/predict" in checked
    assert "POST /v2/models/{name}/infer" in checked
    assert {404, 422} <= statuses  # bodies and names reached the checks, not just the router
