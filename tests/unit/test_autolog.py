"""cv.autolog(): params, training metrics and safely stored models, one run per fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import conveyor as cv
from conveyor.store.workspace import Workspace

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed")
from sklearn.datasets import load_breast_cancer, load_diabetes  # noqa: E402


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    ws = cv.init(tmp_path, project="auto")
    cv.autolog()
    yield ws
    cv.autolog(disable=True)
    ws.close()


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    return x, y


def runs(experiment: str | None = None) -> list[cv.Run]:
    return cv.search_runs(experiment=experiment, output="list")


def read(ws: Workspace, run_id: str, name: str) -> bytes:
    with ws.open_artifact(cv.ObjectRef("run", run_id), name) as f:
        return f.read()


def test_a_classifier_fit_makes_a_run_with_params_metrics_and_a_skops_model(
    ws: Workspace, cancer: tuple[np.ndarray, np.ndarray]
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = cancer
    model = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(x, y)
    (run,) = runs()
    assert run.name == "RandomForestClassifier"
    assert (run.params["n_estimators"], run.params["max_depth"]) == ("20", "4")
    assert 0.9 < run.metrics["training_accuracy"] <= 1.0
    assert {"training_f1", "training_roc_auc", "training_precision"} <= set(run.metrics)
    import skops.io

    data = read(ws, run.id, "model/model.skops")
    untrusted = skops.io.get_untrusted_types(data=data)
    loaded = skops.io.loads(data, trusted=untrusted)
    assert (loaded.predict(x) == model.predict(x)).all()
    about = json.loads(read(ws, run.id, "model/conveyor-model.json"))
    assert (about["flavor"], about["format"], about["n_features_in"]) == ("sklearn", "skops", 30)


def test_a_regressor_gets_regression_metrics(ws: Workspace) -> None:
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    Ridge(alpha=0.5).fit(x, y)
    (run,) = runs()
    assert {"training_r2", "training_mse", "training_mae"} <= set(run.metrics)
    assert run.params["alpha"] == "0.5"


def test_a_fit_inside_an_active_run_logs_there(
    ws: Workspace, cancer: tuple[np.ndarray, np.ndarray]
) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = cancer
    with cv.start_run(experiment="mine", name="manual") as run:
        cv.log_param("note", "hand-made")
        LogisticRegression(max_iter=5000).fit(x, y)
    (only,) = runs("mine")
    assert only.id == run.id
    assert only.params["note"] == "hand-made"
    assert "training_accuracy" in only.metrics


def test_a_pipeline_and_a_grid_search_log_one_run_each(
    ws: Workspace, cancer: tuple[np.ndarray, np.ndarray]
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = cancer
    make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    GridSearchCV(LogisticRegression(max_iter=5000), {"C": [0.1, 1.0]}, cv=2, n_jobs=2).fit(x, y)
    assert sorted(r.name for r in runs()) == ["GridSearchCV", "Pipeline"]


def test_a_failing_fit_fails_its_run_and_still_raises(ws: Workspace) -> None:
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(ValueError, match=r"at least 2 classes|n_samples"):
        LogisticRegression().fit(np.zeros((3, 2)), np.zeros(3))
    (run,) = cv.search_runs(output="list")
    assert run.status is cv.RunStatus.FAILED


def test_disable_restores_the_libraries(
    ws: Workspace, cancer: tuple[np.ndarray, np.ndarray]
) -> None:
    from sklearn.tree import DecisionTreeClassifier

    cv.autolog(disable=True)
    DecisionTreeClassifier().fit(*cancer)
    assert runs() == []
    assert not hasattr(DecisionTreeClassifier.fit, "__conveyor_autolog_original__")


def test_xgboost_wrapper_and_native_training(
    ws: Workspace, cancer: tuple[np.ndarray, np.ndarray]
) -> None:
    xgb = pytest.importorskip("xgboost")
    x, y = cancer
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y, eval_set=[(x, y)], verbose=False)
    dtrain = xgb.DMatrix(x, label=y)
    booster = xgb.train(
        {"max_depth": 2, "objective": "binary:logistic"}, dtrain, 4, evals=[(dtrain, "train")]
    )
    wrapper_run, native_run = sorted(runs(), key=lambda r: r.start_time)
    assert wrapper_run.name == "XGBClassifier"
    assert wrapper_run.params["max_depth"] == "2"
    assert len(cv.get_metric_history(wrapper_run.id, "validation_0-logloss")) == 5
    assert native_run.name == "xgboost.train"
    assert len(cv.get_metric_history(native_run.id, "train-logloss")) == 4
    loaded = xgb.Booster()
    loaded.load_model(bytearray(read(ws, native_run.id, "model/model.json")))
    assert np.allclose(loaded.predict(dtrain), booster.predict(dtrain))
    assert clf.n_features_in_ == 30


def test_lightgbm_wrapper_and_native_training(
    ws: Workspace, cancer: tuple[np.ndarray, np.ndarray]
) -> None:
    lgb = pytest.importorskip("lightgbm")
    x, y = cancer
    lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y, eval_X=(x,), eval_y=(y,))
    train_set = lgb.Dataset(x, label=y)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1},
        train_set,
        3,
        valid_sets=[train_set],
        valid_names=["train"],
    )
    wrapper_run, native_run = sorted(runs(), key=lambda r: r.start_time)
    assert wrapper_run.name == "LGBMClassifier"
    assert native_run.params["objective"] == "binary"
    assert len(cv.get_metric_history(native_run.id, "train-binary_logloss")) == 3
    text = read(ws, native_run.id, "model/model.txt").decode()
    loaded = lgb.Booster(model_str=text)
    assert np.allclose(loaded.predict(x), booster.predict(x))
