"""Where a server's traffic plan comes from: one model reference, or a deployment."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.core.errors import InvalidArgumentError
from conveyor.models.service import model_service
from conveyor.serving.traffic import RouteSpec, TrafficSpec
from conveyor.store.workspace import Workspace

if TYPE_CHECKING:
    from conveyor.serving.runtime import ModelRuntime
    from conveyor.serving.server import ServeOptions

__all__ = ["DeploymentSource", "ModelSource", "TrafficSource", "load_runtime"]

log = logging.getLogger("conveyor.serving")


class TrafficSource(Protocol):
    """What a server asks for its plan; called from worker threads."""

    name: str

    @property
    def log_uri(self) -> str: ...

    def resolve(self) -> TrafficSpec: ...

    def load(self, ref: str, options: ServeOptions, on_batch: Any) -> ModelRuntime: ...

    def rollback_canary(self, route: RouteSpec, reason: str) -> None: ...

    def online_features(
        self, entity: dict[str, list[Any]], features: list[str], *, with_timestamps: bool = False
    ) -> Any: ...


def load_runtime(
    ws: Workspace, ref: str, options: ServeOptions, on_batch: Any = None
) -> ModelRuntime:
    """Load model version ``ref`` from ``ws`` as a runtime with ``options``."""
    from conveyor.serving.runtime import ModelRuntime

    models = model_service(ws)
    loaded = models.load(ref, trust=options.trust)
    version = loaded.version.ref  # (an alias may move before the example is read)
    return ModelRuntime(
        loaded,
        example=lambda: models.input_example(version),  # read when needed
        optimize=options.optimize,
        extra=options.extra_columns,
        max_batch=options.max_batch,
        max_wait_ms=options.max_wait_ms,
        on_batch=on_batch,
    )


class _WorkspaceSource:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    @property
    def log_uri(self) -> str:
        from conveyor.serving import log_uri

        try:
            return log_uri(self.ws)
        except InvalidArgumentError:  # a model server through a team server, logging here
            log.warning(
                "Logging predictions on this machine (%s), where the team's monitors do not "
                "read them: set CONVEYOR_LOG_URI to the team's log store.",
                self.ws.log_uri,
            )
            return self.ws.log_uri

    def load(self, ref: str, options: ServeOptions, on_batch: Any) -> ModelRuntime:
        return load_runtime(self.ws, ref, options, on_batch)

    def online_features(
        self, entity: dict[str, list[Any]], features: list[str], *, with_timestamps: bool = False
    ) -> Any:
        """Read ``features`` for the entity key columns ``entity`` from the online store
        (with ``VIEW__event_ts`` columns when ``with_timestamps``)."""
        from conveyor.features.service import feature_service

        return feature_service(self.ws).online(entity, features, with_timestamps=with_timestamps)


class ModelSource(_WorkspaceSource):
    """Serve the version a reference names; an alias is re-resolved on each check."""

    def __init__(self, ws: Workspace, ref: str) -> None:
        super().__init__(ws)
        self.ref = ref
        self.name = ref.split("@")[0].split("/")[0]

    def resolve(self) -> TrafficSpec:
        version = model_service(self.ws).get(self.ref)
        route = RouteSpec(version.ref, version.id, 100.0, "primary", self.ref)
        return TrafficSpec(self.name, None, (route,))

    def rollback_canary(self, route: RouteSpec, reason: str) -> None:
        raise InvalidArgumentError("A server of one model has no canary to roll back.")


class DeploymentSource(_WorkspaceSource):
    """Serve a deployment's current revision; a new revision is picked up on the next check."""

    def __init__(self, ws: Workspace, name: str) -> None:
        super().__init__(ws)
        self.name = name

    def _service(self) -> Any:
        from conveyor.serving.deployment import deployment_service

        return deployment_service(self.ws)

    def resolve(self) -> TrafficSpec:
        spec: TrafficSpec = self._service().spec(self.name)
        return spec

    def rollback_canary(self, route: RouteSpec, reason: str) -> None:
        self._service().rollback_canary(self.name, route.source or route.ref, reason)
