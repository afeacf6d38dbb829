"""The model server: a FastAPI app over a traffic plan of loaded, batched model versions.

Endpoints: ``POST /v1/models/{name}/predict``, ``POST /v1/feedback``, the Open Inference
Protocol v2 (``/v2/health/*``, ``/v2/models/{name}[/ready|/infer]``), ``/metrics``,
``/healthz``, ``/readyz``, and the OpenAPI docs at ``/docs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from conveyor.core.errors import ConveyorError, InvalidArgumentError
from conveyor.core.ids import new_id
from conveyor.serving.payloads import (
    V2_DATATYPES,
    Block,
    PayloadError,
    _kind,
    check_float32_range,
    check_unique_keys,
)
from conveyor.serving.predlog import FailureEntry, FeedbackEntry, ParquetLog, PredictionEntry
from conveyor.serving.runtime import ModelRuntime
from conveyor.serving.sources import TrafficSource
from conveyor.serving.traffic import RouteSpec, TrafficSpec, pick

__all__ = ["ServeOptions", "ServingState", "create_app"]

log = logging.getLogger("conveyor.serving")

_JSON = "application/json"
_MAX_SHADOW_TASKS = 1_000


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """How a server batches, validates, optimizes, logs and reloads."""

    max_batch: int = 64
    max_wait_ms: float = 2.0
    optimize: str = "none"
    extra_columns: str = "reject"  # or "drop"
    max_body_bytes: int = 10 * 1024 * 1024
    reload_interval: float = 2.0  # seconds between checks for a new revision; 0: never
    log_predictions: bool = True
    flush_rows: int = 10_000
    flush_seconds: float = 5.0
    max_buffer_rows: int = 1_000_000
    request_timeout: float = 30.0  # seconds a request may wait for its model (504 after)
    trust: bool = False
    # Tune the process for serving (set by `conveyor serve`, which owns its process): freeze
    # the objects alive after loading so the garbage collector stops rescanning them (a full
    # collection of a loaded scikit-learn process pauses every request ~100-200 ms), and
    # shorten the GIL switch interval so the model thread is not starved by the event loop.
    tune_process: bool = False

    def __post_init__(self) -> None:
        """Refuse a bad option before a model is loaded, naming the option and its range."""
        problems = []
        if self.optimize not in ("none", "onnx"):
            problems.append(f"--optimize takes none or onnx, not {self.optimize!r}")
        if self.extra_columns not in ("reject", "drop"):
            problems.append(f"--extra-columns takes reject or drop, not {self.extra_columns!r}")
        if self.max_batch < 1:
            problems.append(f"--max-batch must be at least 1, not {self.max_batch}")
        if self.max_wait_ms < 0:
            problems.append(f"--max-wait-ms must be 0 or more, not {self.max_wait_ms:g}")
        if self.max_body_bytes < 1:
            problems.append("--max-body-mb must be more than 0")
        if self.reload_interval < 0:
            problems.append(f"--reload-interval must be 0 or more, not {self.reload_interval:g}")
        if self.request_timeout <= 0:
            problems.append(f"the request timeout must be above 0, not {self.request_timeout:g}")
        if problems:
            raise InvalidArgumentError("; ".join(problems) + ".")


@dataclass(slots=True)
class _Route:
    spec: RouteSpec
    runtime: ModelRuntime


@dataclass(slots=True)
class _Plan:
    spec: TrafficSpec
    routes: list[_Route]  # answering
    shadows: list[_Route]
    weights: list[float]
    names: set[str]

    def find(self, name: str) -> bool:
        return name in self.names


@dataclass(slots=True)
class _Window:
    """Recent outcomes of one canary, for the rollback guard."""

    outcomes: deque[tuple[bool, float]] = field(default_factory=lambda: deque(maxlen=500))


class ServingState:
    """Everything a running server holds: the plan, the logs, the metrics, the reloader."""

    def __init__(self, source: TrafficSource, options: ServeOptions) -> None:
        from conveyor.serving.metrics import ServerMetrics

        self.source = source
        self.options = options
        self.plan: _Plan | None = None
        self.ready = False
        self.in_flight = 0
        self.metrics = ServerMetrics(self._metric_state)
        self.predictions: ParquetLog | None = None
        self.feedback: ParquetLog | None = None
        self.failures: ParquetLog | None = None
        self._runtimes: dict[str, ModelRuntime] = {}
        self._reload_lock: asyncio.Lock | None = None
        self._reloader: asyncio.Task[None] | None = None
        self._windows: dict[str, _Window] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.reload_error = ""

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        opts = self.options
        if opts.log_predictions:
            uri = self.source.log_uri
            self.predictions = ParquetLog(
                uri,
                "predictions",
                flush_rows=opts.flush_rows,
                flush_seconds=opts.flush_seconds,
                max_buffer_rows=opts.max_buffer_rows,
            )
            # Failures come at a caller's will (any bad payload): every log keeps the bound.
            self.feedback, self.failures = (
                ParquetLog(
                    uri,
                    kind,
                    flush_rows=opts.flush_rows,
                    flush_seconds=opts.flush_seconds,
                    max_buffer_rows=opts.max_buffer_rows,
                )
                for kind in ("feedback", "failures")
            )
        self._reload_lock = asyncio.Lock()
        spec = await asyncio.to_thread(self.source.resolve)
        from conveyor.models.flavors.sklearn import without_pandas

        # Nothing is served yet, so no other thread imports: the one moment a first import
        # of scikit-learn may leave pandas out (a numeric model then never needs it).
        with without_pandas():
            self.plan, self._runtimes = await asyncio.to_thread(self._build, spec, {})
        if opts.tune_process:
            _tune_process()
        self.ready = True
        if opts.reload_interval > 0:
            self._reloader = asyncio.create_task(self._reload_loop())

    async def stop(self, *, grace: float = 10.0) -> None:
        """Finish in-flight work (up to ``grace`` seconds), then flush and close the logs.

        The logs are closed whatever happens before: a slow shadow or a stuck model must not
        cost the buffered predictions when the platform kills the process after its grace.
        """
        self.ready = False
        try:
            if self._reloader is not None:
                self._reloader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reloader
            waits = [*self._background, *(r.batcher.wait_idle() for r in self._runtimes.values())]
            if waits:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.gather(*waits, return_exceptions=True), timeout=grace
                    )
        finally:
            for sink in (self.predictions, self.feedback, self.failures):
                if sink is not None:
                    await asyncio.to_thread(sink.close)
            for runtime in self._runtimes.values():
                runtime.batcher.close(wait=False)

    def _build(
        self, spec: TrafficSpec, loaded: dict[str, ModelRuntime]
    ) -> tuple[_Plan, dict[str, ModelRuntime]]:
        """Load the versions ``spec`` names (reusing those in ``loaded``) and warm them.

        Runs in a worker thread: it builds new objects only and returns them, and the event
        loop installs them, so nothing the loop reads changes under it.
        """
        routes: list[_Route] = []
        shadows: list[_Route] = []
        runtimes: dict[str, ModelRuntime] = {}
        for route in spec.routes:
            runtime = loaded.get(route.version_id) or runtimes.get(route.version_id)
            if runtime is None:
                runtime = self.source.load(route.ref, self.options, self._observe_batch(route.ref))
                try:
                    runtime.warm_up()
                except Exception as e:  # noqa: BLE001 - a failing example must not stop serving
                    runtime.warm_error = f"{type(e).__name__}: {e}"
                    log.warning(
                        "%s failed its warm-up call (%s); serving it "
                        "anyway, its failing requests will answer 500",
                        route.ref,
                        runtime.warm_error,
                    )
            runtimes[route.version_id] = runtime
            (shadows if route.role == "shadow" else routes).append(_Route(route, runtime))
        names = {spec.deployment} | {r.spec.ref.split("/")[0] for r in routes}
        plan = _Plan(spec, routes, shadows, [r.spec.weight for r in routes], names)
        return plan, runtimes

    def _observe_batch(self, ref: str) -> Any:
        rows_histogram = self.metrics.batch_rows.labels(ref)
        seconds_histogram = self.metrics.model_seconds.labels(ref)

        def observe(rows: int, seconds: float) -> None:
            rows_histogram.observe(rows)
            seconds_histogram.observe(seconds)

        return observe

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.reload_interval)
            try:
                await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - keep serving the plan that works
                self.reload_error = f"{type(e).__name__}: {e}"
                log.warning("Reload failed; still serving the current plan: %s", self.reload_error)

    async def reload(self) -> bool:
        """Switch to the source's current plan if it changed; True when it did.

        One reload at a time (the poller and the canary guard both reload), and never back to
        an older revision than the one served.
        """
        assert self._reload_lock is not None, "start() first"
        async with self._reload_lock:
            return await self._reload()

    async def _reload(self) -> bool:
        spec = await asyncio.to_thread(self.source.resolve)
        assert self.plan is not None
        current = self.plan.spec
        if spec.identity == current.identity:
            return False
        newer, served = spec.revision, current.revision
        if newer is not None and served is not None and newer < served:
            return False
        plan, runtimes = await asyncio.to_thread(self._build, spec, dict(self._runtimes))
        old_runtimes, self._runtimes = self._runtimes, runtimes
        old, self.plan = self.plan, plan  # one assignment: requests see one plan or the other
        self.reload_error = ""
        log.info(
            "Now serving %s revision %s: %s",
            spec.deployment,
            spec.revision,
            ", ".join(f"{r.ref} {r.role} {r.weight:g}%" for r in spec.routes),
        )
        for version_id in [v for v in old_runtimes if v not in runtimes]:
            runtime = old_runtimes[version_id]
            task = asyncio.create_task(self._retire(runtime))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        del old
        return True

    async def _retire(self, runtime: ModelRuntime) -> None:
        await runtime.batcher.wait_idle()  # in-flight requests finish on the old version
        await asyncio.to_thread(runtime.close)

    def _metric_state(self) -> dict[str, Any]:
        logs = {}
        for sink in (self.predictions, self.feedback, self.failures):
            if sink is not None:
                logs[sink.kind] = {
                    "logged_rows": sink.logged_rows,
                    "dropped_rows": sink.dropped_rows,
                    "buffered_rows": sink.buffered_rows,
                    "failed_writes": sink.failed_writes,
                }
        return {
            "queues": {r.ref: r.batcher.queue_depth for r in self._runtimes.values()},
            "in_flight": self.in_flight,
            "logs": logs,
        }

    # -- requests -------------------------------------------------------------------------

    async def predict(
        self, name: str, body: Any, *, v2: bool = False, raw: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Answer one request; ``raw``, the body's bytes, is checked for repeated keys."""
        plan = self.plan
        if plan is None or not self.ready:
            return 503, {"error": "The server is still loading its model(s); retry shortly."}
        if not plan.find(name):
            served = ", ".join(sorted(plan.names))
            return 404, {"error": f"No model {name!r} here; this server serves: {served}."}
        key_value = _key_value(body, plan.spec.key) if plan.spec.key else None
        index = pick(plan.weights, key_value)
        route = plan.routes[index]
        runtime = route.runtime
        want = _wanted(body)
        started = time.perf_counter()
        used: list[dict[str, Any]] | None = None
        ages: list[float | None] | None = None
        try:
            if raw is not None:
                check_unique_keys(raw, body)
            if runtime.features and not v2:
                body, used, ages = await self._with_features(runtime, body)
            block = runtime.parser.parse_v2(body) if v2 else runtime.parser.parse(body)
            if runtime.float32:
                check_float32_range(block, runtime.parser.columns)
            if "proba" in want and not runtime.has_proba:
                raise PayloadError(f'"return": ["proba"]: {runtime.ref} gives no probabilities.')
        except PayloadError as e:
            self.metrics.requests.labels(runtime.ref, str(e.status)).inc()
            self._log_failure(plan, route, e.status, started)
            return e.status, {"error": str(e), "problems": e.problems}
        try:
            result = await asyncio.wait_for(
                runtime.batcher.submit(block, want), self.options.request_timeout
            )
        except TimeoutError:
            self.metrics.requests.labels(runtime.ref, "504").inc()
            self._guard(route, ok=False, latency=time.perf_counter() - started)
            self._log_failure(plan, route, 504, started)
            return 504, {
                "error": f"The model {runtime.ref} did not answer within "
                f"{self.options.request_timeout:g} s; retry, or ask for fewer rows."
            }
        except Exception:
            error_id = new_id()
            log.exception("Model %s failed on a request (error id %s)", runtime.ref, error_id)
            self.metrics.requests.labels(runtime.ref, "500").inc()
            self._guard(route, ok=False, latency=time.perf_counter() - started)
            self._log_failure(plan, route, 500, started, error_id)
            return 500, {
                "error": f"The model {runtime.ref} failed on this input; error id {error_id} "
                "(the server log holds the details).",
                "error_id": error_id,
            }
        latency = time.perf_counter() - started
        self.metrics.requests.labels(runtime.ref, "200").inc()
        self.metrics.latency.labels(runtime.ref).observe(latency)
        self._guard(route, ok=True, latency=latency)
        ids = _prediction_ids(block.rows)
        self._log(plan, route, block, result.outputs, ids, latency, ages)
        for shadow in plan.shadows:
            if len(self._background) >= _MAX_SHADOW_TASKS:
                # A shadow slower than the traffic must not grow memory without bound.
                self.metrics.shadow_skipped.inc()
                continue
            task = asyncio.create_task(self._shadow(plan, shadow, body, v2, ids))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if v2:
            # A batch shared with a request that asked for probabilities computed them too.
            answered = {k: v for k, v in result.outputs.items() if k != "proba" or k in want}
            return 200, _v2_response(runtime, answered, ids)
        response: dict[str, Any] = {
            "predictions": result.outputs["predictions"].tolist(),
            "model_version": runtime.ref,
            "prediction_ids": ids,
        }
        if "proba" in want and "proba" in result.outputs:  # batched with one that asked
            response["proba"] = result.outputs["proba"].tolist()
            if runtime.classes is not None:
                response["classes"] = runtime.classes
        if block.dropped:
            response["dropped_columns"] = list(block.dropped)
        if used is not None:
            response["features"] = used
        return 200, response

    async def _with_features(
        self, runtime: ModelRuntime, body: Any
    ) -> tuple[Any, list[dict[str, Any]] | None, list[float | None] | None]:
        """Fill in the model's features from the online store for rows that give entity keys.

        Also returns each row's feature age: seconds from the oldest event time among the
        feature views read to now (what monitoring reports as feature freshness).
        """
        instances = body.get("instances") if isinstance(body, dict) else None
        if not (isinstance(instances, list) and instances and isinstance(instances[0], dict)):
            return body, None, None
        first = instances[0]
        wanted = [f.split(":")[-1] for f in runtime.features]
        missing = [f for f, name in zip(runtime.features, wanted, strict=True) if name not in first]
        if not missing:
            return body, None, None
        inputs = set(runtime.parser.columns)
        keys = [k for k in first if k not in inputs]
        if not keys:
            raise PayloadError(
                "Give the model's features, or the entity key(s) to read them from the online "
                f"store; the request has neither for {', '.join(map(repr, missing[:5]))}."
            )
        if any(not isinstance(row, dict) or row.keys() != first.keys() for row in instances):
            raise PayloadError("Every instance must have the same fields as the first.")
        entity = {k: [row[k] for row in instances] for k in keys}
        try:
            values = await asyncio.to_thread(
                self.source.online_features, entity, missing, with_timestamps=True
            )
        except ConveyorError as e:
            raise PayloadError(f"Reading online features failed: {e}") from e
        names = [f.split(":")[-1] for f in missing]
        ages = _feature_ages(values, len(instances))
        used = [{n: values[n][i] for n in names} for i in range(len(instances))]
        rows = [
            {**{k: v for k, v in row.items() if k not in keys}, **found}
            for row, found in zip(instances, used, strict=True)
        ]
        unknown = [i for i, found in enumerate(used) if all(v is None for v in found.values())]
        if unknown:
            shown = ", ".join(f"{k}={instances[unknown[0]][k]!r}" for k in keys)
            raise PayloadError(
                f"row {unknown[0]}: the online store has no features for {shown} "
                "(not materialized, or unknown)."
            )
        return {**body, "instances": rows}, used, ages

    def _log_failure(
        self, plan: _Plan, route: _Route, status: int, started: float, error_id: str = ""
    ) -> None:
        if self.failures is None:
            return
        self.failures.add(
            FailureEntry(
                **_served_by(plan, route),
                status=status,
                latency_ms=(time.perf_counter() - started) * 1000,
                error_id=error_id or new_id(),
            )
        )

    def _log(
        self,
        plan: _Plan,
        route: _Route,
        block: Block,
        outputs: dict[str, Any],
        ids: list[str],
        latency: float,
        feature_ages: list[float | None] | None = None,
    ) -> None:
        if self.predictions is None:
            return
        self.predictions.add(
            PredictionEntry(
                **_served_by(plan, route),
                ids=ids,
                inputs=block.data,
                columns=route.runtime.parser.columns,
                outputs=outputs,
                latency_ms=latency * 1000,
                feature_age_s=feature_ages,
            )
        )

    async def _shadow(
        self, plan: _Plan, route: _Route, body: Any, v2: bool, ids: list[str]
    ) -> None:
        """Run a copy of the request on a shadow version: logged, counted, never returned."""
        runtime = route.runtime
        started = time.perf_counter()
        try:
            block = runtime.parser.parse_v2(body) if v2 else runtime.parser.parse(body)
            if runtime.float32:
                check_float32_range(block, runtime.parser.columns)
            result = await runtime.batcher.submit(block)
        except Exception as e:  # noqa: BLE001 - a shadow's failure must not touch the answer
            status = str(e.status) if isinstance(e, PayloadError) else "500"
            self.metrics.requests.labels(runtime.ref, status).inc()
            return
        latency = time.perf_counter() - started
        self.metrics.requests.labels(runtime.ref, "200").inc()
        self.metrics.latency.labels(runtime.ref).observe(latency)
        self._log(plan, route, block, result.outputs, ids, latency)

    def _guard(self, route: _Route, *, ok: bool, latency: float) -> None:
        """Roll a canary back when it breaks the plan's limits (error rate, p99 latency)."""
        plan = self.plan
        if route.spec.role != "canary" or plan is None or not plan.spec.limits:
            return
        window = self._windows.setdefault(route.spec.version_id, _Window())
        window.outcomes.append((ok, latency))
        if len(window.outcomes) < 20:
            return
        limits = plan.spec.limit_map
        errors = sum(1 for good, _ in window.outcomes if not good) / len(window.outcomes)
        p99 = float(np.percentile([t for _, t in window.outcomes], 99)) * 1000
        reason = ""
        if "max_error_rate" in limits and errors > limits["max_error_rate"]:
            reason = f"error rate {errors:.1%} over the limit {limits['max_error_rate']:.1%}"
        elif "max_p99_ms" in limits and p99 > limits["max_p99_ms"]:
            reason = f"p99 latency {p99:.1f} ms over the limit {limits['max_p99_ms']:g} ms"
        if not reason:
            return
        self._windows.pop(route.spec.version_id, None)
        self.metrics.rollbacks.inc()
        log.warning("Canary %s broke its limits (%s): rolling back", route.spec.ref, reason)
        task = asyncio.create_task(self._rollback(route.spec, reason))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _rollback(self, route: RouteSpec, reason: str) -> None:
        try:
            await asyncio.to_thread(self.source.rollback_canary, route, reason)
            await self.reload()
        except Exception:
            log.exception("Rolling back canary %s failed", route.ref)

    def feedback_entry(self, body: Any, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
        if raw is not None:
            try:
                check_unique_keys(raw, body)
            except PayloadError as e:
                return e.status, {"error": str(e), "problems": e.problems}
        items = body if isinstance(body, list) else [body]
        ids: list[str] = []
        labels: list[Any] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "prediction_id" not in item or "label" not in item:
                return 422, {
                    "error": f'feedback[{i}]: expected {{"prediction_id": ..., "label": ...}}.'
                }
            if not isinstance(item["prediction_id"], str) or not item["prediction_id"]:
                return 422, {"error": f"feedback[{i}]: prediction_id must be a non-empty string."}
            ids.append(item["prediction_id"])
            labels.append(item["label"])
        if not ids:
            return 422, {"error": "No feedback in the body."}
        if self.feedback is not None:
            deployment = self.plan.spec.deployment if self.plan else self.source.name
            if not self.feedback.add(FeedbackEntry(time.time(), deployment, ids, labels)):
                return 503, {"error": "The feedback buffer is full; retry later."}
        return 200, {"accepted": len(ids)}

    def metadata_v2(self, name: str) -> tuple[int, dict[str, Any]]:
        plan = self.plan
        if plan is None or not plan.find(name):
            return 404, {"error": f"No model {name!r} here."}
        runtime = plan.routes[0].runtime
        specs = runtime.parser.specs
        return 200, {
            "name": name,
            "versions": [r.runtime.ref for r in plan.routes],
            "platform": f"conveyor-{runtime.loaded.flavor.name}",
            "inputs": [
                {
                    "name": s.name,
                    "datatype": V2_DATATYPES.get(_kind(s.dtype), "BYTES"),
                    "shape": [-1],
                }
                for s in specs
            ],
            "outputs": [{"name": "predictions", "datatype": "FP64", "shape": [-1]}],
        }


def _tune_process() -> None:
    # Freeze what start-up built (modules, the model) out of the collector's sight, so the
    # full collections that serving's garbage sets off stay short. Only the young
    # generations are collected first: a full pass over that heap cost 0.13 s of start-up,
    # and would have freed little more (23 objects, measured after loading a forest);
    # whatever garbage cycles sit in the old generation now stay, once, with the heap.
    gc.collect(1)
    gc.freeze()
    sys.setswitchinterval(0.001)


def _wanted(body: Any) -> frozenset[str]:
    if isinstance(body, dict):
        asked = body.get("return")
        if isinstance(asked, list) and "proba" in asked:
            return frozenset({"proba"})
        params = body.get("parameters")
        if isinstance(params, dict) and params.get("return_proba"):
            return frozenset({"proba"})
    return frozenset()


def _feature_ages(values: dict[str, Any], rows: int) -> list[float | None]:
    """Per row, seconds since the oldest event time among the feature views read."""
    now = time.time()
    stamps = [v for k, v in values.items() if k.endswith("__event_ts")]
    ages: list[float | None] = []
    for i in range(rows):
        seen = [s[i].timestamp() for s in stamps if s[i] is not None]
        ages.append(round(now - min(seen), 3) if seen else None)
    return ages


def _key_value(body: Any, key: str) -> Any:
    """The A/B key's value in the first row of a request (None when absent)."""
    if not isinstance(body, dict):
        return None
    instances = body.get("instances")
    if isinstance(instances, list) and instances and isinstance(instances[0], dict):
        return instances[0].get(key)
    columns, data = body.get("columns"), body.get("data")
    if isinstance(columns, list) and key in columns and isinstance(data, list) and data:
        row = data[0]
        if isinstance(row, list) and len(row) == len(columns):
            return row[columns.index(key)]
    inputs = body.get("inputs")
    if isinstance(inputs, list):
        for tensor in inputs:
            if isinstance(tensor, dict) and tensor.get("name") == key and tensor.get("data"):
                return tensor["data"][0]
    if isinstance(body.get("key"), str | int):
        return body["key"]
    return None


def _served_by(plan: _Plan, route: _Route) -> dict[str, Any]:
    """The fields every log entry starts with: when, and which deployment and model served."""
    version = route.runtime.version
    return {
        "at": time.time(),
        "deployment": plan.spec.deployment,
        "revision": plan.spec.revision,
        "model": version.name,
        "version": version.version,
        "role": route.spec.role,
    }


def _prediction_ids(rows: int) -> list[str]:
    base = new_id()
    if rows == 1:
        return [base]
    return [f"{base}-{i}" for i in range(rows)]


def _v2_response(runtime: ModelRuntime, outputs: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    result = []
    for name, values in outputs.items():
        array = np.asarray(values)
        datatype = {"f": "FP64", "i": "INT64", "u": "UINT64", "b": "BOOL"}.get(
            array.dtype.kind, "BYTES"
        )
        data = array.ravel().tolist() if datatype != "BYTES" else [str(v) for v in array.ravel()]
        result.append(
            {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}
        )
    return {
        "model_name": runtime.name,
        "model_version": str(runtime.version.version),
        "id": ids[0].split("-")[0],
        "outputs": result,
        "parameters": {"prediction_ids": ids},
    }


def _json(status: int, content: Any) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type=_JSON
    )


async def _read_json(request: Request, limit: int) -> tuple[Any, bytes, Response | None]:
    """The parsed body, its bytes, and the error answer when it is too big or not JSON."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        too_big = f"The body is {int(length):,} bytes; this server takes at most {limit:,}."
        return None, b"", _json(413, {"error": too_big})
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            over = f"The body is over {limit:,} bytes, this server's limit."
            return None, b"", _json(413, {"error": over})
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        return orjson.loads(raw), raw, None
    except orjson.JSONDecodeError as e:
        return None, raw, _json(400, {"error": f"The body is not valid JSON: {e}."})


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {_JSON: {"schema": schema}}}}


_PREDICT_BODY = _body(
    {
        "type": "object",
        "properties": {
            "instances": {"type": "array", "items": {"type": "object"}},
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array"}},
            "return": {"type": "array", "items": {"enum": ["proba"]}},
        },
    }
)
_INFER_BODY = _body(
    {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype", "data"],
                    "properties": {
                        "name": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "datatype": {"type": "string"},
                        "data": {"type": "array"},
                    },
                },
            },
            "parameters": {"type": "object"},
        },
    }
)
_FEEDBACK_ITEM = {
    "type": "object",
    "required": ["prediction_id", "label"],
    "properties": {"prediction_id": {"type": "string"}, "label": {}},
}
_FEEDBACK_BODY = _body({"oneOf": [_FEEDBACK_ITEM, {"type": "array", "items": _FEEDBACK_ITEM}]})


def create_app(source: TrafficSource, options: ServeOptions | None = None) -> FastAPI:
    """Return the ASGI app serving ``source`` (models load when the app starts)."""
    options = options or ServeOptions()
    state = ServingState(source, options)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title=f"Conveyor model server: {source.name}",
        description="Predictions with signature validation and adaptive batching.",
        lifespan=lifespan,
    )
    app.state.serving = state
    limit = options.max_body_bytes

    async def _predict(name: str, request: Request, v2: bool) -> Response:
        state.in_flight += 1
        plan = state.plan
        batcher = None
        if plan is not None and plan.routes:
            batcher = plan.routes[0].runtime.batcher
            batcher.expect()
        try:
            body, raw, error = await _read_json(request, limit)
            if batcher is not None:
                batcher.arrived()
                batcher = None
            if error is not None:
                return error
            status, content = await state.predict(name, body, v2=v2, raw=raw)
            return _json(status, content)
        finally:
            if batcher is not None:
                batcher.arrived()
            state.in_flight -= 1

    @app.post("/v1/models/{name}/predict", openapi_extra=_PREDICT_BODY, tags=["predict"])
    async def predict(name: str, request: Request) -> Response:
        """Predict for a batch of rows: records (``instances``) or ``columns`` + ``data``."""
        return await _predict(name, request, v2=False)

    @app.post("/v1/feedback", openapi_extra=_FEEDBACK_BODY, tags=["feedback"])
    async def feedback(request: Request) -> Response:
        """Record ground truth for earlier predictions: ``{"prediction_id", "label"}`` or a list."""
        body, raw, error = await _read_json(request, limit)
        if error is not None:
            return error
        return _json(*state.feedback_entry(body, raw))

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Response:
        """The process is up."""
        return _json(200, {"ok": True})

    @app.get("/readyz", tags=["health"])
    async def readyz() -> Response:
        """Ready once the model(s) are loaded and warmed; says what each serves with, and why
        a version asked to run on ONNX serves its original model instead."""
        if not state.ready or state.plan is None:
            return _json(503, {"ready": False})
        spec = state.plan.spec
        return _json(
            200,
            {
                "ready": True,
                "deployment": spec.deployment,
                "revision": spec.revision,
                "routes": [r.to_dict() for r in spec.routes],
                "runtimes": {r.ref: r.runtime for r in state._runtimes.values()},
                "warm_up_errors": {
                    r.ref: r.warm_error for r in state._runtimes.values() if r.warm_error
                },
                # --optimize onnx was asked, but these serve the original model: why.
                "optimize_fallbacks": {
                    r.ref: r.optimize_note
                    for r in state._runtimes.values()
                    if r.optimize_note and r.runtime == "native"
                },
                "reload_error": state.reload_error or None,
            },
        )

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        """Prometheus metrics."""
        data, content_type = state.metrics.render()
        return Response(data, media_type=content_type)

    @app.get("/v2/health/live", tags=["v2"])
    async def v2_live() -> Response:
        return _json(200, {"live": True})

    @app.get("/v2/health/ready", tags=["v2"])
    async def v2_ready() -> Response:
        return _json(200 if state.ready else 503, {"ready": state.ready})

    @app.get("/v2/models/{name}", tags=["v2"])
    async def v2_metadata(name: str) -> Response:
        return _json(*state.metadata_v2(name))

    @app.get("/v2/models/{name}/ready", tags=["v2"])
    async def v2_model_ready(name: str) -> Response:
        found = state.plan is not None and state.plan.find(name)
        if not found:
            return _json(404, {"error": f"No model {name!r} here."})
        return _json(200 if state.ready else 503, {"name": name, "ready": state.ready})

    @app.post("/v2/models/{name}/infer", openapi_extra=_INFER_BODY, tags=["v2"])
    async def v2_infer(name: str, request: Request) -> Response:
        """Open Inference Protocol v2: one input tensor per column."""
        return await _predict(name, request, v2=True)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        error_id = new_id()
        log.error("Unexpected error (error id %s)", error_id, exc_info=exc)
        return _json(500, {"error": f"Internal error; error id {error_id}.", "error_id": error_id})

    return app
