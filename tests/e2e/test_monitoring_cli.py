"""conveyor monitor drift, as a user runs it on two files or dataset versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.e2e.conftest import act_remotely


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_drift_between_files_exits_2_only_when_the_dataset_drifted(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=8000), "b": rng.normal(size=8000)}).to_parquet(
        tmp_path / "ref.parquet"
    )
    pd.DataFrame({"a": rng.normal(1, 1, 8000), "b": rng.normal(size=8000)}).to_csv(
        tmp_path / "cur.csv", index=False
    )
    result = cli(tmp_path, "monitor", "drift", "ref.parquet", "cur.csv")
    assert result.returncode == 2, result.stderr  # 1 of 2 columns: half, so the dataset drifted
    assert "1 of 2 columns drifted (50%)" in result.stdout
    assert "wasserstein" in result.stdout
    one = cli(tmp_path, "monitor", "drift", "ref.parquet", "cur.csv", "--columns", "b", "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["drifted_columns"] == []
    missing = cli(tmp_path, "monitor", "drift", "ref.parquet", "nope.csv")
    assert missing.returncode == 1
    assert "nope.csv" in missing.stderr
    assert "Traceback" not in missing.stderr


SERVE_AND_LOG = """
import numpy as np, pandas as pd
import conveyor as cv
from sklearn.linear_model import LogisticRegression
from conveyor.testing import ModelServerClient
rng = np.random.default_rng(1)  # (at 100 rows, KS flags b by chance 1 time in 20: not seed 0)
train = pd.DataFrame({"a": rng.normal(0, 1, 2000), "b": rng.normal(0, 1, 2000)})
cv.data.add("train", train)
cv.models.log(LogisticRegression().fit(train, train["a"] > 0), "churn", input_example=train[:5])
cv.serving.deployments().create("prod", "churn")
now = pd.DataFrame({"a": rng.normal(2, 1, 100), "b": rng.normal(0, 1, 100)})
with ModelServerClient(deployment="prod") as client:
    answers = [client.predict(now.iloc[i : i + 1], name="prod") for i in range(100)]
ids = [a["prediction_ids"][0] for a in answers]
labels = pd.DataFrame({"prediction_id": ids, "label": (now["a"] > 0).astype(int)})
labels.to_csv("labels.csv", index=False)
"""


@pytest.fixture(params=["embedded", "remote"])
def project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The project in ./.conveyor (embedded), or on a team server as its admin (remote), the
    model server logging where the team server's monitors read (the server's log folder)."""
    if request.param == "embedded":
        assert cli(tmp_path, "init").returncode == 0
        return tmp_path
    act_remotely(request, monkeypatch, "watch", {"mo": "admin"})
    server = request.getfixturevalue("team_server")
    monkeypatch.setenv("CONVEYOR_LOG_URI", str(server.root / ".conveyor" / "logs"))
    return tmp_path


def test_monitor_create_run_show_and_labels_add(project: Path) -> None:
    tmp_path = project
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_LOG], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    added = cli(tmp_path, "labels", "add", "labels.csv", "--deployment", "prod")
    assert "Recorded 100 labels for prod." in added.stdout, added.stderr
    made = cli(tmp_path, "monitor", "create", "watch", "-d", "prod", "-r", "train@1")
    assert made.returncode == 0, made.stderr
    ran = cli(tmp_path, "monitor", "run", "watch", "--out", "report.html")
    assert ran.returncode == 0, ran.stderr
    assert "100 predictions" in ran.stdout
    assert "1 of 2 columns drifted: a" in ran.stdout
    assert "performance on 100 labelled rows: accuracy 1.000" in ran.stdout  # True == 1
    assert (tmp_path / "report.html").read_text().startswith("<!doctype html>")
    rule = cli(tmp_path, "monitor", "alert", "watch", "drift.share_drifted >= 0.5")
    assert rule.returncode == 0, rule.stderr
    assert "Rule on watch: drift.share_drifted >= 0.5 -> log" in rule.stdout
    assert cli(tmp_path, "monitor", "run", "watch").returncode == 0
    (opened,) = json.loads(cli(tmp_path, "alerts", "list", "--status", "open", "--json").stdout)
    assert cli(tmp_path, "alerts", "ack", opened["id"]).returncode == 0
    assert cli(tmp_path, "alerts", "resolve", opened["id"]).returncode == 0
    assert "resolved" in cli(tmp_path, "alerts", "list").stdout
    shown = json.loads(cli(tmp_path, "monitor", "show", "watch", "--json").stdout)
    assert shown[0]["drift"]["drifted_columns"] == ["a"]
    assert "watch" in cli(tmp_path, "monitor", "list").stdout
    unknown = cli(tmp_path, "monitor", "run", "nope")
    assert unknown.returncode == 1
    assert "No monitor named 'nope' (monitors: watch)" in unknown.stderr
