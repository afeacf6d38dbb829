"""Routes for tracking: experiments, batched run writes, runs, metric histories, searches and
artifacts (streamed both ways, never held whole in memory)."""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Literal

import anyio
import sqlalchemy as sa
from fastapi import Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from conveyor.core.encoding import jsonable
from conveyor.core.errors import (
    ConveyorError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
)
from conveyor.core.names import validate_artifact_path
from conveyor.server.responses import ORJSONResponse
from conveyor.server.rules import Api, Call, need
from conveyor.store import catalog
from conveyor.store.metadata.schema import experiments, idempotency_keys, runs
from conveyor.store.metadata.sql import insert_ignore
from conveyor.store.records import ArtifactLink, ObjectRef
from conveyor.store.workspace import Workspace
from conveyor.tracking import wire
from conveyor.tracking.search import search
from conveyor.tracking.store import TrackingStore

api = Api(prefix="/api/v1/projects/{project}")

_ENVIRONMENT_MAX = 16 * 1024 * 1024
_KEY = re.compile(r"[A-Za-z0-9_-]{8,64}")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[\w.+-]+")
MAX_BATCH_OPS = 100_000
_OWNER_KINDS = ("run", "model_version", "dataset_version")  # owners the API serves


def _store(ws: Workspace) -> TrackingStore:
    return ws.service("tracking-store", TrackingStore)


def _experiment_json(exp: Any, runs_count: int | None = None) -> dict[str, Any]:
    out = {
        "id": exp.id,
        "name": exp.name,
        "project_id": exp.project_id,
        "created_at": exp.created_at.isoformat(),
    }
    if runs_count is not None:
        out["runs"] = runs_count
    return out


@api.get("/experiments")
def list_experiments(project: str, call: Call = need("viewer")) -> dict[str, Any]:
    """The project's experiments with their number of runs."""
    found = _store(call.workspace).list_experiments()
    return {"experiments": [_experiment_json(e, n) for e, n in found]}


@api.get("/experiments/{name:path}")
def get_experiment(project: str, name: str, call: Call = need("viewer")) -> dict[str, Any]:
    """One experiment."""
    return _experiment_json(_store(call.workspace).experiment(name, create=False))


@api.put("/experiments/{name:path}")
def ensure_experiment(project: str, name: str, call: Call = need("editor")) -> dict[str, Any]:
    """The experiment ``name``, created if missing."""
    with call:
        return _experiment_json(_store(call.workspace).experiment(name, create=True))


_RUN_ID = {"type": "string", "maxLength": 26}
_BATCH_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "runs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "experiment_id", "name", "start_time"],
                "properties": {
                    "id": _RUN_ID,
                    "experiment_id": _RUN_ID,
                    "name": {"type": "string", "maxLength": 200},
                    "start_time": {"type": "string", "format": "date-time"},
                    "parent_id": {"type": ["string", "null"]},
                },
            },
        },
        "params": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
        "tags": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
        "metrics": {
            "type": "array",
            "description": "[run_id, key, value (number, null, 'inf' or '-inf'), step, ms]",
            "items": {"type": "array", "minItems": 5, "maxItems": 5},
        },
        "ends": {
            "type": "array",
            "description": "[run_id, FINISHED|FAILED|KILLED, end time]",
            "items": {"type": "array", "items": {"type": "string"}},
        },
    },
}


@api.post(
    "/runs/batch",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _BATCH_SCHEMA}},
        }
    },
)
async def write_batch(
    project: str, request: Request, call: Call = need("editor")
) -> dict[str, Any]:
    """Apply a batch of run writes (new runs, params, tags, metric points, run ends) in one
    transaction. With an ``Idempotency-Key`` header a batch is applied at most once."""
    body = await request.body()
    key = request.headers.get("idempotency-key")
    if key is not None and not _KEY.fullmatch(key):
        raise InvalidArgumentError(
            "An Idempotency-Key is 8 to 64 letters, digits, '-' and '_' (a fresh UUID per batch)."
        )
    payload = _parse_json(body)
    return await anyio.to_thread.run_sync(_write, call, payload, key)


def _parse_json(body: bytes) -> Any:
    import orjson

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidArgumentError(f"The request body is not valid JSON ({e}).") from None


def _write(call: Call, payload: Any, key: str | None) -> dict[str, Any]:
    ws = call.workspace
    assert call.project is not None
    project_id = call.project.id
    with call:
        ops, created, touched = wire.decode_ops(payload, project_id=project_id, user=call.actor)
        if len(ops) > MAX_BATCH_OPS:
            raise InvalidArgumentError(
                f"A batch holds at most {MAX_BATCH_OPS} writes; this one has {len(ops)}.",
                hint="Send several batches (the SDK's writer does).",
            )
        store = _store(ws)
        with ws.metadata.transaction(project_id=project_id) as uow:
            if key is not None and not insert_ignore(
                uow.conn,
                idempotency_keys,
                [{"key": f"{project_id}:{key}", "project_id": project_id, "created_at": uow.now}],
                conflict_columns=["key"],
            ):
                return {"applied": False, "duplicate": True}
            _check_owned(uow.conn, project_id, ops, created, touched)
            n_created = store.write_in(uow, ops)
            _audit_batch(uow, ops, created)
            _purge_keys(uow)
    store.after_write(n_created)
    return {"applied": True, "ops": len(ops)}


def _audit_batch(uow: Any, ops: list[Any], created: set[str]) -> None:
    """One audit event per run the batch wrote to (creations and ends audit themselves): what
    it logged, with the tags it set (tags, unlike params and metrics, can be overwritten)."""
    logged: dict[str, dict[str, Any]] = {}
    for op in ops:
        kind = type(op).__name__
        if kind not in ("LogParam", "SetTag", "LogMetric"):
            continue
        entry = logged.setdefault(op.run_id, {"params": 0, "metrics": 0, "tags": {}})
        if kind == "LogParam":
            entry["params"] += 1
        elif kind == "LogMetric":
            entry["metrics"] += 1
        else:
            entry["tags"][op.key] = op.value
    for run_id, entry in logged.items():
        uow.audit("run.log", ObjectRef("run", run_id), after=entry)


_writes = itertools.count()


def _purge_keys(uow: Any) -> None:
    """Forget idempotency keys older than a day (a retry comes within minutes), now and then."""
    if next(_writes) % 1000 == 0:
        uow.conn.execute(
            idempotency_keys.delete().where(
                idempotency_keys.c.created_at < uow.now - timedelta(days=1)
            )
        )


def _check_owned(
    conn: sa.Connection, project_id: str, ops: list[Any], created: set[str], touched: set[str]
) -> None:
    """Refuse a batch that names a run or experiment of another project."""
    run_ids = sorted(created | touched)
    found = (
        dict(
            conn.execute(
                sa.select(runs.c.id, runs.c.project_id).where(runs.c.id.in_(run_ids))
            ).all()
        )
        if run_ids
        else {}
    )
    foreign = [r for r, p in found.items() if p != project_id]
    missing = [r for r in touched - created if r not in found]
    if foreign or missing:
        raise NotFoundError(f"No run {(foreign or missing)[0]!r} in this project.")
    wanted = {op.row["experiment_id"] for op in ops if type(op).__name__ == "CreateRun"}
    parents = {
        op.row["parent_id"]
        for op in ops
        if type(op).__name__ == "CreateRun" and op.row["parent_id"] is not None
    }
    if wanted:
        known = set(
            conn.execute(
                sa.select(experiments.c.id).where(
                    experiments.c.id.in_(sorted(wanted)), experiments.c.project_id == project_id
                )
            ).scalars()
        )
        if wanted - known:
            raise NotFoundError(f"No experiment {sorted(wanted - known)[0]!r} in this project.")
    outside = parents - created
    if outside:
        owned = set(
            conn.execute(
                sa.select(runs.c.id).where(
                    runs.c.id.in_(sorted(outside)), runs.c.project_id == project_id
                )
            ).scalars()
        )
        if outside - owned:
            raise NotFoundError(f"No parent run {sorted(outside - owned)[0]!r} in this project.")


class SearchRequest(BaseModel):
    experiments: list[str] | None = None
    filter: str | None = Field(default=None, max_length=10_000)
    order_by: list[str] | None = None
    limit: int = Field(default=1000, ge=1, le=50_000)
    page_token: str | None = Field(default=None, max_length=10_000)
    view: Literal["active", "deleted", "all"] = "active"


@api.post("/runs/search", response_model=None)
def search_runs(project: str, body: SearchRequest, call: Call = need("viewer")) -> Response:
    """One page of runs matching the filter language, in order; ``next_page_token`` follows."""
    page = search(
        _store(call.workspace),
        experiment=body.experiments,
        filter=body.filter,
        order_by=body.order_by,
        limit=body.limit,
        page_token=body.page_token,
        view=body.view,
    )
    return ORJSONResponse(wire.encode_page(page))  # as it is: no second pass over the rows


@api.get("/runs/{run_id}")
def get_run(
    project: str, run_id: str, include_deleted: bool = True, call: Call = need("viewer")
) -> dict[str, Any]:
    """A run with its params, latest metrics and tags."""
    run = _store(call.workspace).get_run(run_id, include_deleted=include_deleted)
    return jsonable(run.to_dict())


@api.get("/runs/{run_id}/metrics/{key:path}", response_model=None)
def metric_history(
    project: str,
    run_id: str,
    key: str,
    max_points: int | None = Query(default=None, ge=2, le=1_000_000),
    call: Call = need("viewer"),
) -> Response:
    """A metric's points as ``[step, value, timestamp_ms]``, downsampled to ``max_points``."""
    rows = _store(call.workspace).metric_rows(run_id, key, max_points=max_points)
    points = [
        (s, v if v is None or math.isfinite(v) else str(v), t)  # JSON has no infinity
        for s, v, t in rows
    ]
    return ORJSONResponse({"key": key, "points": points})


@api.post("/runs/{run_id}/delete")
def delete_run(project: str, run_id: str, call: Call = need("editor")) -> dict[str, Any]:
    """Hide a run from searches."""
    with call:
        _store(call.workspace).set_deleted(run_id, True)
    return {"run_id": run_id, "deleted": True}


@api.post("/runs/{run_id}/restore")
def restore_run(project: str, run_id: str, call: Call = need("editor")) -> dict[str, Any]:
    """Bring a deleted run back."""
    with call:
        _store(call.workspace).set_deleted(run_id, False)
    return {"run_id": run_id, "deleted": False}


# -- artifacts -----------------------------------------------------------------------------


@api.put("/environments")
async def put_environment(
    project: str,
    request: Request,
    media_type: str = Query(default="text/plain", max_length=100),
    call: Call = need("editor"),
) -> dict[str, Any]:
    """Store a run environment's package list; answers its SHA-256 (runs name it by that)."""
    _check_media_type(media_type)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _ENVIRONMENT_MAX:
            raise InvalidArgumentError("A package list is at most 16 MiB.")
    data = bytes(body)
    digest = hashlib.sha256(data).hexdigest()

    def store() -> None:
        with call:
            call.workspace.log_artifact(
                data,
                ObjectRef("environment", digest),
                "requirements.txt",
                media_type=media_type,
                replace=True,
            )

    await anyio.to_thread.run_sync(store)
    return {"digest": digest, "size": len(data)}


def _check_media_type(media_type: str) -> None:
    if not _MEDIA_TYPE.fullmatch(media_type):
        raise InvalidArgumentError(
            f"media_type must look like 'text/plain' (type/subtype); got {media_type!r}."
        )


class PayloadTooLargeError(ConveyorError):
    code = "conveyor.payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The artifact is larger than the server's limit of {limit} bytes.",
            hint="Ask the server's administrator to raise --max-artifact-mb.",
        )


def _check_owner(call: Call, kind: str, owner_id: str) -> ObjectRef:
    if kind not in _OWNER_KINDS:
        raise NotFoundError(
            f"The API serves artifacts of {', '.join(_OWNER_KINDS)}; not of {kind!r}."
        )
    if kind == "run":
        _store(call.workspace).get_run(owner_id, include_deleted=True)  # 404 unless it is ours
    elif kind == "model_version":
        _check_model_version(call, owner_id)
    else:
        _check_dataset_version(call, owner_id)
    return ObjectRef(kind, owner_id)


def _check_dataset_version(call: Call, version_id: str) -> None:
    from conveyor.store.metadata.schema import dataset_versions, datasets

    assert call.project is not None
    with call.workspace.metadata.read() as conn:
        found = conn.execute(
            sa.select(dataset_versions.c.id)
            .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
            .where(dataset_versions.c.id == version_id, datasets.c.project_id == call.project.id)
        ).first()
    if found is None:
        raise NotFoundError(f"No dataset version {version_id!r} in this project.")


def _check_model_version(call: Call, version_id: str) -> None:
    from conveyor.store.metadata.schema import model_versions, models

    assert call.project is not None
    with call.workspace.metadata.read() as conn:
        found = conn.execute(
            sa.select(model_versions.c.id)
            .join(models, models.c.id == model_versions.c.model_id)
            .where(model_versions.c.id == version_id, models.c.project_id == call.project.id)
        ).first()
    if found is None:
        raise NotFoundError(f"No model version {version_id!r} in this project.")


def _link_json(link: Any) -> dict[str, Any]:
    return {
        "owner_kind": link.owner.kind,
        "owner_id": link.owner.id,
        "name": link.name,
        "digest": link.digest,
        "size": link.size,
        "media_type": link.media_type,
        "created_at": link.created_at.isoformat(),
    }


@api.get("/artifacts/{kind}/{owner_id}")
def list_artifacts(
    project: str,
    kind: str,
    owner_id: str,
    limit: int | None = Query(default=None, ge=1, le=100_000),
    after: str | None = Query(default=None, max_length=2000),
    call: Call = need("viewer"),
) -> dict[str, Any]:
    """An owner's artifacts, by name: all of them, or a page at a time with ``limit`` (those
    named after ``after``); ``next_after`` is the name to ask for the next page with (null
    on the last). Without ``limit``, the whole list, as clients from before pages expect.
    A dataset version's include its files (``files/<path>``, and ``chunks/<digest>`` of
    large ones), found in its manifest: what download serves."""
    owner = _check_owner(call, kind, owner_id)
    links = {
        a.name: a for a in call.workspace.list_artifacts(owner) if after is None or a.name > after
    }
    if kind == "dataset_version":
        from conveyor.data.service import data_service

        try:
            # One more than a page: whether there are more is known without the rest.
            files = data_service(call.workspace).file_artifacts(
                owner_id, after=after, limit=None if limit is None else limit + 1
            )
        except (NotFoundError, IntegrityError, InvalidArgumentError):
            files = []  # its manifest is missing or damaged here: what it links, at least
        for a in files:
            links.setdefault(a.name, a)  # a version from before holdings links its files too
    names = sorted(links)
    page = names if limit is None else names[:limit]
    more = len(names) > len(page)
    return {
        "artifacts": [_link_json(links[name]) for name in page],
        "next_after": page[-1] if more else None,
    }


@api.get("/artifacts/{kind}/{owner_id}/{name:path}", response_model=None)
def download_artifact(
    project: str, kind: str, owner_id: str, name: str, call: Call = need("viewer")
) -> StreamingResponse:
    """An artifact's bytes, streamed; ``X-Conveyor-Digest`` carries their SHA-256."""
    name = validate_artifact_path(name)  # as stored: both lookups below see this form
    owner = _check_owner(call, kind, owner_id)
    ws = call.workspace
    with ws.metadata.read() as conn:  # the one link, not all of the owner's
        try:
            link: ArtifactLink | None = catalog.find_artifact(conn, owner, name)
        except NotFoundError:
            link = None
    if link is None and kind == "dataset_version":
        # A version links its manifest; its files are found in that manifest.
        from conveyor.data.service import data_service

        link = data_service(ws).file_artifact(owner_id, name)
    if link is None:
        raise NotFoundError(f"{owner} has no artifact {name!r}.")

    def chunks() -> Iterator[bytes]:
        with ws.artifacts.open(link.digest) as f:
            while chunk := f.read(1 << 20):
                yield chunk

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(link.size),
            "X-Conveyor-Digest": f"sha256:{link.digest}",
            "X-Conveyor-Media-Type": link.media_type,
            "Content-Disposition": "attachment",
        },
    )


@api.put("/artifacts/{kind}/{owner_id}/{name:path}")
async def upload_artifact(
    project: str,
    kind: str,
    owner_id: str,
    name: str,
    request: Request,
    media_type: str | None = Query(default=None, max_length=100),
    replace: bool = False,
    call: Call = need("editor"),
) -> dict[str, Any]:
    """Store the request body as the owner's artifact ``name`` (streamed to a temporary file,
    then into the artifact store), up to the server's artifact size limit."""
    validate_artifact_path(name)
    if kind != "run":
        raise InvalidArgumentError(
            "Only runs take uploaded artifacts; a model version's files come with its upload."
        )
    if media_type is not None:
        _check_media_type(media_type)
    limit = call.state.max_artifact_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(limit)
    owner = await anyio.to_thread.run_sync(_check_owner, call, kind, owner_id)
    fd, tmp = tempfile.mkstemp(prefix="conveyor-upload-")
    try:
        received = 0
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise PayloadTooLargeError(limit)
                await anyio.to_thread.run_sync(f.write, chunk)

        def store() -> Any:
            with call:
                return call.workspace.log_artifact(
                    tmp, owner, name, media_type=media_type, replace=replace
                )

        link = await anyio.to_thread.run_sync(store)
    finally:
        os.unlink(tmp)
    return _link_json(link)
