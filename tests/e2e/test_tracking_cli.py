"""conveyor experiments / runs, as a user runs them after a training script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import act_remotely

TRAIN = """
import conveyor as cv
for depth in (4, 8):
    with cv.start_run(experiment="churn", name=f"rf-{depth}", tags={"team": "risk"}) as run:
        cv.log_params({"max_depth": depth, "n_estimators": 100})
        cv.log_metric("auc", 0.8 + depth / 100)
        cv.log_text("notes", "notes.txt")
        print(run.id)
"""


def cli(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(params=["embedded", "remote"])
def trained(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, list[str]]:
    """Two runs logged by a training script: into ./.conveyor (embedded), or through a team
    server as an editor of a project of its own (remote); the same tests run on both."""
    if request.param == "embedded":
        cli(tmp_path, "init", "--project", "churn")
    else:
        act_remotely(request, monkeypatch, "churn", {"ana": "editor"})
    out = subprocess.run(
        [sys.executable, "-c", TRAIN], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    return tmp_path, out.stdout.split()


def test_experiments_list(trained: tuple[Path, list[str]]) -> None:
    root, _ = trained
    (exp,) = json.loads(cli(root, "experiments", "list", "--json").stdout)
    assert (exp["name"], exp["runs"]) == ("churn", 2)


def test_runs_list_filters_and_orders(trained: tuple[Path, list[str]]) -> None:
    root, ids = trained
    out = cli(root, "runs", "list", "-e", "churn", "-o", "metrics.auc desc").stdout
    assert out.index("rf-8") < out.index("rf-4")
    assert "auc" in out
    found = json.loads(cli(root, "runs", "list", "-f", "params.max_depth = '4'", "--json").stdout)
    assert [r["run_id"] for r in found] == [ids[0]]
    narrow = subprocess.run(
        [sys.executable, "-m", "conveyor", "runs", "list", "-e", "churn"],
        cwd=root, capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert all(run_id in narrow.stdout for run_id in ids)  # whole, for `runs show`


def test_runs_show_has_params_metrics_tags_and_artifacts(trained: tuple[Path, list[str]]) -> None:
    root, ids = trained
    shown = cli(root, "runs", "show", ids[1]).stdout
    for text in ("rf-8", "FINISHED", "max_depth", "auc", "team", "notes.txt"):
        assert text in shown
    data = json.loads(cli(root, "runs", "show", ids[1], "--json").stdout)
    assert data["params"] == {"max_depth": "8", "n_estimators": "100"}
    assert [a["name"] for a in data["artifacts"]] == ["notes.txt"]


PREPARE = """
import pandas as pd
import conveyor as cv
cv.data.add("customers", pd.DataFrame({"spend": [1.0, 2.0, 3.0]}))
with cv.start_run(experiment="churn", name="prep") as run:
    cv.data.load("customers@1")
    cv.data.add("features", pd.DataFrame({"spend_x2": [2.0, 4.0, 6.0]}))
    print(run.id)
"""


def test_runs_show_names_the_dataset_versions_a_run_used_and_made(
    trained: tuple[Path, list[str]],
) -> None:
    root, _ = trained
    out = subprocess.run(
        [sys.executable, "-c", PREPARE], cwd=root, capture_output=True, text=True, check=True
    )
    run_id = out.stdout.split()[-1]
    shown = cli(root, "runs", "show", run_id).stdout
    assert "dataset_version:customers@1 --used_by--> this run" in shown
    assert "this run --produced--> dataset_version:features@1" in shown
    data = json.loads(cli(root, "runs", "show", run_id, "--json").stdout)
    assert data["lineage_refs"] == {
        "upstream": ["dataset_version:customers@1"],
        "downstream": ["dataset_version:features@1"],
    }
    (used,) = data["lineage"]["upstream"]  # still the id, as before
    assert used.startswith("dataset_version:")
    assert "@" not in used


def test_runs_compare_shows_only_differences_by_default(trained: tuple[Path, list[str]]) -> None:
    root, ids = trained
    out = cli(root, "runs", "compare", *ids).stdout
    assert "params.max_depth" in out
    assert "params.n_estimators" not in out
    assert "rows where every run agrees are hidden" in out
    assert "params.n_estimators" in cli(root, "runs", "compare", *ids, "--all").stdout


def test_runs_delete_and_restore(trained: tuple[Path, list[str]]) -> None:
    root, ids = trained
    typo = cli(root, "runs", "delete", ids[0], "01TYPO", ids[1], ok=False)
    assert typo.returncode == 1
    assert len(json.loads(cli(root, "runs", "list", "--json").stdout)) == 2  # none deleted
    cli(root, "runs", "delete", ids[0])
    listed = json.loads(cli(root, "runs", "list", "--json").stdout)
    assert [r["run_id"] for r in listed] == [ids[1]]
    assert ids[0] in cli(root, "runs", "list", "--deleted").stdout
    cli(root, "runs", "restore", ids[0])
    assert len(json.loads(cli(root, "runs", "list", "--json").stdout)) == 2


def test_bad_filters_and_unknown_runs_are_one_line_errors(trained: tuple[Path, list[str]]) -> None:
    root, _ = trained
    bad = cli(root, "runs", "list", "-f", "metrics.auc >", ok=False)
    assert bad.returncode == 1
    assert "expected a number or a quoted string after 'metrics.auc >'" in bad.stderr
    missing = cli(root, "runs", "show", "01XXXXXXXXXXXXXXXXXXXXXXXX", ok=False)
    assert "No run '01XXXXXXXXXXXXXXXXXXXXXXXX'" in missing.stderr


def test_runs_show_names_versions_by_id_when_the_server_cannot_name_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A team server from before the refs endpoint answers with an error, or with a redirect
    # that reads as no JSON at all: the lineage keeps its ids, and runs show still works.
    from conveyor.cli import tracking as cli_tracking
    from conveyor.core.errors import NotFoundError
    from conveyor.data import service
    from conveyor.store.records import ObjectRef

    node = ObjectRef("dataset_version", "01ABC")
    for failure in (NotFoundError("No such route."), ValueError("empty document")):

        class OldServer:
            def refs(self, ids: list[str], failure: Exception = failure) -> dict[str, str]:
                raise failure

        monkeypatch.setattr(service, "data_service", lambda ws: OldServer())
        assert cli_tracking._named(object(), [node]) == {}
