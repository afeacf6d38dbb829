"""Batch inference on Ray: the same predictions, in input order, as in one process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import conveyor as cv

pytest.importorskip("sklearn", reason="scikit-learn is not installed")

from sklearn.linear_model import LogisticRegression

from tests.suites.serving import training_data


def test_batch_predictions_on_ray_match_the_local_ones(ray_local: Any, tmp_path: Path) -> None:
    ws = cv.init(tmp_path / "p", project="ray")
    X, y = training_data(300)
    cv.models.log(LogisticRegression().fit(X, y), "churn", input_example=X[:5])
    data, _ = training_data(5000, seed=3)
    data.to_parquet(tmp_path / "in.parquet")
    local = cv.predict("churn", tmp_path / "in.parquet", output=tmp_path / "local.parquet")
    remote = cv.predict(
        "churn",
        tmp_path / "in.parquet",
        output=tmp_path / "ray.parquet",
        executor="ray",
        chunk_rows=700,
        proba=True,
    )
    assert remote.rows == local.rows == 5000
    on_ray = pd.read_parquet(tmp_path / "ray.parquet")
    in_process = pd.read_parquet(tmp_path / "local.parquet")
    assert on_ray["prediction"].tolist() == in_process["prediction"].tolist()
    assert on_ray["a"].tolist() == data["a"].tolist()  # input order kept across tasks
    assert {"proba_0", "proba_1"} <= set(on_ray.columns)
    with pytest.raises(cv.InvalidArgumentError, match="Unknown executor 'spark'"):
        cv.predict("churn", data, executor="spark")
    ws.close()
