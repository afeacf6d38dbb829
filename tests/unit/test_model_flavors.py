"""Each flavor stores its models without pickle (but PythonModel) and loads them back equal."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from conveyor.core.errors import IntegrityError
from conveyor.models.flavors import flavor_for, get_flavor

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed")
from sklearn.datasets import load_breast_cancer, load_diabetes  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402


def cancer() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


def round_trip(model: object) -> tuple[str, object]:
    flavor = flavor_for(model)
    files, info = flavor.save(model)
    return flavor.name, (flavor, flavor.load(files, info))


def test_sklearn_loads_only_the_types_recorded_at_save() -> None:
    X, y = cancer()
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    flavor = get_flavor("sklearn")
    files, info = flavor.save(model)
    assert "sklearn.tree._tree.Tree" in info["trusted_types"]
    assert info["classes"] == [0, 1]
    np.testing.assert_array_equal(flavor.load(files, info).predict(X), model.predict(X))
    narrowed = {**info, "trusted_types": []}
    with pytest.raises(IntegrityError, match="not recorded"):
        flavor.load(files, narrowed)


def test_loading_a_forest_does_not_list_every_sklearn_estimator(tmp_path) -> None:
    import subprocess
    import sys

    X, y = load_breast_cancer(return_X_y=True)
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    files, info = get_flavor("sklearn").save(model)
    (tmp_path / "model.skops").write_bytes(files["model.skops"])
    older = {**info, "trusted_types": ["sklearn.tree._tree.Tree", "numpy.ndarray"]}
    code = (
        "import json, sys\n"
        "from conveyor.models.flavors import get_flavor\n"
        "files = {'model.skops': open('model.skops', 'rb').read()}\n"
        "flavor = get_flavor('sklearn')\n"
        "flavor.load(files, json.loads(sys.argv[1]))\n"
        "from skops.io import _trusted_types\n"
        "print(len(_trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES))\n"  # none listed
        "flavor.load(files, json.loads(sys.argv[2]))\n"  # fewer recorded: the listed ones too
        "print(len(_trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES) > 100)\n"
    )
    import json

    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(info), json.dumps(older)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "True"]


def test_skops_trusted_defaults_filled_later_are_skops_own() -> None:
    """A lean import leaves skops's default lists empty; filled, they equal a plain import's."""
    import json
    import subprocess
    import sys

    lists = "[t.SCIPY_UFUNC_TYPE_NAMES, t.NUMPY_UFUNC_TYPE_NAMES, t.SKLEARN_ESTIMATOR_TYPE_NAMES]"
    plain = f"import json\nimport skops.io._trusted_types as t\nprint(json.dumps({lists}))\n"
    lean = (
        "import json\n"
        "from conveyor.models.flavors.sklearn import skops_defaults, skops_io\n"
        "skops_io()\n"
        "import skops.io._trusted_types as t\n"
        f"print(json.dumps({lists}))\n"
        "skops_defaults()\n"
        f"print(json.dumps({lists}))\n"
    )
    outputs = []
    for code in (plain, lean):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        outputs.append([json.loads(line) for line in done.stdout.splitlines()])
    [expected], (before, after) = outputs
    assert [len(names) for names in before[::2]] == [0, 0]  # SciPy's and the estimators
    assert all(len(names) > 50 for names in expected)
    assert after == expected


def test_a_pipeline_with_gradient_boosted_trees_loads_back() -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "plan": rng.choice(["x", "y"], 200)})
    y = (X["a"] > 0).astype(int)
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough"),
        HistGradientBoostingClassifier(max_iter=5),
    ).fit(X, y)
    _, (_, loaded) = round_trip(model)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))  # type: ignore[attr-defined]


def test_xgboost_round_trip_keeps_classes_and_probabilities() -> None:
    xgboost = pytest.importorskip("xgboost")
    X, y = cancer()
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y)
    name, (flavor, loaded) = round_trip(model)
    assert name == "xgboost"
    np.testing.assert_array_equal(flavor.predict(loaded, X), model.predict(X))
    np.testing.assert_allclose(flavor.predict_proba(loaded, X), model.predict_proba(X), rtol=1e-6)


def test_lightgbm_round_trip_serves_the_wrapper_from_its_booster() -> None:
    lightgbm = pytest.importorskip("lightgbm")
    X, y = cancer()
    y = y.map({0: "stay", 1: "churn"})
    model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    name, (flavor, loaded) = round_trip(model)
    assert name == "lightgbm"
    np.testing.assert_array_equal(flavor.predict(loaded, X), model.predict(X))
    np.testing.assert_allclose(flavor.predict_proba(loaded, X), model.predict_proba(X))
    Xr, yr = load_diabetes(return_X_y=True, as_frame=True)
    regressor = lightgbm.LGBMRegressor(n_estimators=5, verbose=-1).fit(Xr, yr)
    _, (flavor, loaded) = round_trip(regressor)
    np.testing.assert_allclose(flavor.predict(loaded, Xr), regressor.predict(Xr))


@pytest.mark.parametrize(
    "kind",
    [
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "RandomForestRegressor",
        "ExtraTreesRegressor",
    ],
)
def test_forests_predict_as_scikit_learn_does_to_the_bit(kind: str) -> None:
    from sklearn import ensemble

    from conveyor.models.flavors.sklearn import _forest_mean

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    if kind.endswith("Classifier"):
        y = np.array(["low", "mid", "high"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 1)]
    else:
        y = X[:, 0] * 3 + rng.normal(size=300)
    model = getattr(ensemble, kind)(n_estimators=40, random_state=0).fit(X, y)
    flavor = get_flavor("sklearn")
    batch = rng.normal(size=(57, 6)) * 2  # unseen rows, float64 (stored as float32 by sklearn)
    assert _forest_mean(model, batch) is not None  # the trees were called directly
    np.testing.assert_array_equal(flavor.predict(model, batch), model.predict(batch))
    if kind.endswith("Classifier"):
        np.testing.assert_array_equal(
            flavor.predict_proba(model, batch), model.predict_proba(batch)
        )
        predictions, proba = flavor.predict_and_proba(model, batch)
        np.testing.assert_array_equal(predictions, model.predict(batch))
        np.testing.assert_array_equal(proba, model.predict_proba(batch))


def test_forests_leave_inputs_they_do_not_take_to_scikit_learn() -> None:
    from sklearn.ensemble import RandomForestRegressor

    from conveyor.models.flavors.sklearn import _forest_mean

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, X[:, 0] > 0)
    with_nan = X[:5].copy()
    with_nan[0, 1] = np.nan  # scikit-learn routes missing values: its own predict runs
    two_outputs = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, X[:, :2])
    assert _forest_mean(model, with_nan) is None
    assert _forest_mean(model, pd.DataFrame(X[:5])) is None
    assert _forest_mean(model, X[:5, :2]) is None
    assert _forest_mean(two_outputs, X[:5]) is None
    flavor = get_flavor("sklearn")
    np.testing.assert_array_equal(flavor.predict(model, with_nan), model.predict(with_nan))
    with pytest.raises(ValueError, match="features"):
        flavor.predict(model, X[:5, :2])
    assert _forest_mean(model, X[:0]) is None
    with warnings.catch_warnings():  # numpy's own note that np.matrix is on its way out
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        assert _forest_mean(model, np.asmatrix(X[:5])) is None
    with pytest.raises(ValueError, match="0 sample"):  # scikit-learn's own message
        flavor.predict(model, X[:0])


def test_an_upload_is_checked_for_trees_that_point_outside_themselves() -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.tree import DecisionTreeClassifier

    flavor = get_flavor("sklearn")
    X = np.random.default_rng(0).random((60, 3))
    y = (X[:, 0] > 0.5).astype(int)
    for common in (  # models whose inner classes an upload may hold
        MLPClassifier(max_iter=5),
        CalibratedClassifierCV(LogisticRegression(), cv=2),
        DecisionTreeClassifier(max_depth=2),
    ):
        flavor.check_upload(*flavor.save(common.fit(X, y)))
    tree = DecisionTreeClassifier(max_depth=2).fit(X, y)
    state = tree.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = 10**8  # a prediction would read far past the node array
    tree.tree_.__setstate__({**state, "nodes": nodes})
    with pytest.raises(IntegrityError, match="nodes point outside it"):
        flavor.check_upload(*flavor.save(tree))
    bare = DecisionTreeClassifier(max_depth=2).fit(X, y)
    del bare.n_features_in_  # nothing then says which features its nodes may read
    with pytest.raises(IntegrityError, match="no estimator that says what it takes"):
        flavor.check_upload(*flavor.save(bare))


def test_a_multi_output_classifier_is_stored_and_uploadable() -> None:
    from sklearn.tree import DecisionTreeClassifier

    X = np.random.default_rng(1).random((40, 3))
    y = np.c_[(X[:, 0] > 0.5).astype(int), (X[:, 1] > 0.5).astype(int)]
    flavor = get_flavor("sklearn")
    files, info = flavor.save(DecisionTreeClassifier(max_depth=3).fit(X, y))
    checked = flavor.check_upload(files, info)
    assert flavor.load(files, checked).predict(X).shape == (40, 2)
