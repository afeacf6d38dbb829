"""conveyor serve | deploy | predict | build, as a user runs them in a project folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed")
pytest.importorskip("fastapi", reason="serving needs conveyor-mlops[serve]")

import httpx
import pandas as pd

from tests.e2e.conftest import act_remotely

LOG_TWO_VERSIONS = """
import conveyor as cv
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
X, y = load_breast_cancer(return_X_y=True, as_frame=True)
for c in (1.0, 0.01):
    model = LogisticRegression(C=c, max_iter=5000).fit(X, y)
    cv.models.log(model, "churn", input_example=X[:5])
cv.models.set_alias("churn", "champion", version=1)
X.head(250).to_parquet("customers.parquet")
"""


def cli(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "CONVEYOR_ACTOR": "ada"},
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(params=["embedded", "remote"])
def project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Two versions of churn: in ./.conveyor (embedded), or on a team server where ada
    approves (remote: deployments change by an approver's hand), her model servers logging
    into ./served-logs (through a server, the logs are where the model servers write)."""
    if request.param == "embedded":
        cli(tmp_path, "init", "--project", "shop")
    else:
        act_remotely(request, monkeypatch, "shop", {"ada": "approver"})
        monkeypatch.setenv("CONVEYOR_LOG_URI", str(tmp_path / "served-logs"))
    subprocess.run(
        [sys.executable, "-c", LOG_TWO_VERSIONS],
        cwd=tmp_path,
        check=True,
        timeout=120,
        env={**os.environ, "CONVEYOR_ACTOR": "ada"},
    )
    return tmp_path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deploy_commands_make_revisions(project: Path) -> None:
    created = cli(project, "deploy", "create", "prod", "--model", "churn@champion")
    assert "prod revision 1 (create): churn@champion primary 100%" in created.stdout
    cli(project, "deploy", "canary", "prod", "--model", "churn/2", "--weight", "20")
    status = json.loads(cli(project, "deploy", "status", "prod", "--json").stdout)
    assert [(r["ref"], r["weight"], r["role"]) for r in status["routes"]] == [
        ("churn/1", 80.0, "primary"),
        ("churn/2", 20.0, "canary"),
    ]
    rolled = cli(project, "deploy", "rollback", "prod")
    assert "revision 3 (rollback)" in rolled.stdout
    table = cli(project, "deploy", "status", "prod").stdout
    assert "canary" in table
    assert "rollback" in table
    assert "prod" in cli(project, "deploy", "list").stdout
    bad = cli(project, "deploy", "canary", "prod", "--model", "churn/9", ok=False)
    assert bad.returncode == 1
    assert "has no version 9" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_deploy_refuses_a_canary_or_shadow_of_the_primarys_own_version(project: Path) -> None:
    cli(project, "deploy", "create", "prod", "--model", "churn@champion")
    for change in (("canary", "--weight", "20"), ("shadow",)):
        refused = cli(
            project, "deploy", change[0], "prod", "--model", "churn/1", *change[1:], ok=False
        )
        assert refused.returncode == 1, refused.stdout
        assert "already serves churn/1 as its primary (through churn@champion)" in refused.stderr
        assert f"conveyor deploy {change[0]} prod --model churn/VERSION" in refused.stderr
        assert "Traceback" not in refused.stderr
    status = json.loads(cli(project, "deploy", "status", "prod", "--json").stdout)
    assert status["revision"] == 1  # nothing written


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_a_deployment_then_stop_it_and_find_the_predictions_logged(
    project: Path, workers: int
) -> None:
    cli(project, "deploy", "create", "prod", "--model", "churn@champion")
    port = _port()
    env = {**os.environ, "CONVEYOR_ACTOR": "ada"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "serve",
            "--deployment",
            "prod",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the server did not become ready in 60 s"
            time.sleep(0.05)
        frame = pd.read_parquet(project / "customers.parquet").head(3)
        body = {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}
        answers = [httpx.post(f"{url}/v1/models/prod/predict", json=body) for _ in range(5)]
        assert {a.status_code for a in answers} == {200}
        assert {a.json()["model_version"] for a in answers} == {"churn/1"}
        assert httpx.get(f"{url}/docs").status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why
    assert server.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr
    root = Path(os.environ.get("CONVEYOR_LOG_URI") or project / ".conveyor" / "logs")
    logs = [  # <log_uri>/project=NAME/predictions/deployment=prod/date=.../hour=...
        f for f in root.rglob("*.parquet") if "/predictions/deployment=prod/" in f.as_posix()
    ]
    assert sum(len(pd.read_parquet(f)) for f in logs) == 15  # flushed at shutdown


def test_serve_refuses_a_model_that_does_not_exist(project: Path) -> None:
    result = cli(project, "serve", "nope@champion", ok=False)
    assert result.returncode == 1
    assert "nope" in result.stderr
    assert "Traceback" not in result.stderr
    neither = cli(project, "serve", ok=False)
    assert neither.returncode != 0
    assert "--deployment" in neither.stderr


def test_predict_writes_parquet_and_build_writes_a_package(project: Path) -> None:
    result = cli(
        project,
        "predict",
        "churn@champion",
        "--input",
        "customers.parquet",
        "--output",
        "out/preds.parquet",
        "--chunk-rows",
        "100",
        "--json",
    )
    summary = json.loads(result.stdout)
    assert summary["rows"] == 250
    written = pd.read_parquet(project / "out" / "preds.parquet")
    assert len(written) == 250
    assert {"prediction_id", "prediction", "mean radius"} <= set(written.columns)
    built = cli(project, "build", "churn@champion", "--out", "image")
    assert "docker build -t churn:1 image" in built.stdout
    assert (project / "image" / "Dockerfile").is_file()
    assert (project / "image" / "k8s" / "deployment.yaml").is_file()
    # the copy went into the image's own project, not the registry the CLI works on
    assert (project / "image" / "workspace" / ".conveyor" / "conveyor.db").is_file()
    versions = json.loads(cli(project, "models", "versions", "churn", "--json").stdout)
    assert len(versions) == 2


def test_bad_serve_options_and_a_busy_port_are_one_line_errors(tmp_path: Path) -> None:
    assert cli(tmp_path, "init").returncode == 0
    bogus = cli(tmp_path, "serve", "churn", "--optimize", "bogus", ok=False)
    assert bogus.returncode == 1
    assert "error: --optimize takes none or onnx, not 'bogus'." in bogus.stderr
    assert "Traceback" not in bogus.stderr
    batch = cli(tmp_path, "serve", "churn", "--max-batch", "0", ok=False)
    assert "--max-batch must be at least 1" in batch.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = cli(tmp_path, "serve", "churn", "--port", str(port), ok=False)
    assert taken.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in taken.stderr


def test_serve_refuses_a_model_that_needs_trust_in_one_line(tmp_path: Path) -> None:
    cli(tmp_path, "init")
    (tmp_path / "echo_model.py").write_text(
        "import conveyor as cv\n\n\n"
        "class Echo(cv.models.PythonModel):\n"
        "    def predict(self, df):\n"
        "        return df['x']\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import pandas as pd, conveyor as cv\nfrom echo_model import Echo\n"
            "cv.init('.')\ncv.models.log(Echo(), 'echo', input_example=pd.DataFrame({'x': [1.0]}))",
        ],
        cwd=tmp_path,
        check=True,
        timeout=120,
    )
    result = cli(tmp_path, "serve", "echo/1", "--port", str(_port()), ok=False)
    assert result.returncode == 1
    assert "--trust" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Serving" not in result.stderr  # refused before it said it serves
    built = cli(tmp_path, "build", "echo/1", "--out", "image", "--trust")
    assert "echo_model.Echo comes from the module 'echo_model'" in built.stderr  # not in it
