"""conveyor models ..., as a user runs it in a project folder after logging from Python."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import act_remotely

pytest.importorskip("sklearn", reason="scikit-learn is not installed")

LOG_TWO_VERSIONS = """
import conveyor as cv
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
X, y = load_breast_cancer(return_X_y=True, as_frame=True)
cv.data.add("cancer", X.assign(target=y))
for c in (0.5, 1.0):
    with cv.start_run(experiment="churn"):
        cv.log_params({"C": c})
        model = LogisticRegression(C=c, max_iter=5000).fit(X, y)
        cv.log_metric("accuracy", model.score(X, y))
        cv.models.log(model, "churn", input_example=X[:5])
"""


def as_user(actor: str) -> dict[str, str]:
    """The settings that make a process act as ``actor``: the name itself (embedded), or
    that user's token (remote: the token decides who is acting)."""
    token = os.environ.get(f"TEST_TOKEN_{actor.upper()}")
    return {"CONVEYOR_TOKEN": token} if token else {"CONVEYOR_ACTOR": actor}


def cli(
    cwd: Path, *args: str, ok: bool = True, actor: str = "ada"
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **as_user(actor)},
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(params=["embedded", "remote"])
def project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Two versions of churn logged from Python: into ./.conveyor (embedded), or through a
    team server where ada administers the project and bob approves (remote)."""
    if request.param == "embedded":
        cli(tmp_path, "init", "--project", "shop")
    else:
        users = act_remotely(request, monkeypatch, "shop", {"ada": "admin", "bob": "approver"})
        for user, env in users.items():
            monkeypatch.setenv(f"TEST_TOKEN_{user.upper()}", env["CONVEYOR_TOKEN"])
    subprocess.run(
        [sys.executable, "-c", LOG_TWO_VERSIONS],
        cwd=tmp_path,
        check=True,
        timeout=120,
        env={**os.environ, **as_user("ada")},
    )
    return tmp_path


def test_list_show_alias_history_and_compare(project: Path) -> None:
    listed = json.loads(cli(project, "models", "list", "--json").stdout)
    assert [(m["name"], m["latest_version"]) for m in listed] == [("churn", 2)]
    versions = json.loads(cli(project, "models", "versions", "churn", "--json").stdout)
    assert [v["ref"] for v in versions] == ["churn/2", "churn/1"]
    shown = json.loads(cli(project, "models", "show", "churn/1", "--json").stdout)
    assert (shown["flavor"], len(shown["signature"]["inputs"])) == ("sklearn", 30)
    assert "churn -> 1" not in cli(project, "models", "list").stdout
    assert "churn@champion -> 1" in cli(project, "models", "alias", "churn", "champion", "1").stdout
    assert "(was 1)" in cli(project, "models", "alias", "churn", "champion", "2").stdout
    history = json.loads(cli(project, "models", "history", "churn", "--json").stdout)
    assert [(m["version"], m["previous"]) for m in history] == [(1, None), (2, 1)]
    compared = json.loads(cli(project, "models", "compare", "churn/1", "churn/2", "--json").stdout)
    assert compared["params_diff"] == {"C": ["0.5", "1.0"]}
    assert compared["signature_changes"] == []


def test_protect_adds_aliases_and_off_releases_only_those_named(project: Path) -> None:
    assert "champion, production." in cli(project, "models", "protect", "churn").stdout
    added = cli(project, "models", "protect", "churn", "staging").stdout
    assert "champion, production, staging." in added
    released = cli(project, "models", "protect", "churn", "champion", "--off").stdout
    assert "protected aliases: production, staging." in released
    assert "protected aliases: none." in cli(project, "models", "protect", "churn", "--off").stdout


def test_promotion_through_approval(project: Path) -> None:
    cli(project, "models", "protect", "churn")
    refused = cli(project, "models", "alias", "churn", "champion", "2", ok=False)
    assert refused.returncode != 0
    assert "protected" in refused.stderr
    request = json.loads(
        cli(project, "models", "promote", "churn/2", "--alias", "champion", "--json").stdout
    )
    assert request["status"] == "pending"
    own = cli(project, "models", "approve", request["id"], ok=False)
    assert "second person" in own.stderr
    approved = cli(project, "models", "approve", request["id"], "-m", "ok", actor="bob").stdout
    assert "approved" in approved
    shown = json.loads(cli(project, "models", "show", "churn@champion", "--json").stdout)
    assert shown["version"] == 2
    pending = json.loads(cli(project, "models", "requests", "--status", "pending", "--json").stdout)
    assert pending == []


LOG_NARROW_VERSION = """
import conveyor as cv
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
X, y = load_breast_cancer(return_X_y=True, as_frame=True)
X = X.iloc[:, :5]
cv.models.log(LogisticRegression(max_iter=5000).fit(X, y), "churn", input_example=X[:5])
"""


def test_approving_over_failed_checks_takes_an_override_and_a_reason(project: Path) -> None:
    cli(project, "models", "alias", "churn", "champion", "1")
    cli(project, "models", "protect", "churn")
    subprocess.run(
        [sys.executable, "-c", LOG_NARROW_VERSION],
        cwd=project,
        check=True,
        timeout=120,
        env={**os.environ, **as_user("ada")},
    )
    request = json.loads(
        cli(project, "models", "promote", "churn/3", "--alias", "champion", "--json").stdout
    )
    refused = cli(project, "models", "approve", request["id"], "-m", "ok", actor="bob", ok=False)
    assert "failed its checks (signature:" in refused.stderr
    assert "--override-checks" in refused.stderr
    args = ("models", "approve", request["id"], "--override-checks")
    assert "needs a comment" in cli(project, *args, actor="bob", ok=False).stderr
    assert "approved" in cli(project, *args, "-m", "columns dropped upstream", actor="bob").stdout
    shown = json.loads(cli(project, "models", "show", "churn@champion", "--json").stdout)
    assert shown["version"] == 3


def test_predict_a_csv_and_refuse_a_bad_one(project: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    X, _ = load_breast_cancer(return_X_y=True, as_frame=True)
    X[:4].to_csv(project / "rows.csv", index=False)
    out = cli(project, "models", "predict", "churn/1", "rows.csv").stdout.splitlines()
    assert out[0] == "prediction"
    assert len(out) == 5
    cli(project, "models", "predict", "churn", "rows.csv", "--proba", "-o", "p.csv")
    assert (project / "p.csv").read_text().splitlines()[0] == "proba_0,proba_1"
    wrong = cli(project, "models", "predict", "churn/1", "rows.csv", "-o", "p.jsonl", ok=False)
    assert "expected a .csv or .parquet file name" in wrong.stderr
    assert not (project / "p.jsonl").exists()
    cli(project, "models", "predict", "churn/1", "rows.csv", "-o", "p.csv.gz")
    assert (project / "p.csv.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip, as pandas writes
    X[:2].drop(columns=["mean radius"]).to_csv(project / "bad.csv", index=False)
    refused = cli(project, "models", "predict", "churn/1", "bad.csv", ok=False)
    assert refused.returncode != 0
    assert "column 'mean radius': missing" in refused.stderr
    before = (project / "rows.csv").read_bytes()
    onto = cli(project, "models", "predict", "churn/1", "rows.csv", "-o", "rows.csv", ok=False)
    assert "is the input file" in onto.stderr
    assert (project / "rows.csv").read_bytes() == before
    nowhere = cli(project, "models", "predict", "churn/1", "rows.csv", "-o", "no/p.csv", ok=False)
    assert "does not exist" in nowhere.stderr


def test_card_and_export_refuse_a_folder_that_does_not_exist(project: Path) -> None:
    card = cli(project, "models", "card", "churn/1", "-o", "nowhere/card.md", ok=False)
    assert "the folder nowhere does not exist" in card.stderr


def test_evaluate_then_write_the_card(project: Path) -> None:
    ev = json.loads(
        cli(project, "models", "evaluate", "churn/2", "cancer@1", "-t", "target", "--json").stdout
    )
    assert (ev["dataset"], ev["task"], ev["rows"]) == ("cancer@1", "classification", 569)
    assert ev["metrics"]["accuracy"] > 0.9
    cli(project, "models", "card", "churn/2", "--html", "-o", "card.html")
    page = (project / "card.html").read_text()
    assert "<h2>Evaluation</h2>" in page
    assert "cancer@1" in page
    missing = cli(project, "models", "evaluate", "churn/2", "cancer@1", "-t", "nope", ok=False)
    assert "no target column 'nope'" in missing.stderr
