"""conveyor loop and conveyor ci, as a user runs them in a project folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.e2e.cli_process import conveyor as cli

pytest.importorskip("sklearn", reason="scikit-learn is not installed")

ROOT = Path(__file__).parents[2]
FLOW = f"{ROOT / 'tests' / 'fixtures' / 'loop_flow.py'}:retrain"

SETUP = """
import numpy as np, pandas as pd
import conveyor as cv
from sklearn.linear_model import LogisticRegression

def frame(n, seed, new=False):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    label = (a - b > 0) if new else (a + b > 0)
    return pd.DataFrame({"a": a, "b": b, "label": label.astype(int)})

cv.init(".")
old = frame(2000, 0)
cv.data.add("train", old)
cv.models.log(LogisticRegression().fit(old[["a", "b"]], old["label"]), "churn",
              input_example=old[["a", "b"]][:5])
cv.models.set_alias("churn", "champion", 1)
cv.serving.deployments().create("prod", "churn@champion")
new = frame(2000, 1, new=True)
cv.data.add("train", new)
cv.data.add("holdout", frame(1000, 2, new=True))
cv.models.log(LogisticRegression().fit(new[["a", "b"]], new["label"]), "churn",
              input_example=new[["a", "b"]][:5])                       # churn/2: better
cv.models.log(LogisticRegression().fit(new[["a", "b"]], 1 - new["label"]), "churn",
              input_example=new[["a", "b"]][:5])                       # churn/3: worse
"""

POLICY = """
from conveyor.loop import Canary, Gate, Policy

policy = Policy(
    name="churn-ct",
    deployment="prod",
    pipeline="flows/loop_flow.py:retrain",  # from the project's folder, wherever tick runs
    executor="inline",
    gate=Gate(data="holdout@latest", checks=("signature", "latency_p99_ms<1000")),
    rollout=None,
)
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loop-cli")
    assert cli(root, "init", "--project", "churn").returncode == 0
    setup = subprocess.run(
        [sys.executable, "-c", SETUP], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert setup.returncode == 0, setup.stderr
    (root / "policies.py").write_text(POLICY)
    (root / "flows").mkdir()
    shutil.copyfile(ROOT / "tests" / "fixtures" / "loop_flow.py", root / "flows" / "loop_flow.py")
    return root


def test_ci_check_passes_a_better_model_and_fails_a_worse_one(project: Path) -> None:
    args = ["ci", "check", "--data", "holdout@1", "--check", "signature"]
    good = cli(project, *args, "-m", "churn/2", "--markdown", "good.md", "--junit", "good.xml")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Model check of churn/2 against churn/1" in good.stdout
    summary = (project / "good.md").read_text()
    assert summary.startswith("### Model check passed: `churn/2` against `churn/1`")
    suite = ET.parse(project / "good.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "0")  # roc_auc, signature
    bad = cli(project, *args, "-m", "churn/3", "--junit", "bad.xml", "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["passed"] is False
    assert [c["status"] for c in report["checks"]] == ["failed", "passed"]
    assert "worse" in report["checks"][0]["detail"]
    failed = ET.parse(project / "bad.xml").getroot().find("testsuite/testcase/failure")
    assert failed is not None
    assert "worse" in (failed.get("message") or "")
    nothing = cli(project, "ci", "check", "-m", "churn/2")
    assert nothing.returncode == 2  # the check could not run: not 1, a failed check
    assert "--data" in nothing.stderr
    assert "Traceback" not in nothing.stderr


def test_ci_check_reads_its_options_from_a_config_table(project: Path) -> None:
    (project / "ci.toml").write_text(
        '[ci]\ndata = "holdout@1"\nagainst = "none"\nchecks = ["latency_p99_ms<1000"]\n'
    )
    result = cli(project, "ci", "check", "-m", "churn/2", "--config", "ci.toml", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["data"], report["champion"]) == ("holdout@1", None)
    assert [c["name"] for c in report["checks"]] == ["roc_auc", "latency_p99_ms<1000"]
    (project / "bad.toml").write_text('[ci]\ndataset = "holdout@1"\n')
    bad = cli(project, "ci", "check", "-m", "churn/2", "--config", "bad.toml")
    assert bad.returncode == 2
    assert "unknown key(s) dataset" in bad.stderr


def test_ci_check_trains_with_the_pipeline_under_the_policy_gate(project: Path) -> None:
    result = cli(project, "ci", "check", "--pipeline", FLOW, "--policy", "policies.py:policy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Model check of churn/" in result.stdout  # the version the run registered
    assert "latency_p99_ms<1000" in result.stdout


def test_init_writes_a_ci_workflow_once(tmp_path: Path) -> None:
    result = cli(tmp_path, "init", "--ci", "github", "--ci-policy", "policies.py:policy")
    assert result.returncode == 0, result.stderr
    import yaml

    workflow = yaml.safe_load(
        (tmp_path / ".github" / "workflows" / "conveyor-model-check.yml").read_text()
    )
    job = workflow["jobs"]["model-check"]
    assert job["env"]["CONVEYOR_STORE_URI"] == "${{ secrets.CONVEYOR_STORE_URI }}"
    (command,) = [s["run"] for s in job["steps"] if "conveyor ci check" in s.get("run", "")]
    assert " ".join(command.split()).startswith(
        "conveyor ci check --pipeline pipelines/train.py:train --policy policies.py:policy"
    )
    again = cli(tmp_path, "init", "--ci", "github")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    gitlab = cli(tmp_path, "init", "--ci", "gitlab")
    assert gitlab.returncode == 0, gitlab.stderr
    assert (
        "junit: model-check.xml" in (tmp_path / ".gitlab" / "conveyor-model-check.yml").read_text()
    )


def test_the_loop_from_the_command_line(project: Path) -> None:
    applied = cli(project, "loop", "apply", "policies.py:policy")
    assert applied.returncode == 0, applied.stderr
    assert "Policy churn-ct applied for deployment prod" in applied.stdout
    idle = cli(project, "loop", "status")
    assert "idle" in idle.stdout
    assert cli(project, "loop", "trigger", "churn-ct", "--reason", "by hand").returncode == 0
    tick = cli(project.parent, "--root", str(project), "loop", "tick")  # from elsewhere
    assert tick.returncode == 0, tick.stderr
    assert "churn-ct: promoted:" in tick.stdout
    history = cli(project, "loop", "history", "churn-ct", "--json")
    kinds = [e["kind"] for e in json.loads(history.stdout)]
    assert kinds[:3] == ["applied", "triggered", "training"]
    assert kinds[-1] == "promoted"
    again = cli(project, "loop", "tick")
    assert "Nothing to do." in again.stdout  # the lease was released after the first pass
    status = cli(project, "loop", "status", "churn-ct", "--json")
    (found,) = json.loads(status.stdout)
    assert found["last"]["state"] == "promoted"
    missing = cli(project, "loop", "status", "nope")
    assert missing.returncode == 1
    assert "No loop policy named 'nope'" in missing.stderr
