"""Model serving: the online server, deployments, batch inference, packaging.

>>> import conveyor as cv
>>> app = cv.serving.app("churn@champion")                   # an ASGI app    # doctest: +SKIP
>>> cv.serving.serve("churn@champion", port=8080)            # blocks         # doctest: +SKIP
>>> preds = cv.predict("churn@champion", df)                 # batch, in process  # doctest: +SKIP
>>> cv.serving.deployments().canary("prod", "churn/4", 10)    # doctest: +SKIP

The server validates each request against the model's signature, batches concurrent
requests into one model call, logs every prediction to Parquet for monitoring, and picks up a
deployment's new revision (or a moved alias) within seconds. See docs/serving.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from fastapi import FastAPI

    from conveyor.serving.batch import BatchPrediction
    from conveyor.serving.deployment import DeploymentService
    from conveyor.serving.packaging import BuildResult
    from conveyor.serving.server import ServeOptions
    from conveyor.store.workspace import Workspace

__all__ = [
    "app",
    "build",
    "deployments",
    "log_uri",
    "options",
    "predict",
    "read_failures",
    "read_feedback",
    "read_predictions",
    "serve",
]


def _ws(workspace: Workspace | None) -> Workspace:
    from conveyor.store.workspace import current_workspace

    return workspace or current_workspace()


def log_uri(workspace: Workspace | None = None) -> str:
    """Where ``workspace``'s servers write their logs. In remote mode the default (a folder
    under this machine's project root) is refused: the servers that log for the team's
    deployments write elsewhere, and reading it would answer for this machine instead."""
    ws = _ws(workspace)
    uri = ws.settings.log_uri
    if ws.remote is not None:
        from conveyor.core.config import STATE_DIR, normalize_artifact_uri
        from conveyor.core.errors import InvalidArgumentError

        root = ws.settings.root
        if uri == normalize_artifact_uri(str(root / STATE_DIR / "logs"), root):
            raise InvalidArgumentError(
                "Through a team server, the prediction logs are read where the model servers "
                f"write them, which the server does not say (this machine's default is {uri}).",
                hint="Set CONVEYOR_LOG_URI (or log_uri in conveyor.toml) to that place "
                "(s3://bucket/logs, say).",
            )
    return ws.log_uri


def options(**values: Any) -> ServeOptions:
    """Return :class:`ServeOptions` (max_batch, max_wait_ms, optimize, extra_columns, ...)."""
    from conveyor.serving.server import ServeOptions

    return ServeOptions(**values)


def app(
    ref: str | None = None,
    *,
    deployment: str | None = None,
    workspace: Workspace | None = None,
    **serve_options: Any,
) -> FastAPI:
    """Return the ASGI app serving ``ref`` (a version or alias) or ``deployment``.

    The model loads when the app starts (its lifespan), so ``/readyz`` answers 200 only once
    it is loaded and warmed. Options are :class:`ServeOptions` fields.
    """
    from conveyor.core.errors import InvalidArgumentError
    from conveyor.serving.server import ServeOptions, create_app
    from conveyor.serving.sources import DeploymentSource, ModelSource

    if (ref is None) == (deployment is None):
        raise InvalidArgumentError(
            "Serve one model reference (churn@champion) or one deployment (--deployment prod)."
        )
    ws = _ws(workspace)
    source = ModelSource(ws, ref) if ref is not None else DeploymentSource(ws, str(deployment))
    source.resolve()  # fail now, with the registry's message, if it names nothing
    return create_app(source, ServeOptions(**serve_options))


def serve(
    ref: str | None = None,
    *,
    deployment: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    log_level: str = "warning",
    workspace: Workspace | None = None,
    announce: Callable[[], None] | None = None,
    **serve_options: Any,
) -> None:
    """Serve ``ref`` or ``deployment`` with uvicorn (uvloop, httptools) until interrupted.

    ``announce`` is called once everything that can be checked before the server starts
    has been (options, the port, whether the models load only with trust)."""
    import uvicorn

    from conveyor.core.errors import InvalidArgumentError
    from conveyor.serving.server import ServeOptions

    if (ref is None) == (deployment is None):
        raise InvalidArgumentError(
            "Serve one model reference (churn@champion) or one deployment (--deployment prod)."
        )
    serve_options.setdefault("tune_process", True)  # this process is the server's own
    ServeOptions(**serve_options)  # reject unknown or bad options before starting anything
    if workers < 1:
        raise InvalidArgumentError(f"--workers must be at least 1, not {workers}.")
    from conveyor.core.net import check_port_free

    check_port_free(host, port)
    _check_trust(_ws(workspace), ref, deployment, bool(serve_options.get("trust")))
    if announce is not None:
        announce()
    if workers > 1:
        # Each worker process builds its own app (and loads the model) from the environment.
        ws = _ws(workspace)
        os.environ["CONVEYOR_ROOT"] = str(ws.settings.root)
        os.environ["CONVEYOR_PROJECT"] = ws.settings.project
        os.environ["CONVEYOR_SERVE_SPEC"] = _encode_spec(ref, deployment, serve_options)
        uvicorn.run(
            "conveyor.serving:_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            loop="uvloop",
            http="httptools",
            ws="none",  # no WebSocket routes: importing a WebSocket stack costs ~0.07 s
        )
        return
    application = app(ref, deployment=deployment, workspace=workspace, **serve_options)
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level=log_level,
        loop="uvloop",
        http="httptools",
        ws="none",
        access_log=False,
    )


def _check_trust(ws: Workspace, ref: str | None, deployment: str | None, trust: bool) -> None:
    """Refuse, in one line, a model that loads only with trust: otherwise the server fails
    at start-up, with a traceback."""
    if trust or ws.settings.trusts_pickled_models:
        return
    from conveyor.core.errors import PermissionDeniedError
    from conveyor.models.flavors import get_flavor
    from conveyor.models.service import model_service

    refs = [ref] if ref else [r["model"] for r in deployments(ws).get(str(deployment)).routes]
    for one in refs:
        version = model_service(ws).get(one)
        flavor = get_flavor(version.flavor)
        if flavor.executes_code:
            raise PermissionDeniedError(
                f"{version.ref} is a {flavor.name} model, {flavor.code_reason}: serving it "
                "loads it, which can run code from the file.",
                hint="If you trust whoever can write to this store, pass --trust (trust=True).",
            )


def _encode_spec(ref: str | None, deployment: str | None, opts: dict[str, Any]) -> str:
    import json

    return json.dumps({"ref": ref, "deployment": deployment, "options": opts})


def _app_from_env() -> FastAPI:
    """Build the app in a uvicorn worker process (``serve(workers=N)``)."""
    import json

    spec = json.loads(os.environ["CONVEYOR_SERVE_SPEC"])
    return app(spec["ref"], deployment=spec["deployment"], **spec["options"])


def predict(
    ref: str,
    data: Any,
    *,
    output: str | os.PathLike[str] | None = None,
    chunk_rows: int = 100_000,
    proba: bool = False,
    log_predictions: bool = True,
    trust: bool = False,
    executor: str = "local",
    workspace: Workspace | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> pd.DataFrame | BatchPrediction:
    """Predict every row of ``data`` (a DataFrame, Parquet path or ``DATASET@V``) with ``ref``.

    Without ``output``, returns a DataFrame (``prediction_id``, ``prediction``, and
    ``proba_<i>`` with ``proba=True``) in the input's row order, with a DataFrame input's
    index; with ``output``, streams
    chunks of ``chunk_rows`` to that Parquet file (input columns plus the predictions) and
    returns a :class:`BatchPrediction` summary. Both log the predictions for monitoring.
    ``executor="ray"`` (or ``"ray://host:port"``) predicts the chunks as Ray tasks.
    """
    from conveyor.serving.batch import predict_batch

    result, frame = predict_batch(
        _ws(workspace),
        ref,
        data,
        output=output,
        chunk_rows=chunk_rows,
        proba=proba,
        log_predictions=log_predictions,
        trust=trust,
        executor=executor,
        progress=progress,
    )
    if output is not None or frame is None:
        return result
    import pandas as pd

    if isinstance(data, pd.DataFrame) and len(frame) == len(data):
        # The input's index, so that df.assign(pred=result["prediction"]) lines up on a
        # filtered or reindexed frame as pandas users expect.
        frame.index = data.index
    return frame


def deployments(workspace: Workspace | None = None) -> DeploymentService:
    """The deployment service: create, canary, ab, shadow, promote, rollback, get, history."""
    from conveyor.serving.deployment import deployment_service

    return deployment_service(_ws(workspace))


def build(
    ref: str, out: str | os.PathLike[str], *, workspace: Workspace | None = None, **kwargs: Any
) -> BuildResult:
    """Write a Dockerfile and Kubernetes manifests serving ``ref`` under ``out``."""
    from conveyor.serving.packaging import build as _build

    return _build(_ws(workspace), ref, out, **kwargs)


def read_predictions(
    deployment: str | None = None, *, workspace: Workspace | None = None
) -> pd.DataFrame:
    """Every logged prediction (of ``deployment``), inputs flattened as ``inputs.<column>``."""
    from conveyor.serving.predlog import read_log

    return read_log(log_uri(workspace), "predictions", deployment=deployment)


def read_feedback(
    deployment: str | None = None, *, workspace: Workspace | None = None
) -> pd.DataFrame:
    """Every label sent to ``/v1/feedback`` (of ``deployment``)."""
    from conveyor.serving.predlog import read_log

    return read_log(log_uri(workspace), "feedback", deployment=deployment)


def read_failures(
    deployment: str | None = None, *, workspace: Workspace | None = None
) -> pd.DataFrame:
    """Every request a server refused (4xx) or could not answer (5xx) (of ``deployment``):
    time, model version, role, HTTP status, latency and error id; the inputs are not kept."""
    from conveyor.serving.predlog import read_log

    return read_log(log_uri(workspace), "failures", deployment=deployment)
