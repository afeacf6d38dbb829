"""Hyperparameter search with Optuna, every trial a child run of one parent run.

>>> import conveyor as cv
>>> def objective(params):
...     return -(params["x"] - 2) ** 2
>>> result = cv.tune(objective, {"x": (-5.0, 5.0)}, n_trials=20)  # doctest: +SKIP
>>> round(result.best_params["x"])  # doctest: +SKIP
2

The search space maps each param to:

- ``(low, high)`` of ints: an integer range; of floats: a uniform float range;
- ``(low, high, "log")``: the same range sampled on a log scale;
- a list: categorical choices;
- an ``optuna.distributions`` object, used as given.
"""

from __future__ import annotations

import contextvars
import math
import numbers
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from conveyor.core.errors import InvalidArgumentError
from conveyor.tracking.records import RunStatus
from conveyor.tracking.runs import ActiveRun, active_run, tracker

__all__ = ["TuneResult", "tune"]


@dataclass(frozen=True, slots=True)
class TuneResult:
    """The best trial of a search, and where every trial is recorded."""

    best_params: dict[str, Any]
    best_value: float
    best_run_id: str
    parent_run_id: str
    n_trials: int
    n_failed: int


def _distribution(name: str, spec: Any) -> Any:
    import optuna

    if isinstance(spec, optuna.distributions.BaseDistribution):
        return spec
    if isinstance(spec, list) and spec:
        return optuna.distributions.CategoricalDistribution(spec)
    if isinstance(spec, tuple) and len(spec) in (2, 3):
        low, high = spec[0], spec[1]
        log = len(spec) == 3 and spec[2] == "log"
        if len(spec) == 3 and not log:
            raise InvalidArgumentError(
                f"tune: the third item of the range for {name!r} may only be 'log'; "
                f"got {spec[2]!r}."
            )
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (low, high)):
            raise InvalidArgumentError(f"tune: the range for {name!r} needs numbers; got {spec!r}.")
        if not low < high:
            raise InvalidArgumentError(
                f"tune: the range for {name!r} must have low < high; got {spec!r}."
            )
        if isinstance(low, int) and isinstance(high, int):
            return optuna.distributions.IntDistribution(low, high, log=log)
        return optuna.distributions.FloatDistribution(float(low), float(high), log=log)
    raise InvalidArgumentError(
        f"tune: cannot read the search space entry {name!r}: {spec!r}.",
        hint="Use (low, high), (low, high, 'log'), a list of choices, or an optuna distribution.",
    )


def tune(
    objective: Callable[[dict[str, Any]], float],
    space: Mapping[str, Any],
    *,
    n_trials: int = 50,
    direction: Literal["maximize", "minimize"] = "maximize",
    parallel: int = 1,
    experiment: str | None = None,
    name: str = "tune",
    metric: str = "objective",
    seed: int | None = None,
    progress: bool | None = None,
) -> TuneResult:
    """Search ``space`` for the params that maximize (or minimize) ``objective``.

    Each trial runs ``objective(params)`` inside a child run of a parent run (the active run,
    or a new one called ``name``), which records the params and the returned value as
    ``metric``; anything the objective logs goes to its trial's run. ``parallel`` trials run
    at once in threads. A trial that raises is marked FAILED and the search goes on.
    """
    try:
        import optuna
    except ImportError as e:
        raise InvalidArgumentError(
            "tune needs Optuna.", hint="pip install 'conveyor-mlops[tune]'"
        ) from e
    if direction not in ("maximize", "minimize"):
        raise InvalidArgumentError(
            f"direction must be 'maximize' or 'minimize'; got {direction!r}."
        )
    if not isinstance(n_trials, int) or n_trials < 1:
        raise InvalidArgumentError(f"n_trials must be a positive integer; got {n_trials!r}.")
    if not isinstance(parallel, int) or parallel < 1:
        raise InvalidArgumentError(f"parallel must be a positive integer; got {parallel!r}.")
    if not space:
        raise InvalidArgumentError("tune needs a non-empty search space.")
    distributions = {key: _distribution(key, spec) for key, spec in space.items()}

    owner = tracker()
    outer = active_run()
    parent = outer if outer is not None else owner.start_run(experiment, name=name)
    base_context = contextvars.copy_context()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
    trial_runs: dict[int, str] = {}

    def run_trial(trial: optuna.Trial) -> float:
        params = {key: _suggest(trial, key, dist) for key, dist in distributions.items()}
        child = owner.start_run(parent.experiment, name=f"trial-{trial.number}", parent=parent)
        trial_runs[trial.number] = child.id
        with child:
            child.log_params(params)
            child.set_tag("trial", trial.number)
            value = objective(params)
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise InvalidArgumentError(
                    f"tune: the objective must return a number; trial {trial.number} "
                    f"returned {type(value).__name__} {value!r}."
                )
            child.log_metric(metric, float(value))
        return float(value)

    def in_own_context(trial: optuna.Trial) -> float:
        # Every trial sees the caller's workspace, in a context of its own (threads too).
        return base_context.copy().run(run_trial, trial)

    show = sys.stderr.isatty() if progress is None else progress
    try:
        _optimize(study, in_own_context, n_trials, parallel, show)
    except BaseException as e:
        if outer is None:
            parent.end(RunStatus.KILLED if isinstance(e, KeyboardInterrupt) else RunStatus.FAILED)
        raise
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        if outer is None:
            parent.end(RunStatus.FAILED)
        raise InvalidArgumentError(
            f"tune: all {len(study.trials)} trials failed; see the FAILED runs under "
            f"run {parent.id} for their tracebacks."
        )
    best = study.best_trial
    best_value = float(best.value if best.value is not None else math.nan)
    _record_best(parent, best.params, best_value, trial_runs[best.number], metric)
    owner.flush()
    if outer is None:
        parent.end()
    return TuneResult(
        best_params=dict(best.params),
        best_value=best_value,
        best_run_id=trial_runs[best.number],
        parent_run_id=parent.id,
        n_trials=len(study.trials),
        n_failed=len(study.trials) - len(completed),
    )


def _suggest(trial: Any, key: str, dist: Any) -> Any:
    import optuna.distributions as d

    if isinstance(dist, d.FloatDistribution):
        return trial.suggest_float(key, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, d.CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    raise InvalidArgumentError(f"tune: unsupported distribution for {key!r}: {dist!r}.")


def _optimize(
    study: Any, fn: Callable[[Any], float], n_trials: int, parallel: int, show: bool
) -> None:
    catch = (Exception,)
    if not show:
        study.optimize(fn, n_trials=n_trials, n_jobs=parallel, catch=catch)
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("tuning", total=n_trials)
        study.optimize(
            fn,
            n_trials=n_trials,
            n_jobs=parallel,
            catch=catch,
            callbacks=[lambda _study, _trial: bar.advance(task)],
        )


def _record_best(
    parent: ActiveRun, params: dict[str, Any], value: float, run_id: str, metric: str
) -> None:
    parent.log_params({f"best.{key}": v for key, v in params.items()})
    parent.log_metric(f"best_{metric}", value if math.isfinite(value) else float("nan"))
    parent.set_tags({"best_run_id": run_id})
