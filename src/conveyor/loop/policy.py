"""What a continuous-training policy says: when to retrain, how to judge, how to roll out.

Plain frozen dataclasses, checked when made and stored as JSON (``to_dict`` / ``from_dict``),
so a policy applied from Python reads back the same from the store and the CLI.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from conveyor.core.durations import parse_duration
from conveyor.core.errors import InvalidArgumentError

__all__ = [
    "Canary",
    "Gate",
    "OnAlert",
    "OnDrift",
    "OnMetric",
    "OnNewData",
    "Policy",
    "Schedule",
    "Trigger",
]

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
_OPS = (">=", "<=", "==", "!=", ">", "<")
#: Metrics where lower is better (everything else a gate compares: higher is better).
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse", "mse", "brier", "calibration_error"})


def _text(value: str | timedelta) -> str:
    """A duration as text for the store (``timedelta(minutes=10)`` -> ``"600s"``)."""
    if not isinstance(value, timedelta):
        return value
    seconds = value.total_seconds()
    return f"{int(seconds)}s" if seconds.is_integer() else f"{seconds!r}s"


def _seconds(value: str | timedelta, what: str) -> float:
    span = value if isinstance(value, timedelta) else parse_duration(value)
    if span.total_seconds() < 0:
        raise InvalidArgumentError(f"{what} cannot be negative; got {value!r}.")
    return span.total_seconds()


@dataclass(frozen=True)
class Schedule:
    """Retrain on a cron schedule (UTC), e.g. ``Schedule("0 3 * * 0")``: Sundays at 03:00."""

    cron: str

    def __post_init__(self) -> None:
        from croniter import croniter

        if not isinstance(self.cron, str) or not croniter.is_valid(self.cron):
            raise InvalidArgumentError(
                f"Schedule({self.cron!r}): not a cron expression.", hint="e.g. '0 3 * * 0'"
            )

    def describe(self) -> str:
        return f"schedule {self.cron}"


@dataclass(frozen=True)
class OnDrift:
    """Retrain when a result of ``monitor`` shows data drift: at least ``min_share`` of its
    columns drifted (default: the monitor's own dataset verdict)."""

    monitor: str
    min_share: float | None = None

    def __post_init__(self) -> None:
        if self.min_share is not None and not 0 < float(self.min_share) <= 1:
            raise InvalidArgumentError(
                f"OnDrift(min_share={self.min_share!r}): a share between 0 and 1."
            )

    def describe(self) -> str:
        what = f"share drifted >= {self.min_share:g}" if self.min_share else "dataset drifted"
        return f"drift on {self.monitor} ({what})"


@dataclass(frozen=True)
class OnMetric:
    """Retrain when a field of a result of ``monitor`` crosses a threshold, e.g.
    ``OnMetric("prod-watch", "performance.roc_auc", "<", 0.80)``."""

    monitor: str
    field: str
    op: str
    value: float

    def __post_init__(self) -> None:
        from conveyor.monitoring.alerting import parse_rule

        if self.op not in _OPS:
            raise InvalidArgumentError(f"OnMetric op must be one of {' '.join(_OPS)}.")
        parse_rule(f"{self.field} {self.op} {float(self.value)!r}")  # the field must be readable

    def describe(self) -> str:
        return f"{self.monitor}: {self.field} {self.op} {self.value:g}"


@dataclass(frozen=True)
class OnAlert:
    """Retrain when an alert of ``monitor`` opens."""

    monitor: str

    def describe(self) -> str:
        return f"alert on {self.monitor}"


@dataclass(frozen=True)
class OnNewData:
    """Retrain when dataset ``dataset`` gets a new version."""

    dataset: str

    def describe(self) -> str:
        return f"new version of {self.dataset}"


Trigger = Schedule | OnDrift | OnMetric | OnAlert | OnNewData
_TRIGGERS: dict[str, type[Any]] = {
    "schedule": Schedule,
    "drift": OnDrift,
    "metric": OnMetric,
    "alert": OnAlert,
    "new_data": OnNewData,
}
_KIND_OF = {cls: kind for kind, cls in _TRIGGERS.items()}


@dataclass(frozen=True)
class Gate:
    """The candidate must beat the champion on the same data, and pass ``checks``.

    ``metric``: what to compare (default: ROC AUC for classifiers, RMSE for regressors);
    ``data``: a dataset version with the target (``"customers@latest"``); ``target``: its
    label column (default: the one column the model does not take); ``min_delta``: how much
    better the candidate must be (0: at least as good); ``against``: ``"champion"`` (what the
    deployment serves) or ``"none"``. ``checks``: ``"validation"`` (the data passes its saved
    schema), ``"signature"`` (inputs compatible with the champion's),
    ``"fairness:demographic_parity_difference<0.1"`` (over ``sensitive`` columns),
    ``"latency_p99_ms<50"`` (one-row predictions, measured here).
    """

    data: str
    metric: str | None = None
    target: str | None = None
    min_delta: float = 0.0
    against: str = "champion"
    checks: tuple[str, ...] = ()
    sensitive: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "checks", tuple(self.checks))
        object.__setattr__(self, "sensitive", tuple(self.sensitive))
        if self.against not in ("champion", "none"):
            raise InvalidArgumentError(f"Gate(against={self.against!r}): champion or none.")
        for check in self.checks:
            parse_check(check)
        if any(c.startswith("fairness:") for c in self.checks) and not self.sensitive:
            raise InvalidArgumentError(
                "A fairness check needs the sensitive column(s): Gate(sensitive=['segment'])."
            )


def parse_check(check: str) -> tuple[str, str | None, str | None, float | None]:
    """``"validation"`` -> (validation, None, None, None); ``"latency_p99_ms<50"`` ->
    (latency, latency_p99_ms, <, 50); ``"fairness:X<0.1"`` -> (fairness, X, <, 0.1)."""
    if check in ("validation", "signature"):
        return check, None, None, None
    found = re.fullmatch(r"(fairness:)?([a-z_0-9]+)\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)", check)
    if found is None or (found.group(1) is None and found.group(2) != "latency_p99_ms"):
        raise InvalidArgumentError(
            f"Unknown gate check {check!r}.",
            hint="Checks: validation, signature, latency_p99_ms<MS, "
            "fairness:demographic_parity_difference<X (also tpr_gap, fpr_gap).",
        )
    kind = "fairness" if found.group(1) else "latency"
    return kind, found.group(2), found.group(3), float(found.group(4))


@dataclass(frozen=True)
class Canary:
    """Step the candidate's share of traffic through ``steps`` (percent), holding each for
    ``hold``; roll back when the server's guard trips (``max_error_rate``, ``max_p99_ms``) or,
    at the end of a hold, when the candidate's logged latency or ``min_metric`` on labelled
    predictions (e.g. ``("roc_auc", ">=", 0.80)``) breaks. A hold lasts until at least
    ``min_rows`` predictions (and ``min_labels`` labels, for ``min_metric``) of the candidate
    were logged, for at most ``judge_within`` past its end (default: twice the hold plus a
    minute, time for the server's log and late labels to land); a canary still not judged
    then is rolled back, never promoted."""

    steps: tuple[float, ...] = (10.0, 50.0, 100.0)
    hold: str | timedelta = "10m"
    max_error_rate: float | None = None
    max_p99_ms: float | None = None
    min_metric: tuple[str, str, float] | None = None
    min_labels: int = 30
    min_rows: int = 1
    judge_within: str | timedelta | None = None

    def __post_init__(self) -> None:
        steps = tuple(float(s) for s in self.steps)
        object.__setattr__(self, "steps", steps)
        if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(steps):
            raise InvalidArgumentError(
                f"Canary steps must rise within (0, 100]; got {list(self.steps)}."
            )
        _seconds(self.hold, "Canary hold")
        object.__setattr__(self, "hold", _text(self.hold))
        if self.judge_within is not None:
            _seconds(self.judge_within, "Canary judge_within")
            object.__setattr__(self, "judge_within", _text(self.judge_within))
        if not isinstance(self.min_rows, int) or self.min_rows < 0:
            raise InvalidArgumentError(f"Canary min_rows is a count >= 0; got {self.min_rows!r}.")
        if self.min_metric is not None:
            metric: tuple[Any, ...] = tuple(self.min_metric)
            if len(metric) != 3 or metric[1] not in _OPS:
                raise InvalidArgumentError(
                    f"Canary min_metric is (metric, op, value), e.g. ('roc_auc', '>=', 0.8); "
                    f"got {self.min_metric!r}."
                )
            object.__setattr__(self, "min_metric", (str(metric[0]), metric[1], float(metric[2])))

    @property
    def hold_seconds(self) -> float:
        return _seconds(self.hold, "Canary hold")

    @property
    def deadline_seconds(self) -> float:
        """How long after a step starts it may wait for enough predictions and labels."""
        if self.judge_within is not None:
            return self.hold_seconds + _seconds(self.judge_within, "Canary judge_within")
        return 3 * self.hold_seconds + 60

    @property
    def limits(self) -> dict[str, float]:
        found = {"max_error_rate": self.max_error_rate, "max_p99_ms": self.max_p99_ms}
        return {k: float(v) for k, v in found.items() if v is not None}


@dataclass(frozen=True)
class Policy:
    """A continuous-training policy for ``deployment``.

    ``pipeline`` (``MODULE:PIPELINE``) runs with ``params`` when a trigger fires and must
    register a new version of ``model`` (default: the model the deployment serves). The
    candidate is gated, approved (``"auto"``, or ``"required"``: a promotion request a person
    approves with ``conveyor models approve``), rolled out (a :class:`Canary`, or ``None`` to
    promote at once) and promoted or rolled back. ``cooldown``: no new execution sooner than
    this after the last one started, however many triggers fire.
    """

    name: str
    deployment: str
    pipeline: str
    params: dict[str, Any] = field(default_factory=dict)
    triggers: tuple[Trigger, ...] = ()
    gate: Gate | None = None
    approval: str = "auto"
    rollout: Canary | None = field(default_factory=Canary)
    cooldown: str | timedelta = "6h"
    model: str | None = None
    executor: str = "local"
    cache: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "triggers", tuple(self.triggers))
        for what, value in (("policy", self.name), ("deployment", self.deployment)):
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                raise InvalidArgumentError(
                    f"The {what} name {value!r} is not valid: 1 to 100 lowercase letters, "
                    "digits, '.', '_' or '-'."
                )
        if not isinstance(self.pipeline, str) or ":" not in self.pipeline:
            raise InvalidArgumentError(
                f"Policy pipeline is MODULE:PIPELINE; got {self.pipeline!r}.",
                hint="e.g. pipeline='examples.churn.pipeline:train'",
            )
        if self.approval not in ("auto", "required"):
            raise InvalidArgumentError(f"approval is 'auto' or 'required'; got {self.approval!r}.")
        for trigger in self.triggers:
            if type(trigger) not in _KIND_OF:
                raise InvalidArgumentError(
                    f"{trigger!r} is not a trigger: use Schedule, OnDrift, OnMetric, OnAlert "
                    "or OnNewData."
                )
        _seconds(self.cooldown, "Policy cooldown")
        object.__setattr__(self, "cooldown", _text(self.cooldown))

    @property
    def cooldown_seconds(self) -> float:
        return _seconds(self.cooldown, "Policy cooldown")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["triggers"] = [{"kind": _KIND_OF[type(t)], **asdict(t)} for t in self.triggers]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        values = dict(data)
        values["triggers"] = tuple(
            _TRIGGERS[t["kind"]](**{k: v for k, v in t.items() if k != "kind"})
            for t in values.get("triggers", [])
        )
        if values.get("gate") is not None:
            values["gate"] = Gate(**values["gate"])
        if values.get("rollout") is not None:
            rollout = dict(values["rollout"])
            if rollout.get("min_metric") is not None:
                rollout["min_metric"] = tuple(rollout["min_metric"])
            values["rollout"] = Canary(**rollout)
        return cls(**values)


def policy_from_wire(data: Any, *, pipelines: Sequence[str] = ()) -> Policy:
    """The policy a team server's caller sent (``Policy.to_dict()``), checked.

    Checking a policy imports its pipeline, and the loop controller runs it, so a caller may
    name only ``package.module:name`` under one of ``pipelines``, the module prefixes the
    server's administrator allows (``conveyor server --pipelines``); no file path, no
    private module. The executor is ``inline``, ``local``, ``local:N`` (N <= 32) or ``ray``
    (the controller's own cluster), and every field has its declared type.
    """
    try:
        policy = Policy.from_dict(data)
    except InvalidArgumentError:
        raise
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise InvalidArgumentError(
            f"policy: not a policy ({type(e).__name__}: {e}).",
            hint="Send Policy(...).to_dict(), as cv.loop.apply does through a server.",
        ) from None
    from conveyor.pipelines.launch import check_executor, check_installed

    check_types(policy, "policy")
    check_installed(policy.pipeline, pipelines, what="policy.pipeline")
    check_executor(policy.executor, what="policy.executor")
    return policy


def check_types(obj: Any, where: str) -> None:
    """Refuse a dataclass (and the dataclasses it holds) whose fields break their declared
    types: what JSON built must not fail later, inside the controller."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        if not _fits(value, hint):
            raise InvalidArgumentError(f"{where}.{f.name} is {value!r}; expected {_shown(hint)}.")
        items = value if isinstance(value, tuple | list) else (value,)
        for i, item in enumerate(items):
            if dataclasses.is_dataclass(item) and not isinstance(item, type):
                check_types(item, f"{where}.{f.name}" + (f"[{i}]" if item is not value else ""))


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        if not isinstance(value, tuple | list):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(
            _fits(v, a) for v, a in zip(value, args, strict=True)
        )
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _shown(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("datetime.", "")


def trigger_kind(trigger: Trigger) -> str:
    return _KIND_OF[type(trigger)]
