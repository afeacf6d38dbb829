"""Prometheus metrics of one model server (a registry of its own, so apps do not collide)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ServerMetrics"]

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class _StateCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        state = self._read()
        depth = GaugeMetricFamily(
            "conveyor_queue_depth", "Requests waiting for their model", labels=["model_version"]
        )
        for ref, value in state["queues"].items():
            depth.add_metric([ref], value)
        yield depth
        yield GaugeMetricFamily(
            "conveyor_in_flight_requests", "Requests being handled", value=state["in_flight"]
        )
        for kind, stats in state["logs"].items():
            for name, help_text in (
                ("logged_rows", "Rows written to the log"),
                ("dropped_rows", "Rows the log could not keep (sink down past the buffer)"),
                ("buffered_rows", "Rows waiting to be written"),
                ("failed_writes", "Writes to the log sink that failed (and were retried)"),
            ):
                yield GaugeMetricFamily(
                    f"conveyor_{kind}_log_{name}", f"{help_text} ({kind})", value=stats[name]
                )


class ServerMetrics:
    """Counters and histograms a model server exposes at ``/metrics``."""

    def __init__(self, read_state: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "conveyor_requests",
            "Prediction requests by model version and HTTP status",
            ["model_version", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "conveyor_request_latency_seconds",
            "Prediction request latency, body read to response",
            ["model_version"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "conveyor_batch_rows",
            "Rows per model call (adaptive batching)",
            ["model_version"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "conveyor_model_seconds",
            "Time of one model call (one batch)",
            ["model_version"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.shadow_skipped = Counter(
            "conveyor_shadow_skipped",
            "Requests not mirrored to a shadow because too many copies were pending",
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "conveyor_canary_rollbacks",
            "Canaries the server rolled back for breaking their limits",
            registry=self.registry,
        )
        self.registry.register(_StateCollector(read_state))

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
