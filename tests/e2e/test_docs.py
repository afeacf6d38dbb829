"""The examples in README.md and docs/ run as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
DATA_GUIDE = ROOT / "docs" / "data.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_readme_quickstart_runs(tmp_path: Path) -> None:
    (tmp_path / "customers.csv").write_text("customer_id,churned\nc1,0\n")
    blocks = python_blocks(ROOT / "README.md")
    result = run_python("\n".join(blocks), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rf-baseline" in result.stdout
    assert "ObjectRef(kind='extract', id='crm-2026-11')" in result.stdout


def test_the_testing_guide_example_passes(tmp_path: Path) -> None:
    block = next(b for b in python_blocks(ROOT / "docs" / "testing.md") if "memory_workspace" in b)
    calls = "test_my_step_records_its_output()\ntest_my_training_logs_its_loss()\n"
    result = run_python(f"{block}\n{calls}print('ok')\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_demo_runs_and_says_what_it_did(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart" / "demo.py"), str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "best val_auc" in result.stdout
    assert "0 unreferenced" in result.stdout
    assert "Done. Conveyor stored a dataset, tracked 2 trained models" in result.stdout


def test_the_closed_loop_demo_retrains_and_promotes_after_the_shift(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "churn" / "demo.py"), str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "monitor: 0 columns drifted" in out, out[:4000]  # quiet before the shift
    assert "canary churn/2 at 25% of prod" in out, out[:4000]
    assert "decision: promoted: churn/2 serves all of prod" in out
    assert "champion now: churn/2" in out
    assert (tmp_path / "d" / "monitoring-report.html").exists()


def test_the_tracking_guide_examples_run(tmp_path: Path) -> None:
    for i, block in enumerate(python_blocks(ROOT / "docs" / "tracking.md")):
        folder = tmp_path / f"block{i}"
        folder.mkdir()
        result = run_python(block, folder)
        assert result.returncode == 0, f"block {i} failed:\n{block}\n{result.stderr}"


def test_the_data_guide_examples_run(tmp_path: Path) -> None:
    for block in python_blocks(ROOT / "docs" / "data.md"):
        result = run_python(block, tmp_path)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "restored" / "labels.csv").read_text() == "image,label\na.png,cat\n"
    # The schema commands, as written after the Python (all but the editor): the data the
    # Python left fails its checks, which validate says with exit code 1, not 2.
    block = re.search(r"```bash\n(conveyor data schema .*?)```", DATA_GUIDE.read_text(), re.DOTALL)
    assert block is not None
    for line in block.group(1).splitlines():
        if line.startswith("$EDITOR"):
            continue
        args = shlex.split(line.partition("#")[0])
        assert args[0] == "conveyor"
        result = subprocess.run(
            [sys.executable, "-m", "conveyor", *args[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        expected = 1 if args[2] == "validate" else 0
        assert result.returncode == expected, (line, result.stdout, result.stderr)


def test_the_models_guide_examples_run(tmp_path: Path) -> None:
    for i, block in enumerate(python_blocks(ROOT / "docs" / "models.md")):
        folder = tmp_path / f"block{i}"
        folder.mkdir()
        result = run_python(block, folder)
        assert result.returncode == 0, f"block {i} failed:\n{block}\n{result.stderr}"
        if "request_promotion" in block:
            assert "pending [('signature', 'passed'), ('input_example', 'passed')" in result.stdout
            assert result.stdout.strip().endswith("2\nTrue")


def test_the_pipelines_guide_examples_run(tmp_path: Path) -> None:
    outputs = []
    for i, block in enumerate(python_blocks(ROOT / "docs" / "pipelines.md")):
        folder = tmp_path / f"block{i}"
        folder.mkdir()
        (folder / "guide.py").write_text(block)  # a file, as users write them (and schedule)
        result = subprocess.run(
            [sys.executable, "guide.py"], cwd=folder, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"block {i} failed:\n{block}\n{result.stderr}"
        outputs.append(result.stdout)
    assert "'evaluate': 'CACHED'" in outputs[0]
    assert "{'prepare': 'CACHED', 'publish': 'SUCCEEDED'}" in outputs[1]


def test_the_features_guide_example_runs(tmp_path: Path) -> None:
    (block,) = python_blocks(ROOT / "docs" / "features.md")
    result = run_python(block, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "'txn_count_7d': [5, 1], 'amount_ratio': [0.96, 3.96]" in result.stdout


def test_the_serving_guide_examples_run(tmp_path: Path) -> None:
    blocks = python_blocks(ROOT / "docs" / "serving.md")
    assert blocks
    for i, block in enumerate(blocks):
        folder = tmp_path / f"block{i}"
        folder.mkdir()
        result = run_python(block, folder)
        assert result.returncode == 0, f"block {i} failed:\n{block}\n{result.stderr}"
    assert result.stdout.splitlines() == [
        "[0] churn/1",
        "422 column 'age', row 0: expected a number (int64), got the string 'thirty'",
        "[0, 1, 0, 1]",
        "1 ['inputs.age', 'inputs.monthly_spend']",
    ]


def test_the_monitoring_guide_examples_run(tmp_path: Path) -> None:
    blocks = python_blocks(ROOT / "docs" / "monitoring.md")
    result = run_python("\n".join(blocks), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "['age'] False"


def test_the_loop_guide_policy_is_valid_and_stores_as_written(tmp_path: Path) -> None:
    (block,) = python_blocks(ROOT / "docs" / "loop.md")
    check = "\nassert Policy.from_dict(policy.to_dict()) == policy\nprint(policy.rollout.steps)\n"
    result = run_python(block + check, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(10.0, 50.0, 100.0)"
