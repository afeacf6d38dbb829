"""Conveyor: take a model from a notebook to production and keep it healthy there.

>>> import conveyor as cv
>>> ws = cv.init(project="churn")          # doctest: +SKIP
>>> ws.log_artifact(b"...", cv.ObjectRef("run", "r1"), "notes.txt")  # doctest: +SKIP

Heavy modules (SQLAlchemy, fsspec, Alembic) load when first used, not at import.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from conveyor._version import __version__
from conveyor.core.errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    ConflictError,
    ConveyorError,
    DataValidationError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnauthenticatedError,
)

if _TYPE_CHECKING:
    from conveyor import data, features, loop, models, monitoring, pipelines, serving
    from conveyor._api import init, workspace
    from conveyor.core.config import Settings
    from conveyor.data.records import DatasetVersion
    from conveyor.data.validation import ValidationReport
    from conveyor.models.loaded import LoadedModel
    from conveyor.models.records import ModelVersion
    from conveyor.pipelines import PipelineFailed, PipelineRun, pipeline, schedule, step
    from conveyor.serving import predict
    from conveyor.store.artifacts.cas import ArtifactStore
    from conveyor.store.metadata.store import MetadataStore
    from conveyor.store.records import (
        ArtifactLink,
        AuditEvent,
        LineageEdge,
        LineageGraph,
        ObjectRef,
    )
    from conveyor.store.workspace import Workspace
    from conveyor.tracking.autolog import autolog
    from conveyor.tracking.fluent import (
        delete_run,
        end_run,
        flush,
        get_metric_history,
        get_run,
        log_artifact,
        log_dict,
        log_figure,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        log_table,
        log_text,
        restore_run,
        search_runs,
        set_tag,
        set_tags,
        start_run,
    )
    from conveyor.tracking.records import Experiment, MetricPoint, Run, RunStatus
    from conveyor.tracking.runs import ActiveRun, active_run
    from conveyor.tracking.tune import TuneResult, tune

__all__ = [
    "ActiveRun",
    "AlreadyExistsError",
    "ArtifactLink",
    "ArtifactStore",
    "AuditEvent",
    "BackendUnavailableError",
    "ConflictError",
    "ConveyorError",
    "DataValidationError",
    "DatasetVersion",
    "Experiment",
    "IntegrityError",
    "InvalidArgumentError",
    "LineageEdge",
    "LineageGraph",
    "LoadedModel",
    "MetadataStore",
    "MetricPoint",
    "ModelVersion",
    "NotFoundError",
    "ObjectRef",
    "PermissionDeniedError",
    "PipelineFailed",
    "PipelineRun",
    "RateLimitedError",
    "Run",
    "RunStatus",
    "Settings",
    "TuneResult",
    "UnauthenticatedError",
    "ValidationReport",
    "Workspace",
    "__version__",
    "active_run",
    "autolog",
    "data",
    "delete_run",
    "end_run",
    "features",
    "flush",
    "get_metric_history",
    "get_run",
    "init",
    "log_artifact",
    "log_dict",
    "log_figure",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "loop",
    "models",
    "monitoring",
    "pipeline",
    "pipelines",
    "predict",
    "restore_run",
    "schedule",
    "search_runs",
    "serving",
    "set_tag",
    "set_tags",
    "start_run",
    "step",
    "tune",
    "workspace",
]

# name -> module that defines it; imported on first attribute access (PEP 562).
_LAZY = {
    "init": "conveyor._api",
    "workspace": "conveyor._api",
    "Settings": "conveyor.core.config",
    "ArtifactStore": "conveyor.store.artifacts.cas",
    "MetadataStore": "conveyor.store.metadata.store",
    "ArtifactLink": "conveyor.store.records",
    "AuditEvent": "conveyor.store.records",
    "LineageEdge": "conveyor.store.records",
    "LineageGraph": "conveyor.store.records",
    "ObjectRef": "conveyor.store.records",
    "Workspace": "conveyor.store.workspace",
    "delete_run": "conveyor.tracking.fluent",
    "end_run": "conveyor.tracking.fluent",
    "flush": "conveyor.tracking.fluent",
    "get_metric_history": "conveyor.tracking.fluent",
    "get_run": "conveyor.tracking.fluent",
    "log_artifact": "conveyor.tracking.fluent",
    "log_dict": "conveyor.tracking.fluent",
    "log_figure": "conveyor.tracking.fluent",
    "log_metric": "conveyor.tracking.fluent",
    "log_metrics": "conveyor.tracking.fluent",
    "log_param": "conveyor.tracking.fluent",
    "log_params": "conveyor.tracking.fluent",
    "log_table": "conveyor.tracking.fluent",
    "log_text": "conveyor.tracking.fluent",
    "restore_run": "conveyor.tracking.fluent",
    "search_runs": "conveyor.tracking.fluent",
    "set_tag": "conveyor.tracking.fluent",
    "set_tags": "conveyor.tracking.fluent",
    "start_run": "conveyor.tracking.fluent",
    "Experiment": "conveyor.tracking.records",
    "MetricPoint": "conveyor.tracking.records",
    "Run": "conveyor.tracking.records",
    "RunStatus": "conveyor.tracking.records",
    "ActiveRun": "conveyor.tracking.runs",
    "autolog": "conveyor.tracking.autolog",
    "tune": "conveyor.tracking.tune",
    "TuneResult": "conveyor.tracking.tune",
    "active_run": "conveyor.tracking.runs",
    "DatasetVersion": "conveyor.data.records",
    "ValidationReport": "conveyor.data.validation",
    "LoadedModel": "conveyor.models.loaded",
    "ModelVersion": "conveyor.models.records",
    "PipelineFailed": "conveyor.pipelines",
    "PipelineRun": "conveyor.pipelines",
    "pipeline": "conveyor.pipelines",
    "schedule": "conveyor.pipelines",
    "step": "conveyor.pipelines",
    "predict": "conveyor.serving",
}
_SUBMODULES = {"data", "features", "loop", "models", "monitoring", "pipelines", "serving"}


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"conveyor.{name}")
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
