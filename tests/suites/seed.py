"""Rows written straight into a store, for tests of what reads them (not of what writes them)."""

from __future__ import annotations

import pandas as pd

import conveyor as cv
from conveyor.core.clock import utcnow
from conveyor.store.metadata.schema import alert_rules, alerts, monitors
from conveyor.store.metadata.store import UnitOfWork
from conveyor.store.workspace import Workspace


def open_alert(
    uow: UnitOfWork, project_id: str, alert_id: str, *, monitor: str = "m", deployment: str = "d"
) -> None:
    """Add a monitor, a rule and an open alert ``alert_id`` of that rule to the project."""
    now = utcnow()
    monitor_id, rule_id = f"MON-{alert_id}", f"RULE-{alert_id}"
    uow.conn.execute(
        monitors.insert().values(
            id=monitor_id,
            project_id=project_id,
            name=monitor,
            deployment=deployment,
            reference="customers@1",
            window_seconds=3600,
            config={},
            created_at=now,
            created_by="t",
        )
    )
    uow.conn.execute(
        alert_rules.insert().values(
            id=rule_id,
            monitor_id=monitor_id,
            expression="drift.share_drifted > 0.3",
            cooldown_seconds=0,
            notify=[],
            created_at=now,
            created_by="t",
        )
    )
    uow.conn.execute(
        alerts.insert().values(
            id=alert_id,
            rule_id=rule_id,
            status="open",
            value=0.5,
            message="drifted",
            result_id="R",
            opened_at=now,
            last_seen_at=now,
            deliveries=[],
        )
    )


@cv.step
def _load_customers() -> pd.DataFrame:
    return cv.data.load("customers@1")


@cv.step
def _double(frame: pd.DataFrame) -> float:
    print(f"doubling the spend of {len(frame)} customers <b>")
    return float(frame["spend"].sum() * 2)


@cv.pipeline(name="double-spend")
def _double_spend() -> None:
    _double(_load_customers())


def _figure(data: pd.DataFrame) -> object:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3))
    figure.add_subplot().hist(data["spend"], bins=20)
    return figure


def ui_project(ws: Workspace, *, points: int = 200) -> dict[str, str]:
    """A project as the web UI shows it: runs with params and metric histories, two versions
    of a dataset, a model trained on it in two versions with @champion on the first and a
    pending request to move it, a deployment, a monitor and an open alert. Returns the ids
    the tests open."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import conveyor as cv
    from conveyor.features import DatasetSource, Entity, FeatureView, Field
    from conveyor.models.service import model_service
    from conveyor.monitoring.service import monitoring_service
    from conveyor.serving.deployment import deployment_service
    from conveyor.store.workspace import use_workspace
    from conveyor.testing import ModelServerClient

    use_workspace(ws)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 400), "spend": rng.gamma(2.0, 30.0, 400)})
    frame["plan"] = rng.choice(["basic", "pro", "team"], 400)
    frame["churned"] = (frame["spend"] < 40).astype(int)
    frame["customer_id"] = np.arange(400)
    frame["event_ts"] = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(np.arange(400), "h")
    first = cv.data.add("customers", frame, description="weekly extract")
    cv.data.infer_schema("customers@1")  # saved with it: version 2 is checked against it
    cv.data.add("customers", frame.assign(spend=frame["spend"] * 1.3))
    ids: dict[str, str] = {"dataset_version": first.id}
    for i, c in enumerate((0.1, 1.0, 10.0)):
        with cv.start_run(experiment="churn", name=f"logreg-c{c}") as run:
            cv.log_params({"C": c, "solver": "lbfgs", "depth": 3 + i})
            for step in range(points):
                cv.log_metric("loss", 1.0 / (step + 1) + 0.01 * i, step=step)
            cv.log_metric("auc", 0.7 + 0.05 * i)
            data = cv.data.load("customers@1")
            model = LogisticRegression(C=c, max_iter=200).fit(
                data[["age", "spend"]], data["churned"]
            )
            if i < 2:
                cv.models.log(model, "churn", input_example=data[["age", "spend"]][:5])
            if i == 0:
                cv.log_dict({"C": c, "features": ["age", "spend"]}, "config.json")
                cv.log_table(data.head(30), "sample.parquet")
                cv.log_figure(_figure(data), "spend.png")
        ids.setdefault("run", run.id)
    with cv.start_run(experiment="churn", name="<script>alert(1)</script>"):
        cv.log_metric("auc", 0.5)
    customer = Entity("customer", key="customer_id")
    spend = FeatureView(
        name="spend_view",
        entities=[customer],
        source=DatasetSource("customers@1"),
        features=[Field("spend", "float64")],
        ttl="30d",
    )
    cv.features.apply([customer, spend])
    entities = frame[["customer_id"]].assign(event_timestamp=pd.Timestamp("2026-12-01", tz="UTC"))
    with cv.start_run(experiment="features", name="training-set"):
        cv.features.historical(entities.head(50), ["spend_view:spend"])
    ids["pipeline_run"] = _double_spend.run(executor="inline").id
    models = model_service(ws)
    models.set_alias("churn", "champion", 1)
    ids["request"] = models.request_promotion("churn/2", "champion", comment="better AUC").id
    deployments = deployment_service(ws)
    deployments.create("prod", "churn@champion")
    deployments.canary("prod", "churn/2", 10.0)
    with ModelServerClient(deployment="prod", workspace=ws) as client:
        for i in range(40):  # traffic for the deployment's charts and a monitor window
            client.predict(frame[["age", "spend"]].iloc[i : i + 5], name="prod")
        status, _ = client.predict(frame[["age"]].iloc[:2], name="prod", check=False)
        assert status == 422, status  # a refused payload, for the failures chart
    monitors = monitoring_service(ws)
    monitors.create("prod-watch", deployment="prod", reference="customers@1")
    monitors.run("prod-watch")
    with ws.metadata.transaction(project_id=ws.project.id) as uow:
        open_alert(uow, ws.project.id, "ALERT-1", monitor="prod-drift", deployment="prod")
    return ids
