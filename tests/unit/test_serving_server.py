"""The model server's behaviour at its edges: bad input, failing models, traffic policies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

import conveyor as cv
from conveyor.core.errors import ConflictError, InvalidArgumentError, NotFoundError
from conveyor.store.workspace import Workspace
from tests.suites.serving import LiveServer, Traffic, rows, training_data


class Refuser(cv.models.PythonModel):
    """Predicts a + b, and fails on any row whose a is above 100."""

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        if (data["a"] > 100).any():
            raise RuntimeError("secret internal detail: a > 100")
        return (data["a"] + data["b"]).to_numpy()


class AlwaysFails(cv.models.PythonModel):
    def predict(self, data: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("broken model")


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    ws = cv.Workspace.from_settings(tmp_path / "p", project="edge", actor="ada")
    yield ws
    ws.close()


@pytest.fixture
def churn(ws: Workspace) -> Any:
    X, y = training_data()
    version = cv.models.log(
        LogisticRegression().fit(X, y), "churn", input_example=X[:5], workspace=ws
    )
    cv.models.set_alias("churn", "champion", version=version.version, workspace=ws)
    return version


def _client(ws: Workspace, ref: str = "churn@champion", **options: Any) -> Any:
    from conveyor.testing import ModelServerClient

    return ModelServerClient(ref, workspace=ws, **options)


def test_a_numeric_model_is_loaded_served_and_logged_without_pandas_or_fsspec(
    ws: Workspace, churn: Any, tmp_path: Path
) -> None:
    import subprocess
    import sys

    row = {name: 1.0 for name in churn.signature.columns}
    code = (
        "import sys\n"
        "import conveyor as cv\n"
        "from conveyor.testing import ModelServerClient\n"
        f"ws = cv.Workspace.from_settings({str(tmp_path / 'p')!r}, project='edge')\n"
        "with ModelServerClient('churn@champion', workspace=ws) as c:\n"
        f"    answer = c.predict([{row!r}, {row!r}])\n"
        # leaving the block flushes the prediction log: Parquet written without pandas too
        "print(len(answer['predictions']), 'pandas' in sys.modules, 'fsspec' in sys.modules)\n"
        "logged = cv.serving.read_predictions(workspace=ws)\n"  # a DataFrame: pandas now
        "print(sorted(logged['prediction_id']) == sorted(answer['prediction_ids']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["2 False False", "True"]


def test_a_pipeline_that_picks_columns_by_name_is_served(ws: Workspace) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = training_data()
    first = str(X.columns[0])
    scaled = ColumnTransformer([("s", StandardScaler(), [first])], remainder="passthrough")
    model = make_pipeline(scaled, LogisticRegression()).fit(X, y)
    cv.models.log(model, "picky", input_example=X[:5], workspace=ws)
    with _client(ws, "picky") as client:
        answer = client.predict(X[:20].to_dict(orient="records"))
    assert answer["predictions"] == model.predict(X[:20]).tolist()


def test_a_request_batched_with_one_asking_for_probabilities_gets_none(
    ws: Workspace, churn: Any
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # Under load, requests that arrive together are predicted as one batch.
    asks = [i % 2 == 1 for i in range(60)]
    v1 = [{"instances": rows(1), **({"return": ["proba"]} if a else {})} for a in asks]
    tensors = [
        {"name": c, "shape": [1], "datatype": "FP64", "data": [v]} for c, v in rows(1)[0].items()
    ]
    proba = {"parameters": {"return_proba": True}}
    v2 = [{"inputs": tensors, **(proba if a else {})} for a in asks]
    app = cv.serving.app("churn@champion", workspace=ws, max_wait_ms=20)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:

        def send(path: str, body: dict[str, Any]) -> dict[str, Any]:
            return http.post(path, json=body).json()

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda b: send("/v1/models/churn/predict", b), v1))
            inferred = list(pool.map(lambda b: send("/v2/models/churn/infer", b), v2))
    assert [("proba" in a, "classes" in a) for a in answers] == [(a, a) for a in asks]
    assert [any(o["name"] == "proba" for o in a["outputs"]) for a in inferred] == asks


def test_no_input_gets_a_500(ws: Workspace, churn: Any) -> None:
    with _client(ws, max_body_bytes=2_000) as client:
        http = client.http
        bad = http.post("/v1/models/churn/predict", content=b'{"instances": [')
        assert bad.status_code == 400
        assert "not valid JSON" in bad.json()["error"]
        big = http.post("/v1/models/churn/predict", json={"instances": rows(100)})
        assert big.status_code == 413
        assert "2,000" in big.json()["error"]
        missing = http.post("/v1/models/nope/predict", json={"instances": rows(1)})
        assert missing.status_code == 404
        assert "serves: churn" in missing.json()["error"]
        wrong = http.post("/v1/models/churn/predict", json={"instances": [{"a": "x", "b": 1.0}]})
        assert wrong.status_code == 422
        assert wrong.json()["problems"] == [
            "column 'a', row 0: expected a number (float64), got the string 'x'"
        ]
        for body in ([], "text", 3, {"instances": [1, 2]}, {"data": [[1.0]]}, None):
            answer = http.post("/v1/models/churn/predict", json=body)
            assert 400 <= answer.status_code < 500, (body, answer.status_code, answer.text)


def test_a_key_given_twice_in_a_record_gets_a_422_naming_it(ws: Workspace, churn: Any) -> None:
    first, second = churn.signature.columns[:2]
    row = ", ".join(f'"{c}": 1.0' for c in churn.signature.columns)
    json_headers = {"content-type": "application/json"}
    with _client(ws) as client:
        http = client.http
        twice = f'{{"instances": [{{{row}}}, {{{row}, "{second}": 7.5}}]}}'.encode()
        answer = http.post("/v1/models/churn/predict", content=twice, headers=json_headers)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == (
            f"instances[1] names {second!r} twice; give each key once "
            "(JSON keeps only the last value)."
        )
        columns = f'{{"columns": ["{first}", "{first}"], "data": [[1.0, 2.0]]}}'.encode()
        split = http.post("/v1/models/churn/predict", content=columns, headers=json_headers)
        assert split.status_code == 422  # the same fault in the split shape: the same answer
        assert f"names {first!r} twice" in split.json()["error"]
        label = b'{"prediction_id": "p1", "label": 1, "label": 0}'
        feedback = http.post("/v1/feedback", content=label, headers=json_headers)
        assert feedback.status_code == 422
        assert "names 'label' twice" in feedback.json()["error"]
        once = http.post("/v1/models/churn/predict", content=f'{{"instances": [{{{row}}}]}}')
        assert once.status_code == 200, once.text
    failures = cv.serving.read_failures(workspace=ws)
    assert failures["status"].tolist() == [422, 422]  # logged like any refused request


def test_a_value_past_float32_gets_a_422_from_a_forest_not_a_500(ws: Workspace) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = training_data()
    forest = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3))
    cv.models.log(forest.fit(X, y), "forest", input_example=X[:5], workspace=ws)
    cv.models.log(LogisticRegression().fit(X, y), "linear", input_example=X[:5], workspace=ws)
    row = {c: 1.0 for c in X.columns}
    huge = {**row, X.columns[1]: -1e39}  # finite, but no float32 holds it
    with _client(ws, "forest") as client:
        status, body = client.predict([row, huge], check=False)
        assert status == 422, body  # scikit-learn's trees cast to float32 and refuse it
        assert body["error"].startswith(f"column {X.columns[1]!r}, row 1: -1e+39 is past")
        assert client.predict([row])["predictions"]  # values in range: answered
    with _client(ws, "linear") as client:
        assert client.predict([huge])["predictions"]  # float64 all through: answered


def test_a_failing_model_answers_500_with_an_error_id_and_no_traceback(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    X = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    cv.models.log(Refuser(), "adder", input_example=X, workspace=ws)
    with _client(ws, "adder", trust=True) as client:
        ok = client.predict([{"a": 1.0, "b": 2.0}])
        assert ok["predictions"] == [3.0]
        status, body = client.predict([{"a": 500.0, "b": 2.0}], check=False)
    assert status == 500
    assert body["error_id"] in body["error"]
    assert "secret" not in str(body)
    assert "secret internal detail" in caplog.text  # the traceback goes to the log only
    assert body["error_id"] in caplog.text


def test_failed_requests_are_logged_with_status_and_error_id_not_inputs(ws: Workspace) -> None:
    X = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    cv.models.log(Refuser(), "adder", input_example=X, workspace=ws)
    with _client(ws, "adder", trust=True) as client:
        client.predict([{"a": 1.0, "b": 2.0}])
        refused, _ = client.predict([{"a": 1.0}], check=False)
        status, body = client.predict([{"a": 500.0, "b": 2.0}], check=False)
    assert (refused, status) == (422, 500)
    failures = cv.serving.read_failures(workspace=ws).sort_values("status")
    assert failures[["model", "model_version", "status"]].values.tolist() == [
        ["adder", 1, 422],
        ["adder", 1, 500],
    ]
    assert failures["error_id"].iloc[1] == body["error_id"]  # the one the caller was given
    assert not any(c.startswith("inputs") for c in failures.columns)
    assert len(cv.serving.read_predictions(workspace=ws)) == 1  # failures are not predictions


def test_feedback_is_logged_against_prediction_ids(ws: Workspace, churn: Any) -> None:
    with _client(ws) as client:
        answer = client.predict(rows(3))
        for pid, label in zip(answer["prediction_ids"], [1, 0, 1], strict=True):
            assert client.feedback(pid, label) == {"accepted": 1}
        status, _ = client.feedback("", 1, check=False)
        assert status == 422
        assert client.http.post("/v1/feedback", json=[{"label": 1}]).status_code == 422
    feedback = cv.serving.read_feedback("churn", workspace=ws)
    assert feedback["prediction_id"].tolist() == answer["prediction_ids"]
    assert feedback["label"].tolist() == [1, 0, 1]


def test_open_inference_protocol_v2(ws: Workspace, churn: Any) -> None:
    with _client(ws) as client:
        http = client.http
        assert http.get("/v2/health/live").json() == {"live": True}
        assert http.get("/v2/health/ready").json() == {"ready": True}
        assert http.get("/v2/models/churn/ready").json() == {"name": "churn", "ready": True}
        meta = http.get("/v2/models/churn").json()
        assert meta["inputs"] == [
            {"name": "a", "datatype": "FP64", "shape": [-1]},
            {"name": "b", "datatype": "FP64", "shape": [-1]},
        ]
        answer = client.infer(
            [
                {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.0, -1.0]},
                {"name": "b", "shape": [2], "datatype": "FP64", "data": [1.0, -1.0]},
            ]
        )
    assert answer["model_name"] == "churn"
    assert answer["model_version"] == "1"
    (output,) = answer["outputs"]
    assert output["name"] == "predictions"
    assert output["shape"] == [2]
    assert output["datatype"] == "INT64"
    assert output["data"] == [1, 0]


def test_metrics_count_requests_by_version_and_status(ws: Workspace, churn: Any) -> None:
    with _client(ws) as client:
        client.predict(rows(2))
        client.predict([{"a": "bad", "b": 1}], check=False)
        text = client.metrics()
    assert 'conveyor_requests_total{model_version="churn/1",status="200"} 1.0' in text
    assert 'conveyor_requests_total{model_version="churn/1",status="422"} 1.0' in text
    assert "conveyor_batch_rows_bucket" in text
    assert "conveyor_predictions_log_dropped_rows 0.0" in text


def test_extra_columns_can_be_dropped_instead_of_rejected(ws: Workspace, churn: Any) -> None:
    body = [{"a": 1.0, "b": 2.0, "customer_id": "c1"}]
    with _client(ws) as client:
        status, answer = client.predict(body, check=False)
        assert status == 422
        assert "customer_id" in answer["error"]
    with _client(ws, extra_columns="drop") as client:
        assert client.predict(body)["dropped_columns"] == ["customer_id"]


def test_a_shadow_never_answers_and_its_failures_do_not_touch_the_answer(
    ws: Workspace, churn: Any
) -> None:
    X = pd.DataFrame({"a": [1.0], "b": [2.0]})
    cv.models.log(AlwaysFails(), "broken", input_example=X, workspace=ws)
    deployments = cv.serving.deployments(ws)
    deployments.create("prod", "churn@champion")
    deployments.shadow("prod", "broken/1")
    failed = 'conveyor_requests_total{model_version="broken/1",status="500"} 5.0'
    with _client(ws, None, deployment="prod", trust=True) as client:
        answers = [client.predict(rows(1, seed=i), name="prod") for i in range(5)]
        deadline = time.monotonic() + 10  # shadow copies run after the answers went out
        while failed not in client.metrics() and time.monotonic() < deadline:
            time.sleep(0.02)
        text = client.metrics()
    assert {a["model_version"] for a in answers} == {"churn/1"}
    assert failed in text


def test_a_working_shadow_is_logged_under_the_same_prediction_ids(
    ws: Workspace, churn: Any
) -> None:
    X, y = training_data()
    cv.models.log(LogisticRegression(C=0.1).fit(X, y), "churn", input_example=X[:5], workspace=ws)
    deployments = cv.serving.deployments(ws)
    deployments.create("prod", "churn@champion")
    deployments.shadow("prod", "churn/2")
    with _client(ws, None, deployment="prod") as client:
        answer = client.predict(rows(3), name="prod")
        deadline = time.monotonic() + 10
        while "churn/2" not in client.metrics() and time.monotonic() < deadline:
            time.sleep(0.02)
    logged = cv.serving.read_predictions("prod", workspace=ws)
    by_role = logged.groupby("role")["prediction_id"].apply(sorted).to_dict()
    assert by_role == {
        "primary": sorted(answer["prediction_ids"]),
        "shadow": sorted(answer["prediction_ids"]),
    }
    assert answer["model_version"] == "churn/1"


def test_an_ab_test_keeps_each_key_on_one_side(ws: Workspace, churn: Any) -> None:
    X, y = training_data()
    cv.models.log(LogisticRegression(C=0.1).fit(X, y), "churn", input_example=X[:5], workspace=ws)
    deployments = cv.serving.deployments(ws)
    deployments.create("prod", "churn@champion")
    deployments.ab("prod", "churn/2", 50, key="customer_id")
    with _client(ws, None, deployment="prod", extra_columns="drop") as client:
        sides: dict[str, set[str]] = {}
        for customer in range(40):
            for _ in range(3):
                body = [{"a": 0.1, "b": 0.2, "customer_id": f"c{customer}"}]
                version = client.predict(body, name="prod")["model_version"]
                sides.setdefault(f"c{customer}", set()).add(version)
    assert all(len(seen) == 1 for seen in sides.values())
    assert {v for seen in sides.values() for v in seen} == {"churn/1", "churn/2"}


def test_a_canary_that_breaks_its_error_limit_is_rolled_back_by_the_server(
    ws: Workspace, churn: Any
) -> None:
    X = pd.DataFrame({"a": [1.0], "b": [2.0]})
    cv.models.log(AlwaysFails(), "churn", input_example=X, workspace=ws)  # churn/2 fails
    deployments = cv.serving.deployments(ws)
    deployments.create("prod", "churn@champion")
    deployments.canary("prod", "churn/2", 30, limits={"max_error_rate": 0.2})
    app = cv.serving.app(deployment="prod", workspace=ws, trust=True, reload_interval=0.1)
    with LiveServer(app) as server, Traffic(server.url, "prod", threads=2) as load:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the server itself runs revision 3
            if httpx.get(f"{server.url}/readyz").json()["revision"] == 3:
                break
            time.sleep(0.05)
        switched = time.monotonic()
        current = deployments.get("prod")
        assert current.change == "auto-rollback"
        assert "error rate" in current.reason
        time.sleep(0.5)
        after = load.sent_after(switched)  # not those in flight when the plan changed
    assert after
    assert {status for status, _, _ in after} == {200}
    assert current.routes == (
        {"model": "churn@champion", "weight": 100.0, "role": "primary", "version": "churn/1"},
    )
    assert current.created_by == "conveyor-server"


def test_deployment_mistakes_get_clear_errors(ws: Workspace, churn: Any) -> None:
    deployments = cv.serving.deployments(ws)
    with pytest.raises(NotFoundError, match="nope"):
        deployments.create("prod", "nope@champion")
    deployments.create("prod", "churn@champion")
    with pytest.raises(ConflictError, match="already exists"):
        deployments.create("prod", "churn/1")
    with pytest.raises(InvalidArgumentError, match="nothing to roll back"):
        deployments.rollback("prod")
    with pytest.raises(InvalidArgumentError, match="between 0 and 100"):
        deployments.canary("prod", "churn/1", 150)
    with pytest.raises(ConflictError, match="no canary"):
        deployments.promote("prod")
    with pytest.raises(NotFoundError, match=r"deployments: prod"):
        deployments.get("staging")
    with pytest.raises(InvalidArgumentError, match="Unknown canary limit"):
        deployments.canary("prod", "churn/1", 5, limits={"max_latency": 3})
    with pytest.raises(InvalidArgumentError, match="not valid"):
        deployments.create("Prod Server", "churn/1")
    assert [r.revision for r in deployments.history("prod")] == [1]  # nothing half-written


def test_a_canary_ab_or_shadow_of_the_primarys_own_version_is_refused(
    ws: Workspace, churn: Any
) -> None:
    deployments = cv.serving.deployments(ws)
    deployments.create("prod", "churn@champion")  # churn/1
    with pytest.raises(ConflictError) as caught:
        deployments.canary("prod", "churn/1", 10)
    assert str(caught.value) == (
        "Deployment 'prod' already serves churn/1 as its primary (through churn@champion); "
        "churn/1 as its canary would be compared with itself. Give another version of churn: "
        "conveyor deploy canary prod --model churn/VERSION --weight 10"
    )
    with pytest.raises(ConflictError, match="churn@champion as its shadow"):
        deployments.shadow("prod", "churn@champion")
    with pytest.raises(ConflictError, match="churn/1 as its A/B challenger"):
        deployments.ab("prod", "churn/1", 50, key="user")
    assert [r.revision for r in deployments.history("prod")] == [1]  # nothing written
    X, y = training_data()
    cv.models.log(LogisticRegression(C=0.1).fit(X, y), "churn", workspace=ws)
    assert deployments.canary("prod", "churn/2", 10).revision == 2  # another version: fine
    assert deployments.shadow("prod", "churn/2").revision == 3
    # Promoting the canary makes churn/2 the primary: its shadow would mirror it to itself.
    promoted = deployments.promote("prod")
    assert [(r["model"], r["role"]) for r in promoted.routes] == [("churn/2", "primary")]
    deployments.shadow("prod", "churn/1")
    served = deployments.serve("prod", "churn@champion")  # churn/1: the same again
    assert [(r["model"], r["role"]) for r in served.routes] == [("churn@champion", "primary")]
    deployments.shadow("prod", "churn/2")
    kept = deployments.serve("prod", "churn/1")  # a shadow of another version stays
    assert [r["role"] for r in kept.routes] == ["primary", "shadow"]


def test_onnx_optimization_serves_the_same_answers(ws: Workspace, churn: Any) -> None:
    pytest.importorskip("onnxruntime")
    body = rows(50, seed=3)
    with _client(ws) as native, _client(ws, optimize="onnx") as fast:
        ready = fast.http.get("/readyz").json()
        assert (ready["runtimes"], ready["optimize_fallbacks"]) == ({"churn/1": "onnx"}, {})
        assert fast.predict(body)["predictions"] == native.predict(body)["predictions"]


def test_onnx_falls_back_with_a_reason_when_it_cannot_convert(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    X = pd.DataFrame({"a": [1.0], "b": [2.0]})
    cv.models.log(Refuser(), "adder", input_example=X, workspace=ws)
    with _client(ws, "adder", trust=True, optimize="onnx") as client:
        ready = client.http.get("/readyz")
        assert ready.status_code == 200  # the original model serves: ready all the same
        assert ready.json()["runtimes"] == {"adder/1": "native"}
        assert ready.json()["optimize_fallbacks"] == {
            "adder/1": "ONNX: only scikit-learn models convert; this is python"
        }
        assert client.predict([{"a": 1.0, "b": 1.0}])["predictions"] == [2.0]
    assert "only scikit-learn models convert" in caplog.text


def test_build_writes_a_dockerfile_and_manifests_that_parse(
    ws: Workspace, churn: Any, tmp_path: Path
) -> None:
    out = tmp_path / "build"
    result = cv.serving.build("churn@champion", out, workspace=ws)
    dockerfile = (out / "Dockerfile").read_text()
    assert dockerfile.startswith("# Serves churn@serving")
    assert "FROM python:3.11-slim" in dockerfile
    assert "\nUSER 10001\n" in dockerfile
    assert "COPY --chown=10001:10001 workspace/" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert '"conveyor", "serve", "churn@serving"' in dockerfile
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert requirements[0].startswith("conveyor-mlops[serve]==")
    assert any(line.startswith("scikit-learn==") for line in requirements)
    docs = {p.name: yaml.safe_load(p.read_text()) for p in (out / "k8s").glob("*.yaml")}
    deployment = docs["deployment.yaml"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["kind"] == "Deployment"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}
    assert container["securityContext"]["runAsUser"] == 10001
    assert docs["service.yaml"]["spec"]["ports"][0]["targetPort"] == 8080
    assert docs["hpa.yaml"]["spec"]["scaleTargetRef"]["name"] == "churn"
    # the baked-in project serves the same model on its own
    # (its conveyor.toml names the project, as `conveyor serve` in the image reads it)
    with cv.Workspace.from_settings(out / "workspace") as baked:
        copy = cv.models.load("churn@serving", workspace=baked)
        X, _ = training_data(10)
        original = cv.models.load("churn/1", workspace=ws)
        assert copy.predict(X).tolist() == original.predict(X).tolist()
    assert result.model == "churn/1"
    with pytest.raises(InvalidArgumentError, match="not empty"):
        cv.serving.build("churn@champion", out, workspace=ws)
    assert cv.serving.build("churn/1", out, workspace=ws, force=True).model == "churn/1"
    mine = tmp_path / "mine"
    (mine / "notes").mkdir(parents=True)
    with pytest.raises(InvalidArgumentError, match="not a folder conveyor build wrote"):
        cv.serving.build("churn@champion", mine, workspace=ws, force=True)
    assert (mine / "notes").is_dir()  # --force never deletes a folder it did not write


def test_batch_predict_on_a_dataframe_keeps_row_order_and_rejects_bad_input(
    ws: Workspace, churn: Any, tmp_path: Path
) -> None:
    X, _ = training_data(300, seed=4)
    frame = cv.predict("churn@champion", X, chunk_rows=64, proba=True, workspace=ws)
    model = cv.models.load("churn@champion", workspace=ws).model
    assert frame["prediction"].tolist() == model.predict(X).tolist()
    np.testing.assert_allclose(frame[["proba_0", "proba_1"]], model.predict_proba(X))
    out = tmp_path / "bad.parquet"
    with pytest.raises(cv.models.SignatureError, match="column 'b'"):
        cv.predict("churn@champion", X[["a"]], output=out, workspace=ws)
    assert not out.exists()
    assert not list(tmp_path.glob(".bad.parquet*"))


def test_batch_output_mistakes_write_and_log_nothing_and_no_rows_still_write_a_file(
    ws: Workspace, churn: Any, tmp_path: Path
) -> None:
    X, _ = training_data(20, seed=5)
    clash = tmp_path / "clash.parquet"
    with pytest.raises(InvalidArgumentError, match="column 'prediction', which the output"):
        cv.predict("churn@champion", X.assign(prediction=0), output=clash, workspace=ws)
    with pytest.raises(InvalidArgumentError, match="is a folder"):
        cv.predict("churn@champion", X, output=tmp_path, workspace=ws)
    assert not clash.exists()
    assert len(cv.serving.read_predictions("churn-batch", workspace=ws)) == 0
    empty = tmp_path / "empty.parquet"
    done = cv.predict("churn@champion", X[:0], output=empty, workspace=ws)
    assert done.rows == 0
    written = pd.read_parquet(empty)
    assert written.empty
    assert list(written.columns) == [*X.columns, "prediction_id", "prediction"]  # as with rows


def test_a_model_with_feature_references_takes_entity_keys(ws: Workspace) -> None:
    from datetime import UTC, datetime

    from conveyor.features import DataFrameSource, Entity, FeatureView, Field

    day = datetime(2026, 1, 2, tzinfo=UTC)
    customer = Entity("customer", key="customer_id")
    activity = FeatureView(
        name="activity",
        entities=[customer],
        source=DataFrameSource(
            pd.DataFrame(
                {
                    "customer_id": [17, 42],
                    "ts": [day, day],
                    "txn_count": [5.0, 1.0],
                    "avg_amount": [24.0, 99.0],
                }
            ),
            timestamp="ts",
        ),
        features=[Field("txn_count", "float64"), Field("avg_amount", "float64")],
        ttl="30d",
    )
    cv.features.apply([customer, activity], workspace=ws)
    cv.features.materialize(["activity"], end=datetime(2026, 1, 3, tzinfo=UTC), workspace=ws)
    X = pd.DataFrame({"txn_count": [5.0, 1.0, 3.0, 0.0], "avg_amount": [24.0, 99.0, 50.0, 10.0]})
    model = LogisticRegression().fit(X, [1, 0, 1, 0])
    cv.models.log(
        model,
        "spend",
        input_example=X[:2],
        features=["activity:txn_count", "activity:avg_amount"],
        workspace=ws,
    )
    with _client(ws, "spend") as client:
        answer = client.predict([{"customer_id": 17}, {"customer_id": 42}])
        direct = client.predict(X[:2])  # features given: no lookup
        status, unknown = client.predict([{"customer_id": 7}], check=False)
    assert answer["features"] == [
        {"txn_count": 5.0, "avg_amount": 24.0},
        {"txn_count": 1.0, "avg_amount": 99.0},
    ]
    assert answer["predictions"] == model.predict(X[:2]).tolist() == direct["predictions"]
    assert "features" not in direct
    assert status == 422
    assert "no features for customer_id=7" in unknown["error"]
    # Each prediction that read features logs how old they were; a monitor reports it.
    logged = cv.serving.read_predictions(workspace=ws)
    read = logged["feature_age_s"].dropna()
    assert len(read) == 2  # the two rows that read the online store
    age = (datetime.now(UTC) - day).total_seconds()
    assert read.between(age - 120, age + 1).all()
    cv.data.add("spend-train", X, workspace=ws)
    cv.monitoring.create(
        "fresh", deployment="spend", reference="spend-train@1", max_feature_age="30d", workspace=ws
    )
    fresh = cv.monitoring.run("fresh", workspace=ws).service["feature_freshness"]
    assert fresh["rows"] == 2
    assert fresh["stale_share"] == 1.0  # materialized for a day long past
    assert fresh["max_s"] == pytest.approx(age, abs=120)


def test_a_change_based_on_a_stale_revision_is_refused(ws: Workspace, churn: Any) -> None:
    X, y = training_data()
    cv.models.log(LogisticRegression(C=0.1).fit(X, y), "churn", input_example=X[:5], workspace=ws)
    deployments = cv.serving.deployments(ws)
    deployments.create("prod", "churn@champion")
    deployments.canary("prod", "churn/2", 10)
    stale = deployments.get("prod")
    deployments.promote("prod")  # someone else changes it meanwhile
    with pytest.raises(ConflictError, match="revision 3 now, not 2"):
        deployments._revise("prod", list(stale.routes), None, {}, "canary", "", base=2)
    # the guard reads again: its canary is gone, so it changes nothing
    assert deployments.rollback_canary("prod", "churn/2", "error rate") is None
    assert deployments.get("prod").revision == 3


def test_batch_output_keeps_one_schema_when_a_later_file_has_nulls(
    ws: Workspace, churn: Any, tmp_path: Path
) -> None:
    X, _ = training_data(40, seed=6)
    folder = tmp_path / "in"
    folder.mkdir()
    X.head(20).assign(customer_id=range(20)).to_parquet(folder / "a.parquet")
    later = X.tail(20).assign(customer_id=[None] * 5 + list(range(20, 35)))
    later.to_parquet(folder / "b.parquet")
    result = cv.predict("churn@champion", folder, output=tmp_path / "out.parquet", workspace=ws)
    written = pd.read_parquet(tmp_path / "out.parquet")
    assert result.rows == len(written) == 40
    assert written["customer_id"].isna().sum() == 5
    assert written["customer_id"].dropna().tolist() == list(range(20)) + list(range(20, 35))
