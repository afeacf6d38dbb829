"""A seeded generator of customer data with a real change of behaviour over time.

Each week has customers (one row each: tenure, spend, support calls, days since last login,
plan, segment) and whether they churned. Up to ``SHIFT_WEEK`` churn follows one pattern;
from then on a price change makes spend matter far more, support calls matter less, and a
new ``student`` segment arrives with low spend and short tenure. A model trained on the
early weeks is wrong about the later ones in a way drift checks and late labels both show.
Nothing is downloaded: the same seed gives the same rows on every machine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

SHIFT_WEEK = 3
#: The columns served from the feature store (the ``activity`` view), by customer id.
ACTIVITY = ["support_calls", "days_since_login"]
#: What a request sends itself; the server adds the activity features.
PROFILE = ["tenure_months", "monthly_spend", "plan", "segment"]
FEATURES = [
    "tenure_months",
    "monthly_spend",
    "support_calls",
    "days_since_login",
    "plan",
    "segment",
]
TARGET = "churned"


def week_time(week: int) -> datetime:
    """When week ``week``'s rows were observed: the weeks are compressed into the last days
    (week 5 is today), so the feature store's values are recent."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=5 - week)


def customers(week: int, n: int = 4000, *, seed: int = 0) -> pd.DataFrame:
    """The customers of ``week`` (1-based), every column, with the label ``churned`` (0 or 1)
    and the time they were observed (``event_timestamp``); ids differ by week and seed."""
    rng = np.random.default_rng(seed * 1000 + week)
    shifted = week >= SHIFT_WEEK
    segments = ["consumer", "business"] + (["student"] if shifted else [])
    weights = [0.65, 0.35] if not shifted else [0.45, 0.25, 0.30]
    segment = rng.choice(segments, n, p=weights)
    student = segment == "student"
    business = segment == "business"
    tenure = np.where(student, rng.gamma(1.5, 4.0, n), rng.gamma(2.5, 10.0, n)).round(1)
    spend = np.where(
        student,
        rng.normal(22, 6, n),
        np.where(business, rng.normal(95, 25, n), rng.normal(55, 15, n)),
    ).clip(5, None)
    if shifted:
        spend = spend * 1.15  # the price change
    calls = rng.poisson(np.where(business, 1.2, 2.0), n)
    login = rng.exponential(np.where(student, 4.0, 9.0), n).round(0)
    plan = np.where(spend > 80, "pro", np.where(spend > 40, "plus", "basic"))
    if not shifted:
        score = -2.0 + 1.3 * calls + 0.15 * login - 0.09 * tenure - 0.01 * spend
    else:  # after the price change: spend drives churn, support calls barely matter
        score = -1.6 + 0.2 * calls + 0.12 * login - 0.06 * tenure + 0.09 * (spend - 55)
        score = score + 2.0 * student
    churned = rng.random(n) < 1 / (1 + np.exp(-score))
    return pd.DataFrame(
        {
            "customer_id": np.arange(n) + week * 1_000_000 + seed * 10_000,
            "event_timestamp": pd.Timestamp(week_time(week)),
            "tenure_months": tenure,
            "monthly_spend": spend.round(2),
            "support_calls": calls,
            "days_since_login": login,
            "plan": plan,
            "segment": segment,
            TARGET: churned.astype(int),
        }
    )


def activity(frame: pd.DataFrame) -> pd.DataFrame:
    """The activity events of ``frame``'s customers: what the ``activity`` feature view reads."""
    return frame[["customer_id", "event_timestamp", *ACTIVITY]].rename(
        columns={"event_timestamp": "event_ts"}
    )


def profile(frame: pd.DataFrame) -> pd.DataFrame:
    """The customers without their activity: what a churn dataset version holds."""
    return frame.drop(columns=ACTIVITY)
