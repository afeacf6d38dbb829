"""The model registry as users rely on it, written once; run on every metadata/artifact backend.

A subclass provides the ``store_uri`` and ``artifact_uri`` fixtures.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import conveyor as cv
from conveyor.core.errors import (
    ConflictError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from conveyor.models.records import PromotionRequest
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed")

from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402


class Doubler(cv.models.PythonModel):
    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return data["x"].to_numpy() * 2


class ModelsSuite:
    @pytest.fixture(scope="class")
    @classmethod
    def cancer(cls) -> tuple[pd.DataFrame, pd.Series]:
        X, y = load_breast_cancer(return_X_y=True, as_frame=True)
        return X, y

    @pytest.fixture(scope="class")
    @classmethod
    def forest(cls, cancer: tuple[pd.DataFrame, pd.Series]) -> RandomForestClassifier:
        X, y = cancer
        return RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)

    @pytest.fixture
    def ws(self, store_uri: str, artifact_uri: str, tmp_path: Path):  # type: ignore[no-untyped-def]
        ws = cv.init(
            tmp_path / "project",
            project="models",
            store_uri=store_uri,
            artifact_uri=artifact_uri,
            actor="ada",
        )
        yield ws
        ws.close()

    @pytest.fixture
    def bob(self, ws: Workspace, store_uri: str, artifact_uri: str):  # type: ignore[no-untyped-def]
        """The same project, as a second person."""
        other = cv.Workspace.from_settings(
            ws.settings.root,
            project="models",
            store_uri=store_uri,
            artifact_uri=artifact_uri,
            actor="bob",
        )
        yield other
        other.close()

    # -- log and load ----------------------------------------------------------------------

    def test_a_logged_forest_loads_and_predicts_the_same(
        self, ws: Workspace, cancer: tuple[pd.DataFrame, pd.Series], forest: RandomForestClassifier
    ) -> None:
        X, _ = cancer
        with cv.start_run(experiment="churn") as run:
            mv = cv.models.log(forest, "churn", input_example=X[:5])
        assert (mv.name, mv.version, mv.flavor, mv.run_id) == ("churn", 1, "sklearn", run.id)
        loaded = cv.models.load("churn/1")
        np.testing.assert_array_equal(loaded.predict(X), forest.predict(X))
        np.testing.assert_allclose(loaded.predict_proba(X), forest.predict_proba(X))
        assert loaded.signature is not None
        assert loaded.signature.columns == list(X.columns)
        pd.testing.assert_frame_equal(
            cv.models.input_example("churn/1"), X[:5].reset_index(drop=True)
        )
        assert {"scikit-learn", "skops"} <= set(mv.requirements)
        upstream = ws.lineage(ObjectRef("model_version", mv.id), direction="upstream").edges
        assert [(e.src, e.relation) for e in upstream] == [(ObjectRef("run", run.id), "produced")]

    def test_versions_count_up_and_references_resolve(
        self, ws: Workspace, forest: RandomForestClassifier
    ) -> None:
        for _ in range(3):
            cv.models.log(forest, "churn")
        assert [v.version for v in cv.models.versions("churn")] == [3, 2, 1]
        assert cv.models.get("churn").version == 3
        assert cv.models.get("churn@latest").version == 3
        assert cv.models.get("churn/2").version == 2
        with pytest.raises(NotFoundError, match="versions are 1 to 3"):
            cv.models.get("churn/9")
        with pytest.raises(NotFoundError, match="did you mean churn"):
            cv.models.get("chrun/1")
        with pytest.raises(InvalidArgumentError, match="version number"):
            cv.models.get("churn/x")

    def test_the_data_a_run_used_is_reachable_from_the_model(
        self, ws: Workspace, cancer: tuple[pd.DataFrame, pd.Series]
    ) -> None:
        X, y = cancer
        cv.data.add("cancer", X.assign(target=y))
        with cv.start_run(experiment="churn"):
            df = cv.data.load("cancer@1")
            model = LogisticRegression(max_iter=5000).fit(df.drop(columns="target"), df["target"])
            cv.log_params({"C": 1.0})
            mv = cv.models.log(model, "lr")
        assert cv.models.compare(mv.ref, mv.ref)["a"]["data"] == ["cancer@1"]

    def test_a_tampered_model_file_is_refused(
        self, ws: Workspace, forest: RandomForestClassifier
    ) -> None:
        mv = cv.models.log(forest, "churn")
        document = cv.models.get("churn/1")
        from conveyor.models.service import model_service

        doc = model_service(ws).document(document)
        digest = doc.files["model.skops"][0]
        key = f"{digest[:2]}/{digest[2:]}"
        ws.artifacts.backend.put_bytes(key, b"not the model")  # bytes change under the digest
        with pytest.raises(IntegrityError):
            cv.models.load(mv.ref)

    def test_a_python_model_needs_trust_to_load(self, ws: Workspace) -> None:
        cv.models.log(Doubler(), "doubler", input_example=pd.DataFrame({"x": [1.0, 2.0]}))
        with pytest.raises(PermissionDeniedError, match="trust=True"):
            cv.models.load("doubler")
        loaded = cv.models.load("doubler", trust=True)
        assert loaded.predict(pd.DataFrame({"x": [3.0]})).tolist() == [6.0]

    def test_a_promotion_check_does_not_unpickle_on_someones_behalf(self, ws: Workspace) -> None:
        cv.models.log(Doubler(), "doubler", input_example=pd.DataFrame({"x": [1.0]}))
        request = cv.models.request_promotion("doubler/1", "champion")
        check = next(c for c in request.checks if c["name"] == "input_example")
        assert (check["status"], "trust" in check["detail"]) == ("skipped", True)

    def test_an_object_no_flavor_handles_says_to_wrap_it(self, ws: Workspace) -> None:
        with pytest.raises(InvalidArgumentError, match="PythonModel"):
            cv.models.log(object(), "thing")

    # -- signatures --------------------------------------------------------------------------

    def test_the_signature_is_enforced_when_predicting(
        self, ws: Workspace, cancer: tuple[pd.DataFrame, pd.Series], forest: RandomForestClassifier
    ) -> None:
        X, _ = cancer
        cv.models.log(forest, "churn", signature=cv.models.infer_signature(X, forest.predict(X)))
        loaded = cv.models.load("churn")
        shuffled = X[list(reversed(X.columns))].assign(extra=1)
        np.testing.assert_array_equal(loaded.predict(shuffled), forest.predict(X))
        bad = X.drop(columns=["mean radius"]).assign(**{"mean area": "big"})
        with pytest.raises(cv.models.SignatureError) as caught:
            loaded.predict(bad)
        assert caught.value.problems == [
            "column 'mean radius': missing",
            "column 'mean area': expected float64, got string",
        ]

    def test_an_input_example_that_contradicts_the_signature_is_refused(
        self, ws: Workspace, cancer: tuple[pd.DataFrame, pd.Series], forest: RandomForestClassifier
    ) -> None:
        X, _ = cancer
        signature = cv.models.infer_signature(X)
        with pytest.raises(cv.models.SignatureError, match="input example"):
            cv.models.log(forest, "churn", signature=signature, input_example=X.iloc[:3, :5])
        with pytest.raises(NotFoundError):
            cv.models.get("churn")  # nothing half-registered

    # -- aliases ----------------------------------------------------------------------------

    def test_alias_moves_are_recorded_and_queryable_by_time(
        self, ws: Workspace, forest: RandomForestClassifier
    ) -> None:
        for _ in range(2):
            cv.models.log(forest, "churn")
        first = cv.models.set_alias("churn", "champion", 1)
        second = cv.models.set_alias("churn", "champion", 2)
        assert (second.version, second.previous) == (2, 1)
        assert cv.models.get("churn@champion").version == 2
        assert cv.models.get("churn/2").aliases == ("champion",)
        history = cv.models.alias_history("churn", "champion")
        assert [(m.version, m.previous, m.actor) for m in history] == [
            (1, None, "ada"),
            (2, 1, "ada"),
        ]
        assert cv.models.get("churn@champion", at=first.at).version == 1
        assert cv.models.get("churn@champion", at=first.at.isoformat()).version == 1
        with pytest.raises(NotFoundError):
            cv.models.get("churn@champion", at=first.at - timedelta(seconds=1))
        with pytest.raises(NotFoundError):
            cv.models.get("churn@champion", at="2000-01-01")  # a date: its midnight, UTC
        with pytest.raises(InvalidArgumentError, match="not a time"):
            cv.models.get("churn@champion", at="yesterday")
        registered = cv.models.get("churn/1").created_at
        assert cv.models.get("churn", at=registered).version == 1  # newest by then
        assert cv.models.get("churn").version == 2
        with pytest.raises(NotFoundError, match="had no version yet"):
            cv.models.get("churn", at="2000-01-01")
        cv.models.delete_alias("churn", "champion")
        with pytest.raises(NotFoundError, match="has no alias 'champion'"):
            cv.models.get("churn@champion")
        with pytest.raises(InvalidArgumentError, match="not a valid alias"):
            cv.models.set_alias("churn", "Champion!", 1)

    # -- approvals -------------------------------------------------------------------------

    def test_a_protected_alias_moves_only_through_an_approved_request(
        self,
        ws: Workspace,
        bob: Workspace,
        cancer: tuple[pd.DataFrame, pd.Series],
        forest: RandomForestClassifier,
    ) -> None:
        X, _ = cancer
        cv.models.log(forest, "churn", input_example=X[:5])
        cv.models.log(forest, "churn", input_example=X[:5])
        cv.models.set_alias("churn", "champion", 1)
        cv.models.require_approval("churn")
        with pytest.raises(PermissionDeniedError, match="protected"):
            cv.models.set_alias("churn", "champion", 2)
        request = cv.models.request_promotion("churn/2", "champion", comment="better AUC")
        assert request.status == "pending"
        assert {c["name"]: c["status"] for c in request.checks} == {
            "signature": "passed",
            "input_example": "passed",
            "evaluation": "skipped",
        }
        with pytest.raises(PermissionDeniedError, match="second person"):
            cv.models.approve(request.id)
        for disguise in ("ada ", "ADA"):  # the requester under another spelling
            other = cv.Workspace.from_settings(
                ws.settings.root,
                project="models",
                store_uri=ws.settings.store_uri,
                artifact_uri=ws.settings.artifact_uri,
                actor=disguise,
            )
            try:
                with pytest.raises(PermissionDeniedError, match="second person"):
                    cv.models.approve(request.id, workspace=other)
            finally:
                other.close()
        decided = cv.models.approve(request.id, comment="ok", workspace=bob)
        assert (decided.status, decided.decided_by) == ("approved", "bob")
        assert cv.models.get("churn@champion").version == 2
        last = cv.models.alias_history("churn", "champion")[-1]
        assert (last.version, last.actor, last.request_id) == (2, "bob", request.id)
        with pytest.raises(ConflictError, match="already approved by bob"):
            cv.models.reject(request.id, workspace=bob)

    def test_protection_adds_to_and_removes_from_what_the_store_holds(
        self, ws: Workspace, bob: Workspace, forest: RandomForestClassifier
    ) -> None:
        cv.models.log(forest, "churn")
        cv.models.require_approval("churn", ["champion"])
        # bob's workspace never read alice's change: "add" merges with what is stored
        added = cv.models.require_approval("churn", ["staging"], change="add", workspace=bob)
        assert added.protected_aliases == ("champion", "staging")
        removed = cv.models.require_approval("churn", ["champion"], change="remove")
        assert removed.protected_aliases == ("staging",)
        with pytest.raises(InvalidArgumentError, match="change must be one of set, add, remove"):
            cv.models.require_approval("churn", ["staging"], change="toggle")

    def test_a_request_whose_alias_moved_since_cannot_be_approved(
        self, ws: Workspace, bob: Workspace, forest: RandomForestClassifier
    ) -> None:
        for _ in range(3):
            cv.models.log(forest, "churn")
        cv.models.set_alias("churn", "champion", 1)
        cv.models.require_approval("churn")
        older = cv.models.request_promotion("churn/2", "champion")
        newer = cv.models.request_promotion("churn/3", "champion")
        cv.models.approve(newer.id, workspace=bob)
        with pytest.raises(ConflictError, match="has moved since"):
            cv.models.approve(older.id, workspace=bob)
        assert cv.models.get("churn@champion").version == 3
        assert cv.models.request(older.id, workspace=bob).status == "pending"
        cv.models.reject(older.id, comment="superseded", workspace=bob)

    def test_logging_with_an_example_the_model_cannot_predict_warns(
        self,
        ws: Workspace,
        cancer: tuple[pd.DataFrame, pd.Series],
        forest: RandomForestClassifier,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        X, _ = cancer
        cv.models.log(forest, "churn", input_example=X.drop(columns=["mean radius"])[:3])
        assert "cannot predict its own input example" in caplog.text
        caplog.clear()
        cv.models.log(forest, "churn", input_example=X[:3])
        assert "cannot predict" not in caplog.text

    def test_a_signature_given_as_text_is_refused_clearly(
        self, ws: Workspace, forest: RandomForestClassifier
    ) -> None:
        with pytest.raises(InvalidArgumentError, match="signature must be a Signature"):
            cv.models.log(forest, "churn", signature="n:int")  # type: ignore[arg-type]
        with pytest.raises(NotFoundError, match=r"no model named 'nope'\. This project has none"):
            cv.models.get("nope")

    def test_a_deferred_request_moves_the_alias_when_its_requester_uses_it(
        self, ws: Workspace, bob: Workspace, forest: RandomForestClassifier
    ) -> None:
        cv.models.log(forest, "churn")
        cv.models.log(forest, "churn")
        cv.models.set_alias("churn", "production", 1)
        cv.models.require_approval("churn", ["production"])
        request = cv.models.request_promotion("churn/2", "production", deferred=True)
        cv.models.approve(request.id, workspace=bob)
        assert cv.models.get("churn@production").version == 1  # approved, not moved yet
        cv.models.set_alias("churn", "production", 2, request_id=request.id)
        assert cv.models.get("churn@production").version == 2
        assert [r.id for r in cv.models.requests("churn", status="applied")] == [request.id]

    def test_a_rejected_request_leaves_the_alias(
        self, ws: Workspace, bob: Workspace, forest: RandomForestClassifier
    ) -> None:
        cv.models.log(forest, "churn")
        cv.models.require_approval("churn", ["production"])
        request = cv.models.request_promotion("churn/1", "production")
        cv.models.reject(request.id, comment="not yet", workspace=bob)
        assert cv.models.requests("churn", status="rejected")[0].id == request.id
        with pytest.raises(NotFoundError):
            cv.models.get("churn@production")
        (event,) = ws.metadata.audit_log(action="promotion.reject")
        assert (event.actor, event.after["comment"]) == ("bob", "not yet")

    def test_a_withdrawn_request_is_listed_and_a_decided_one_cannot_be_withdrawn(
        self, ws: Workspace, bob: Workspace, forest: RandomForestClassifier
    ) -> None:
        cv.models.log(forest, "churn")
        cv.models.require_approval("churn", ["production"])
        first = cv.models.request_promotion("churn/1", "production")
        assert cv.models.withdraw(first.id).status == "withdrawn"
        assert cv.models.withdraw(first.id).status == "withdrawn"  # again: nothing to do
        assert [r.id for r in cv.models.requests("churn", status="withdrawn")] == [first.id]
        with pytest.raises(ConflictError, match="withdrawn by its requester, ada"):
            cv.models.approve(first.id, workspace=bob)
        second = cv.models.request_promotion("churn/1", "production")
        cv.models.reject(second.id, workspace=bob)
        with pytest.raises(ConflictError, match="is rejected, so it cannot be withdrawn"):
            cv.models.withdraw(second.id)

    @staticmethod
    def narrowing_request(cancer: tuple[pd.DataFrame, pd.Series]) -> PromotionRequest:
        """A request to move lr@champion from a version on every column to one on five."""
        X, y = cancer
        cv.models.log(LogisticRegression(max_iter=5000).fit(X, y), "lr", input_example=X[:3])
        cv.models.set_alias("lr", "champion", 1)
        narrow = X.iloc[:, :5]
        cv.models.log(
            LogisticRegression(max_iter=5000).fit(narrow, y), "lr", input_example=narrow[:3]
        )
        return cv.models.request_promotion("lr/2", "champion")

    def test_a_signature_change_fails_the_promotion_check(
        self,
        ws: Workspace,
        cancer: tuple[pd.DataFrame, pd.Series],
    ) -> None:
        request = self.narrowing_request(cancer)
        check = next(c for c in request.checks if c["name"] == "signature")
        assert (check["status"], "removed" in check["detail"]) == ("failed", True)
        assert not request.checks_passed

    def test_a_request_that_failed_a_check_is_approved_only_by_an_explicit_override(
        self, ws: Workspace, bob: Workspace, cancer: tuple[pd.DataFrame, pd.Series]
    ) -> None:
        request = self.narrowing_request(cancer)
        with pytest.raises(ConflictError, match="failed its checks \\(signature: "):
            cv.models.approve(request.id, workspace=bob)
        with pytest.raises(InvalidArgumentError, match="needs a comment"):
            cv.models.approve(request.id, override_checks=True, workspace=bob)
        assert cv.models.get("lr@champion").version == 1
        assert cv.models.request(request.id).status == "pending"
        why = "the dropped columns are gone upstream"
        decided = cv.models.approve(request.id, comment=why, override_checks=True, workspace=bob)
        assert (decided.status, cv.models.get("lr@champion").version) == ("approved", 2)
        event = ws.metadata.audit_log(action="promotion.approve")[0]
        assert (event.after["overrode_checks"], event.after["comment"]) == (["signature"], why)

    # -- evaluation and cards --------------------------------------------------------------

    @staticmethod
    def labelled(cancer: tuple[pd.DataFrame, pd.Series]) -> pd.DataFrame:
        X, y = cancer
        return X.assign(
            target=y,
            region=np.where(X["mean radius"] > 14, "north", "south"),
            gender=np.resize(["f", "m", "m"], len(X)),
        )

    def test_evaluate_on_a_dataset_version_records_everything(
        self, ws: Workspace, cancer: tuple[pd.DataFrame, pd.Series], forest: RandomForestClassifier
    ) -> None:
        X, _ = cancer
        frame = self.labelled(cancer)
        cv.data.add("cancer", frame)
        mv = cv.models.log(forest, "churn", input_example=X[:5])
        ev = cv.models.evaluate(
            "churn/1", "cancer@1", target="target", slices=["region"], sensitive=["gender"]
        )
        from sklearn.metrics import roc_auc_score

        expected_auc = roc_auc_score(frame["target"], forest.predict_proba(X)[:, 1])
        assert ev.metrics["roc_auc"] == pytest.approx(expected_auc)
        assert {"accuracy", "precision", "recall", "f1", "log_loss", "calibration_error"} <= set(
            ev.metrics
        )
        assert sum(s["rows"] for s in ev.slices["region"]) == len(frame)
        chosen = pd.Series(forest.predict(X) == 1).groupby(frame["gender"]).mean()
        assert ev.fairness["gender"]["demographic_parity_difference"] == pytest.approx(
            chosen.max() - chosen.min()
        )
        # every input column, and none the model does not take (region, gender)
        assert sorted(f["feature"] for f in ev.importance) == sorted(X.columns)
        assert [e.id for e in cv.models.evaluations("churn/1")] == [ev.id]
        downstream = ws.lineage(ObjectRef("model_evaluation", ev.id), direction="downstream")
        assert [(e.dst, e.relation) for e in downstream.edges] == [
            (ObjectRef("model_version", mv.id), "evaluates")
        ]

    def test_a_model_trained_on_arrays_is_evaluated_with_slice_columns_aside(
        self, ws: Workspace, cancer: tuple[pd.DataFrame, pd.Series]
    ) -> None:
        X, y = cancer
        cv.data.add("cancer", self.labelled(cancer))
        arrays = LogisticRegression(max_iter=5000).fit(X.to_numpy(), y.to_numpy())
        cv.models.log(arrays, "tensors", input_example=X.to_numpy()[:3])
        ev = cv.models.evaluate(
            "tensors/1", "cancer@1", target="target", slices="region", sensitive="gender"
        )
        assert sorted(s["value"] for s in ev.slices["region"]) == ["north", "south"]
        gappy = self.labelled(cancer).astype({"target": "float64"})
        gappy.loc[:9, "target"] = np.nan
        with pytest.raises(InvalidArgumentError, match="no value on 10 of 569 rows"):
            cv.models.evaluate("tensors/1", gappy.drop(columns=["gender"]), target="target")

    def test_a_regression_is_scored_with_regression_metrics(self, ws: Workspace) -> None:
        from sklearn.datasets import load_diabetes
        from sklearn.linear_model import LinearRegression

        X, y = load_diabetes(return_X_y=True, as_frame=True)
        model = LinearRegression().fit(X, y)
        cv.models.log(model, "price")
        ev = cv.models.evaluate("price", X.assign(y=y), target="y", importance=False)
        rmse = float(np.sqrt(np.mean((model.predict(X) - y) ** 2)))
        assert ev.task == "regression"
        assert ev.metrics["rmse"] == pytest.approx(rmse)
        assert ev.dataset == "<frame>"
        with pytest.raises(InvalidArgumentError, match="no target column 'label'"):
            cv.models.evaluate("price", X.assign(y=y), target="label")

    def test_a_regression_evaluated_as_a_classification_says_so(
        self, ws: Workspace, cancer: tuple[pd.DataFrame, pd.Series]
    ) -> None:
        from sklearn.linear_model import LinearRegression

        X, y = cancer
        frame = X.assign(score=y * 1.5 + 0.25)
        cv.data.add("scores", frame)
        cv.models.log(LinearRegression().fit(X, frame["score"]), "scorer", input_example=X[:5])
        with pytest.raises(InvalidArgumentError, match="continuous numbers"):
            cv.models.evaluate("scorer/1", "scores@1", target="score", task="classification")

    def test_a_worse_evaluation_fails_the_promotion_check(
        self, ws: Workspace, cancer: tuple[pd.DataFrame, pd.Series], forest: RandomForestClassifier
    ) -> None:
        from sklearn.dummy import DummyClassifier

        X, y = cancer
        cv.data.add("cancer", self.labelled(cancer))
        cv.models.log(forest, "churn")
        cv.models.log(DummyClassifier(strategy="prior").fit(X, y), "churn")
        for ref in ("churn/1", "churn/2"):
            cv.models.evaluate(ref, "cancer@1", target="target", importance=False)
        cv.models.set_alias("churn", "champion", 1)
        worse = cv.models.request_promotion("churn/2", "champion")
        check = next(c for c in worse.checks if c["name"] == "evaluation")
        assert check["status"] == "failed"
        assert "roc_auc 0.5 vs" in check["detail"]
        cv.models.withdraw(worse.id)
        # A newer evaluation of another kind does not turn the failed comparison into a skip.
        cv.models.evaluate("churn/2", "cancer@1", target="target", task="regression")
        again = cv.models.request_promotion("churn/2", "champion")
        check = next(c for c in again.checks if c["name"] == "evaluation")
        assert (check["status"], "roc_auc 0.5 vs" in check["detail"]) == ("failed", True)

    def test_the_evaluation_check_compares_one_metric_on_both_sides(
        self, ws: Workspace, cancer: tuple[pd.DataFrame, pd.Series]
    ) -> None:
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import LinearSVC

        X, y = cancer
        cv.data.add("cancer", self.labelled(cancer))
        cv.models.log(LogisticRegression(max_iter=5000).fit(X, y), "churn")
        cv.models.log(make_pipeline(StandardScaler(), LinearSVC()).fit(X, y), "churn")
        for ref in ("churn/1", "churn/2"):
            cv.models.evaluate(ref, "cancer@1", target="target", importance=False)
        cv.models.set_alias("churn", "champion", 1)
        request = cv.models.request_promotion("churn/2", "champion")
        check = next(c for c in request.checks if c["name"] == "evaluation")
        assert check["detail"].startswith("accuracy ")  # the SVC has no probabilities

    def test_the_model_card_tells_data_evaluation_and_approvals(
        self,
        ws: Workspace,
        bob: Workspace,
        cancer: tuple[pd.DataFrame, pd.Series],
        forest: RandomForestClassifier,
    ) -> None:
        cv.data.add("cancer", self.labelled(cancer))
        with cv.start_run(experiment="churn"):
            frame = cv.data.load("cancer@1")
            cv.log_params({"n_estimators": 10})
            cv.models.log(forest, "churn", description="Flags <likely> churners")
        cv.models.evaluate("churn/1", "cancer@1", target="target", sensitive=["gender"])
        request = cv.models.request_promotion("churn/1", "champion")
        cv.models.approve(request.id, workspace=bob)
        markdown = cv.models.card("churn/1")
        for expected in (
            "# Model card: churn/1",
            "Flags <likely> churners",
            "cancer@1: table, 1 file(s)",
            f"| {frame.columns[0]} | double |",
            "| n_estimators | 10 |",
            "## Fairness on cancer@1",
            "## Feature importance on cancer@1",
            f"| {request.id} | champion | approved | ada | bob |",
            "@champion moved to churn/1 by bob",
        ):
            assert expected in markdown, expected
        page = cv.models.card("churn/1", format="html")
        assert "Flags &lt;likely&gt; churners" in page
        assert page.startswith("<!doctype html>")

    def test_the_card_says_how_many_profile_columns_it_leaves_out(
        self, ws: Workspace, cancer: tuple[pd.DataFrame, pd.Series], forest: RandomForestClassifier
    ) -> None:
        labelled = self.labelled(cancer)
        cv.data.add("cancer", labelled)
        with cv.start_run(experiment="churn"):
            cv.data.load("cancer@1")
            cv.models.log(forest, "churn")
        hidden = len(labelled.columns) - 15
        note = f"… and {hidden} more columns, not shown here: conveyor data show cancer@1"
        markdown = cv.models.card("churn/1")
        assert note in markdown
        shown = [c for c in labelled.columns if f"\n| {c} |" in markdown]
        assert shown == list(labelled.columns[:15])  # the table's first, on every store
        assert f"<p>{note}</p>" in cv.models.card("churn/1", format="html")

    def test_the_card_marks_an_approval_that_overrode_failed_checks(
        self, ws: Workspace, bob: Workspace, cancer: tuple[pd.DataFrame, pd.Series]
    ) -> None:
        request = self.narrowing_request(cancer)
        why = "the dropped columns are gone upstream"
        cv.models.approve(request.id, comment=why, override_checks=True, workspace=bob)
        markdown = cv.models.card("lr/2")
        assert (
            f"| {request.id} | champion | approved, overriding failed checks: signature | ada "
            f"| bob | {why} |" in markdown
        )
        page = cv.models.card("lr/2", format="html")
        assert "<td>approved, overriding failed checks: signature</td>" in page
        passed = cv.models.request_promotion("lr/1", "staging")
        assert passed.checks_passed
        cv.models.approve(passed.id, workspace=bob)
        assert f"| {passed.id} | staging | approved | ada | bob |" in cv.models.card("lr/1")

    # -- events ----------------------------------------------------------------------------

    def test_subscribers_hear_registry_events(
        self, ws: Workspace, forest: RandomForestClassifier
    ) -> None:
        heard: list[tuple[str, dict]] = []
        stop = cv.models.subscribe(lambda e: heard.append((e.kind, e.payload)))
        cv.models.log(forest, "churn")
        cv.models.set_alias("churn", "champion", 1)
        stop()
        cv.models.log(forest, "churn")
        assert [k for k, _ in heard] == ["model_version.created", "alias.moved"]
        assert (heard[1][1]["alias"], heard[1][1]["version"]) == ("champion", 1)

    def test_an_approval_tells_subscribers_the_move_with_its_previous_version(
        self, ws: Workspace, bob: Workspace, forest: RandomForestClassifier
    ) -> None:
        cv.models.log(forest, "churn")
        cv.models.log(forest, "churn")
        cv.models.set_alias("churn", "champion", 1)
        cv.models.require_approval("churn")
        request = cv.models.request_promotion("churn/2", "champion")
        heard: list[dict] = []
        stop = cv.models.subscribe(  # bob's workspace: the one that moves the alias
            lambda e: heard.append(e.payload) if e.kind == "alias.moved" else None, workspace=bob
        )
        try:
            cv.models.approve(request.id, workspace=bob)
        finally:
            stop()
        assert [(p["version"], p["previous"], p["request_id"]) for p in heard] == [
            (2, 1, request.id)
        ]
