"""The churn model's training pipeline: customers joined with their activity features (point
in time), split, fit, score, register.

Each step is a tracked run. The training table is kept as a dataset version
(``churn-training``: the monitor's reference) and the fitted model is registered as a new
version of ``churn`` with its input example (so it has a signature) and the feature-store
features it reads, so the server fills those in from the online store by customer id.
``conveyor pipeline run examples/churn/pipeline.py:train -p data=customers@2`` runs it by
hand.
"""

from __future__ import annotations

import pandas as pd

import conveyor as cv

FEATURES = [
    "tenure_months",
    "monthly_spend",
    "support_calls",
    "days_since_login",
    "plan",
    "segment",
]


ONLINE = ["activity:support_calls", "activity:days_since_login"]


@cv.step
def load(data: str) -> pd.DataFrame:
    """The customers of ``data`` with their activity as it was when each was observed."""
    customers = cv.data.load(data)  # recorded: the run used this dataset version
    features = cv.features.historical(customers[["customer_id", "event_timestamp"]], ONLINE)
    table = customers.assign(**{f.split(":")[1]: features[f.split(":")[1]] for f in ONLINE})
    cv.data.add("churn-training", table, description=f"{data} with its activity features")
    return table


@cv.step
def split(frame: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        frame, test_size=0.25, random_state=seed, stratify=frame["churned"]
    )
    return train, test


@cv.step
def fit_and_register(train: pd.DataFrame, test: pd.DataFrame) -> str:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["plan", "segment"]),
            remainder="passthrough",
        ),
        HistGradientBoostingClassifier(max_iter=120, learning_rate=0.1, random_state=0),
    )
    model.fit(train[FEATURES], train["churned"])
    auc = float(roc_auc_score(test["churned"], model.predict_proba(test[FEATURES])[:, 1]))
    cv.log_metric("val_auc", auc)
    version = cv.models.log(model, "churn", input_example=train[FEATURES].head(5), features=ONLINE)
    return version.ref


@cv.pipeline(name="churn-train")
def train(data: str = "customers@latest") -> None:
    first, second = split(load(data))
    fit_and_register(first, second)
