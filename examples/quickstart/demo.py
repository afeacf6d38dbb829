"""Conveyor end to end on the embedded default: data, tracked training, tuning, lineage.

Run with ``make demo`` (or ``python examples/quickstart/demo.py [FOLDER]``). It works in a
fresh project folder (default ``.demo/quickstart``): SQLite metadata and a local
content-addressed artifact store, no server. The data is scikit-learn's bundled breast
cancer table (569 rows, 30 features); nothing is downloaded.

Until serving and monitoring land, this is the most complete job Conveyor runs: store a
dataset, train and compare models in tracked runs (autolog), tune one with Optuna (each
trial a child run), register the best in the model registry, promote a challenger through
an approval, retrain as a cached pipeline, and trace the champion back to its data.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import conveyor as cv

FOLDER = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".demo") / "quickstart"


# -- the training job as a pipeline: each step a tracked run, its outputs cached ------------


@cv.step
def load_table(ref: str) -> pd.DataFrame:
    return cv.data.load(ref)  # recorded: a new version of the dataset invalidates this step


@cv.step
def split_table(df: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = train_test_split(df, test_size=0.25, random_state=seed, stratify=df["target"])
    return train, test


@cv.step
def fit_forest(train: pd.DataFrame, n_estimators: int = 50) -> RandomForestClassifier:
    model = RandomForestClassifier(n_estimators=n_estimators, random_state=0)
    return model.fit(train.drop(columns="target"), train["target"])


@cv.step
def score(model: RandomForestClassifier, test: pd.DataFrame) -> float:
    proba = model.predict_proba(test.drop(columns="target"))[:, 1]
    auc = float(roc_auc_score(test["target"], proba))
    cv.log_metric("val_auc", auc)
    return auc


@cv.pipeline(name="cancer-train")
def retrain(ref: str = "breast-cancer@latest", n_estimators: int = 50):
    train, test = split_table(load_table(ref))
    score(fit_forest(train, n_estimators=n_estimators), test)


def say(text: str) -> None:
    """Print one step of the demo."""
    print(f"\n== {text}", flush=True)


def cli(*args: str) -> None:
    """Run the conveyor command line in the demo folder, showing the command."""
    print(f"$ conveyor {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "conveyor", *args], cwd=FOLDER, check=True)


def main() -> None:
    """Run the demo."""
    marker = FOLDER / ".conveyor-demo"
    ours = marker.exists() or FOLDER.resolve() == Path(".demo", "quickstart").resolve()
    if FOLDER.exists() and any(FOLDER.iterdir()) and not ours:
        raise SystemExit(f"{FOLDER} holds files this demo did not write; give an empty folder.")
    shutil.rmtree(FOLDER, ignore_errors=True)  # a previous run of the demo
    FOLDER.mkdir(parents=True)
    marker.touch()
    say(f"A new project in {FOLDER}")
    cli("init", "--project", "cancer")
    ws = cv.init(FOLDER)

    say("Version the dataset: stored by content, profiled once, with an inferred schema")
    version = cv.data.add(
        "breast-cancer", load_breast_cancer(as_frame=True).frame, description="sklearn copy"
    )
    print(f"{version.ref}: {version.rows} rows, {version.size:,} bytes, {version.digest[:12]}")
    cv.data.infer_schema(version.ref)
    cli("data", "show", version.ref)

    say("Validate new data against the schema before it reaches training")
    suspicious = cv.data.load(version.ref).head(100).copy()
    suspicious.loc[3, "mean radius"] = -1.0
    print(cv.data.validate(suspicious, cv.data.schema(version.ref)).summary())
    cli("data", "validate", version.ref)
    dataset = cv.ObjectRef("dataset_version", version.id)

    say("Train two models; autolog records params, training metrics and the model")
    cv.autolog()
    candidates = {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "forest": RandomForestClassifier(n_estimators=100, max_depth=6, random_state=0),
    }
    for name, model in candidates.items():
        with cv.start_run(experiment="cancer", name=name, tags={"stage": "baseline"}) as run:
            frame = cv.data.load(version.ref)  # records that this run used the version
            x, y = frame.drop(columns="target"), frame["target"]
            x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.3, random_state=0)
            model.fit(x_train, y_train)
            val_auc = roc_auc_score(y_val, model.predict_proba(x_val)[:, 1])
            cv.log_metric("val_auc", val_auc)
        print(f"{name}: val_auc {val_auc:.4f} (run {run.id})")

    say("Tune the forest with Optuna: 8 trials, 2 at a time, each a child run")
    cv.autolog(disable=True)

    def objective(params: dict) -> float:
        model = RandomForestClassifier(**params, random_state=0).fit(x_train, y_train)
        return roc_auc_score(y_val, model.predict_proba(x_val)[:, 1])

    result = cv.tune(
        objective,
        {"n_estimators": (20, 200), "max_depth": (2, 12), "min_samples_leaf": [1, 2, 4]},
        n_trials=8,
        parallel=2,
        experiment="cancer",
        metric="val_auc",
        seed=0,
        progress=False,
    )
    print(f"best val_auc {result.best_value:.4f} with {result.best_params}")
    with ws.metadata.transaction(project_id=ws.project.id) as uow:
        uow.link(dataset, cv.ObjectRef("run", result.parent_run_id), "used_by")
        uow.link(
            cv.ObjectRef("run", result.parent_run_id),
            cv.ObjectRef("run", result.best_run_id),
            "selected",
        )

    say("Register the tuned forest and make it champion; guard the alias with an approval")
    with cv.start_run(experiment="cancer", name="register-forest"):
        frame = cv.data.load(version.ref)  # the registered model's lineage reaches the data
        forest = RandomForestClassifier(**result.best_params, random_state=0)
        forest.fit(x_train, y_train)
        cv.log_metric("val_auc", roc_auc_score(y_val, forest.predict_proba(x_val)[:, 1]))
        champion = cv.models.log(forest, "cancer", input_example=x_val[:5])
    cv.models.set_alias("cancer", "champion", champion.version)
    cv.models.require_approval("cancer")
    challenger = cv.models.log(candidates["logreg"], "cancer", input_example=x_val[:5])
    request = cv.models.request_promotion(challenger.ref, "champion", comment="simpler model")
    print(f"{request.id}: {challenger.ref} -> @champion is {request.status}; checks:")
    for check in request.checks:
        print(f"  {check['name']}: {check['status']} ({check['detail']})")
    reviewer = cv.Workspace.from_settings(FOLDER, actor="reviewer")
    cv.models.reject(request.id, comment="keep the tuned forest", workspace=reviewer)
    reviewer.close()
    loaded = cv.models.load("cancer@champion")  # verified against its digest, skops-loaded
    print(f"cancer@champion is {loaded.version.ref}; predicts {loaded.predict(x_val[:5])}")
    cli("models", "show", "cancer@champion")
    cli("models", "history", "cancer")

    say("Serve the champion behind a deployment; put the challenger on a 20% canary")
    cv.serving.deployments().create("web", "cancer@champion")
    cv.serving.deployments().canary("web", challenger.ref, 20, limits={"max_error_rate": 0.05})
    from conveyor.testing import ModelServerClient

    rows = x_val.head(40).to_dict(orient="records")
    with ModelServerClient(deployment="web") as server:  # the HTTP app, in process
        served = [server.predict([row], name="web") for row in rows]
        bad = server.predict([{**rows[0], "mean radius": "big"}], name="web", check=False)
    split = {
        v: sum(a["model_version"] == v for a in served) for v in (champion.ref, challenger.ref)
    }
    print(f"40 requests answered by {split}; a bad row got HTTP {bad[0]}: {bad[1]['error']}")
    print(f"{len(cv.serving.read_predictions('web'))} predictions logged for monitoring")
    batch = cv.predict("cancer@champion", x_val)
    print(f"batch-predicted {len(batch)} validation rows")
    cli("deploy", "status", "web")

    say("Monitor the deployment: drift against the training data, late labels, an alert rule")
    cv.monitoring.create("web-watch", deployment="web", reference=version.ref)
    cv.monitoring.alert_rule("web-watch", "performance.accuracy < 0.9")
    labels = [
        {"prediction_id": a["prediction_ids"][0], "label": int(y_val.iloc[i])}
        for i, a in enumerate(served)
    ]
    cv.monitoring.log_labels(labels, deployment="web")
    watched = cv.monitoring.run("web-watch")
    accuracy = watched.performance.get("accuracy")
    print(
        f"{watched.rows} predictions checked: {len(watched.drift['drifted_columns'])} of "
        f"{len(watched.drift['columns'])} columns drifted from the training data; accuracy on "
        f"{watched.performance['labelled_rows']} late labels {accuracy:.3f}; "
        f"{len(watched.alerts)} alert(s)"
    )
    cli("monitor", "report", "web-watch", "--out", "monitoring-report.html")

    say("Retrain as a pipeline; run it again and every step comes from the cache")
    first = retrain.run(n_estimators=60)  # steps run in worker processes
    print({s.name: str(s.status) for s in first.steps}, f"val_auc {first.outputs['score']:.4f}")
    again = retrain.run(n_estimators=60)
    print({s.name: str(s.status) for s in again.steps}, f"in {again.duration:.2f} s")
    cli("pipeline", "show", again.id)

    say("Find the best runs (filter language, ordering)")
    best = cv.search_runs(
        experiment="cancer",
        filter="metrics.val_auc > 0.9",
        order_by=["metrics.val_auc desc"],
        limit=3,
    )
    print(best[["name", "status", "metrics.val_auc"]].to_string(index=False))
    cli("runs", "list", "-e", "cancer", "-o", "metrics.val_auc desc", "-n", "5")

    say("Compare the two best trials side by side (differences highlighted)")
    trials = cv.search_runs(
        experiment="cancer",
        filter="attributes.name LIKE 'trial-%'",
        order_by=["metrics.val_auc desc"],
        limit=2,
    )
    cli("runs", "compare", *trials["run_id"])

    say("Where did the best tuned model come from?")
    cli("lineage", f"run:{result.best_run_id}", "--upstream")

    say("Who changed what (the audit log)")
    cli("audit", "--limit", "5")

    say("Garbage collection keeps everything a record points at")
    gc = ws.gc(grace=timedelta(0), dry_run=True)
    print(f"{gc.scanned} objects stored, {len(gc.deleted)} unreferenced")

    cli("info")
    ws.close()
    print(
        "\nDone. Conveyor stored a dataset, tracked 2 trained models and an 8-trial search "
        "with their params, metrics and models, registered the best as cancer@champion "
        "(a challenger's promotion rejected in review), served it behind a canary with every "
        "prediction logged and monitored, ran a 4-step training pipeline twice (the "
        "second time from its cache), and traced the best model back to its "
        f"data, all in {FOLDER}/.conveyor. Explore it: cd {FOLDER} && conveyor models list"
    )


if __name__ == "__main__":
    main()
