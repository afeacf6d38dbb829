"""conveyor monitor drift, as a user runs it on two files or dataset versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_drift_between_files_exits_1_only_when_the_dataset_drifted(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=8000), "b": rng.normal(size=8000)}).to_parquet(
        tmp_path / "ref.parquet"
    )
    pd.DataFrame({"a": rng.normal(1, 1, 8000), "b": rng.normal(size=8000)}).to_csv(
        tmp_path / "cur.csv", index=False
    )
    result = cli(tmp_path, "monitor", "drift", "ref.parquet", "cur.csv")
    assert result.returncode == 1, result.stderr  # 1 of 2 columns: half, so the dataset drifted
    assert "1 of 2 columns drifted (50%)" in result.stdout
    assert "wasserstein" in result.stdout
    one = cli(tmp_path, "monitor", "drift", "ref.parquet", "cur.csv", "--columns", "b", "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["drifted_columns"] == []
    missing = cli(tmp_path, "monitor", "drift", "ref.parquet", "nope.csv")
    assert missing.returncode == 1
    assert "nope.csv" in missing.stderr
    assert "Traceback" not in missing.stderr
