"""Routes over the domain and runtime services: models and promotion requests, datasets,
feature views, pipeline runs and schedules, deployments, monitors and alerts,
continuous-training policies, lineage.

Every route is one service call made as the caller; the services decide what is allowed
beyond the route's rule (a protected alias moves only through an approved request, nobody
approves their own request, a deployment changes only by an approver's hand).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, Field

from conveyor.core.encoding import jsonable
from conveyor.core.errors import InvalidArgumentError
from conveyor.core.parquet import read_parquet
from conveyor.models import wire
from conveyor.server.rules import Api, Call, need
from conveyor.store.records import ObjectRef

api = Api(prefix="/api/v1/projects/{project}")

MAX_INT = 2_147_483_647
Version = Annotated[int, Path(ge=1, le=MAX_INT)]


def _models(call: Call) -> Any:
    from conveyor.models.service import model_service

    return model_service(call.workspace)


# -- models --------------------------------------------------------------------------------


@api.get("/models")
def list_models(project: str, call: Call = need("viewer")) -> dict[str, Any]:
    """The project's registered models with their aliases."""
    return {"models": [wire.model_to_json(m) for m in _models(call).list_models()]}


@api.get("/models/{name}")
def get_model(project: str, name: str, call: Call = need("viewer")) -> dict[str, Any]:
    """A model with its aliases and versions (newest first)."""
    service = _models(call)
    return {
        "model": wire.model_to_json(service.model(name)),
        "versions": [wire.version_to_json(v) for v in service.versions(name)],
    }


@api.get("/models/{name}/versions/{version}")
def get_version(project: str, name: str, version: Version, call: Call = need("viewer")) -> Any:
    """One model version: flavor, signature, source run, digests."""
    return wire.version_to_json(_models(call).get(f"{name}/{version}"))


class Export(BaseModel):
    version: str = Field(min_length=1, max_length=300, description="the export: churn-onnx/1")


@api.post("/models/{name}/versions/{version}/exports", status_code=201)
def record_export(
    project: str, name: str, version: Version, body: Export, call: Call = need("editor")
) -> dict[str, Any]:
    """Record that model version ``body.version`` is an export of this one (what
    ``conveyor models export --register`` logged): a lineage edge."""
    models = _models(call)
    source, exported = models.get(f"{name}/{version}"), models.get(body.version)
    with call:
        models.link_export(source, exported)
    return {"src": source.ref, "dst": exported.ref, "relation": "exported_as"}


@api.get("/models/{name}/versions/{version}/data")
def version_data(
    project: str, name: str, version: Version, call: Call = need("viewer")
) -> dict[str, Any]:
    """The dataset versions the version's source run used (``name@N``)."""
    models = _models(call)
    return {"data_versions": models.data_versions(models.get(f"{name}/{version}"))}


@api.get("/model-versions/{ref:path}")
def resolve_version(project: str, ref: str, call: Call = need("viewer")) -> Any:
    """The version a reference names: ``churn/3``, ``churn@champion`` or ``churn@latest``."""
    return wire.version_to_json(_models(call).get(ref))


_MODEL_FILES_MAX = 100
_SPEC_MAX_BYTES = 256 * 1024
_SPEC_MAX_DEPTH = 16
_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.*+!_-]{0,63}")
_EXAMPLE_NAMES = ("input_example.parquet", "input_example.npy")


def _bounded(value: Any, what: str, depth: int = 0) -> None:
    """Refuse JSON deeper than a few levels or bigger than a few hundred KiB (stored and sent
    back with every listing)."""
    if depth > _SPEC_MAX_DEPTH:
        raise InvalidArgumentError(f"{what} nests deeper than {_SPEC_MAX_DEPTH} levels.")
    if isinstance(value, dict):
        for item in value.values():
            _bounded(item, what, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _bounded(item, what, depth + 1)
    elif isinstance(value, str) and "\x00" in value:
        raise InvalidArgumentError(f"{what} holds a NUL character.")
    elif isinstance(value, int) and not -(2**63) <= value < 2**64:
        raise InvalidArgumentError(f"{what} holds an integer beyond 64 bits.")
    if depth == 0:
        import orjson

        if len(orjson.dumps(value)) > _SPEC_MAX_BYTES:
            raise InvalidArgumentError(f"{what} is larger than {_SPEC_MAX_BYTES // 1024} KiB.")


def _multipart(required: list[str], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """The OpenAPI request body of an upload: these file parts (routes read the form)."""
    binary = {"type": "string", "format": "binary"}
    schema = {
        "type": "object",
        "required": required,
        "properties": {part: binary for part in (*required, *optional)},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }


@api.post(
    "/models/{name}/versions",
    status_code=201,
    openapi_extra=_multipart(["spec"], ("example",)),
)
async def log_version(
    project: str, name: str, request: Request, call: Call = need("editor")
) -> Any:
    """Register the next version of ``name`` from an upload: a ``spec`` part (flavor, info,
    requirements, signature, description, run_id, example_name, files) and one part per file
    (``file0``, ``file1``, ... in the order of ``spec.files``), plus ``example``. The server
    computes every digest itself."""
    import anyio

    _check_declared_size(call, request)
    form = await request.form(max_files=_MODEL_FILES_MAX + 2, max_fields=_MODEL_FILES_MAX + 2)
    try:
        missing = "A model upload needs a 'spec' file part (JSON)."
        spec = _model_spec(await _part(form, "spec", missing).read())
        files: dict[str, bytes] = {}
        for i, file_name in enumerate(spec["files"]):
            files[file_name] = await _file_part(form, i, file_name).read()
        example = None
        if spec["example_name"]:
            missing = "spec names an example_name but no 'example' part came."
            example = (spec["example_name"], await _part(form, "example", missing).read())
    finally:
        await form.close()

    def register() -> Any:
        from conveyor.models.flavors import get_flavor
        from conveyor.models.service import PreparedModel

        flavor = get_flavor(spec["flavor"])
        info = flavor.check_upload(files, spec["info"])  # what load trusts, from the files
        prepared = PreparedModel(
            flavor=flavor.name,
            files=files,
            info=info,
            requirements=spec["requirements"],
            signature=spec["signature"],
            example=example,
        )
        run = _owned_run(call, spec["run_id"])
        with call:
            version = _models(call).register(
                name, prepared, description=spec["description"], run=run
            )
        return wire.version_to_json(version)

    return await anyio.to_thread.run_sync(register)


def _part(form: Any, key: str, missing: str) -> Any:
    """The file part ``key`` of a multipart upload; a missing (or plain text) one is refused."""
    part = form.get(key)
    if part is None or isinstance(part, str):
        raise InvalidArgumentError(missing)
    return part


def _file_part(form: Any, index: int, name: str) -> Any:
    return _part(form, f"file{index}", f"The upload lacks the part file{index} ({name!r}).")


def _model_spec(raw: bytes) -> dict[str, Any]:
    import orjson

    from conveyor.core.names import validate_artifact_path

    if len(raw) > 4 * _SPEC_MAX_BYTES:
        raise InvalidArgumentError("The upload's spec is too large.")
    try:
        spec = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidArgumentError(f"The upload's spec is not JSON ({e}).") from None
    if not isinstance(spec, dict):
        raise InvalidArgumentError("The upload's spec is a JSON object.")
    checks = {
        "flavor": str,
        "info": dict,
        "requirements": dict,
        "description": str,
        "files": list,
    }
    for key, kind in checks.items():
        if not isinstance(spec.get(key), kind):
            raise InvalidArgumentError(f"spec.{key} must be a {kind.__name__}.")
    for key in ("info", "signature", "requirements"):
        _bounded(spec.get(key), f"spec.{key}")
    if spec.get("signature") is not None:
        if not isinstance(spec["signature"], dict):
            raise InvalidArgumentError("spec.signature must be an object or null.")
        from conveyor.models.signature import Signature

        try:
            spec["signature"] = Signature.from_dict(spec["signature"]).to_dict()
        except Exception as e:  # noqa: BLE001 - any malformed signature is the uploader's
            raise InvalidArgumentError(f"spec.signature is not a model signature ({e}).") from None
    for package, version in spec["requirements"].items():
        if not (
            isinstance(version, str) and _PACKAGE.fullmatch(package) and _VERSION.fullmatch(version)
        ):
            raise InvalidArgumentError(
                f"spec.requirements maps package names to versions; got {package!r}: {version!r}."
            )
    for key in ("run_id", "example_name"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise InvalidArgumentError(f"spec.{key} must be text or null.")
    if len(spec["files"]) > _MODEL_FILES_MAX or not all(isinstance(f, str) for f in spec["files"]):
        raise InvalidArgumentError(f"spec.files lists at most {_MODEL_FILES_MAX} file names.")
    for file_name in spec["files"]:
        validate_artifact_path(file_name)
    if spec.get("example_name") not in (None, *_EXAMPLE_NAMES):
        raise InvalidArgumentError(
            f"spec.example_name is one of {', '.join(_EXAMPLE_NAMES)}; "
            f"got {spec['example_name']!r}."
        )
    spec.setdefault("signature", None)
    spec.setdefault("run_id", None)
    spec.setdefault("example_name", None)
    return spec


@api.get("/models/{name}/aliases")
def alias_history(
    project: str, name: str, alias: str | None = None, call: Call = need("viewer")
) -> dict[str, Any]:
    """Who moved which alias of the model when."""
    return {"moves": jsonable(_models(call).alias_history(name, alias))}


class AliasTarget(BaseModel):
    version: int = Field(ge=1, le=MAX_INT)


@api.put("/models/{name}/aliases/{alias}")
def set_alias(
    project: str, name: str, alias: str, body: AliasTarget, call: Call = need("editor")
) -> Any:
    """Point an unprotected alias at a version (protected ones move through requests)."""
    with call:
        return jsonable(_models(call).set_alias(name, alias, body.version))


@api.delete("/models/{name}/aliases/{alias}")
def delete_alias(project: str, name: str, alias: str, call: Call = need("editor")) -> Any:
    """Remove an unprotected alias."""
    with call:
        return jsonable(_models(call).delete_alias(name, alias))


class Protection(BaseModel):
    aliases: list[str] = Field(default_factory=lambda: ["champion", "production"])
    change: Literal["set", "add", "remove"] = "set"


@api.put("/models/{name}/protection")
def protect(project: str, name: str, body: Protection, call: Call = need("admin")) -> Any:
    """Choose the aliases that move only through approved promotion requests (project admins:
    an approver alone could otherwise lift protection and skip the second person)."""
    with call:
        return wire.model_to_json(
            _models(call).require_approval(name, body.aliases, change=body.change)
        )


@api.get("/models/{name}/versions/{version}/card", response_model=None)
def model_card(
    project: str,
    name: str,
    version: Version,
    format: Literal["markdown", "html"] = "markdown",
    call: Call = need("viewer"),
) -> Any:
    """The version's model card, as Markdown or as an HTML page."""
    from fastapi.responses import PlainTextResponse

    text = _models(call).card(f"{name}/{version}", format=format)
    media = "text/markdown" if format == "markdown" else "text/html"
    return PlainTextResponse(text, media_type=media)


class EvaluationValues(BaseModel):
    dataset: str = Field(min_length=1, max_length=300, description="a dataset ref or <frame>")
    target: str = Field(min_length=1, max_length=300)
    task: Literal["classification", "regression"]
    rows: int = Field(ge=0, le=MAX_INT)
    metrics: dict[str, float | None] = Field(max_length=1000)
    slices: dict[str, list[dict[str, Any]]] = Field(default_factory=dict, max_length=1000)
    fairness: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=1000)
    importance: list[dict[str, Any]] = Field(default_factory=list, max_length=100_000)


@api.post("/models/{name}/versions/{version}/evaluations", status_code=201)
def record_evaluation(
    project: str,
    name: str,
    version: Version,
    body: EvaluationValues,
    call: Call = need("editor"),
) -> Any:
    """Record an evaluation a client computed (``cv.models.evaluate`` in remote mode), as
    editors log run metrics; promotions still need an approver."""
    values = body.model_dump(exclude={"dataset", "target"})
    with call:
        models = _models(call)
        found = models.get(f"{name}/{version}")
        return jsonable(models.record_evaluation(found, body.dataset, body.target, values))


@api.get("/model-comparison")
def compare_models(
    project: str,
    a: str = Query(min_length=1, max_length=300),
    b: str = Query(min_length=1, max_length=300),
    call: Call = need("viewer"),
) -> Any:
    """Two versions side by side: params, metrics, data versions, signature, requirements."""
    return jsonable(_models(call).compare(a, b))


@api.get("/models/{name}/versions/{version}/evaluations")
def evaluations(project: str, name: str, version: Version, call: Call = need("viewer")) -> Any:
    """The version's evaluations, per dataset and slice."""
    return {"evaluations": jsonable(_models(call).evaluations(f"{name}/{version}"))}


# -- promotion requests --------------------------------------------------------------------


class PromotionAsk(BaseModel):
    alias: str = Field(min_length=1, max_length=100)
    comment: str = Field(default="", max_length=10_000)


class Decision(BaseModel):
    comment: str = Field(default="", max_length=10_000)


class Approval(Decision):
    override_checks: bool = Field(
        default=False, description="approve a request that failed a check (needs a comment)"
    )


@api.get("/promotions")
def list_requests(
    project: str,
    model: str | None = None,
    status: str | None = None,
    call: Call = need("viewer"),
) -> dict[str, Any]:
    """Promotion requests, newest first, by model and status."""
    return {"requests": jsonable(_models(call).requests(model, status=status))}


@api.get("/promotions/{request_id}")
def get_request(project: str, request_id: str, call: Call = need("viewer")) -> Any:
    """One promotion request with its automatic checks."""
    return jsonable(_models(call).request(request_id))


@api.post("/models/{name}/versions/{version}/promotions", status_code=201)
def request_promotion(
    project: str, name: str, version: Version, body: PromotionAsk, call: Call = need("editor")
) -> Any:
    """Ask for an alias to point at this version; the checks run now."""
    with call:
        return jsonable(
            _models(call).request_promotion(f"{name}/{version}", body.alias, comment=body.comment)
        )


@api.post("/promotions/{request_id}/approve")
def approve(project: str, request_id: str, body: Approval, call: Call = need("approver")) -> Any:
    """Approve a pending request (not one's own): the alias moves in the same transaction."""
    with call:
        return jsonable(
            _models(call).approve(
                request_id, comment=body.comment, override_checks=body.override_checks
            )
        )


@api.post("/promotions/{request_id}/withdraw")
def withdraw(project: str, request_id: str, body: Decision, call: Call = need("editor")) -> Any:
    """Withdraw a pending request (or an approved, deferred, unused one): its requester only."""
    with call:
        return jsonable(_models(call).withdraw(request_id, comment=body.comment))


@api.post("/promotions/{request_id}/reject")
def reject(project: str, request_id: str, body: Decision, call: Call = need("approver")) -> Any:
    """Reject a pending request."""
    with call:
        return jsonable(_models(call).reject(request_id, comment=body.comment))


# -- datasets ------------------------------------------------------------------------------


def _data(call: Call) -> Any:
    from conveyor.data.service import data_service

    return data_service(call.workspace)


@api.get("/datasets")
def list_datasets(project: str, call: Call = need("viewer")) -> dict[str, Any]:
    """The project's datasets."""
    return {"datasets": jsonable(_data(call).datasets())}


@api.get("/datasets/{name:path}/versions")
def dataset_versions(project: str, name: str, call: Call = need("viewer")) -> dict[str, Any]:
    """A dataset's versions, newest first, with row counts, columns and profiles."""
    return {"versions": jsonable(_data(call).versions(name))}


@api.get("/dataset-version-refs")
def dataset_version_refs(
    project: str,
    id: Annotated[list[str], Query(max_length=100)] = [],  # noqa: B006 - FastAPI copies it
    call: Call = need("viewer"),
) -> dict[str, Any]:
    """The reference (``customers@3``) of each version id asked about (``?id=..&id=..``, at
    most 100), by id; ids of no version of this project are left out."""
    return {"refs": _data(call).refs(id)}


@api.get("/dataset-versions/{ref:path}")
def resolve_dataset_version(project: str, ref: str, call: Call = need("viewer")) -> Any:
    """The version a reference names: ``customers@3``, ``customers@latest``."""
    return jsonable(_data(call).get(ref))


_SCHEMA_MAX_BYTES = 1 << 20


@api.put(
    "/dataset-versions/{ref:path}/schema",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/yaml": {"schema": {"type": "string"}}},
        }
    },
)
async def set_dataset_schema(
    project: str, ref: str, request: Request, call: Call = need("editor")
) -> Any:
    """Save the request body, a pandera schema as YAML (what `conveyor data schema` prints),
    as the schema of version ``ref``; returns the version."""
    import anyio

    from conveyor.server.api_tracking import PayloadTooLargeError

    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _SCHEMA_MAX_BYTES:
            raise PayloadTooLargeError(_SCHEMA_MAX_BYTES)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgumentError("A schema is YAML text in UTF-8.") from None

    def save() -> Any:
        with call:
            _data(call).set_schema(ref, text)
            return _data(call).get(ref)

    return jsonable(await anyio.to_thread.run_sync(save))


_DATASET_FILES_MAX = 10_000


@api.post(
    "/datasets/{name:path}/versions",
    status_code=201,
    openapi_extra=_multipart(["spec"]),
)
async def add_dataset_version(
    project: str, name: str, request: Request, call: Call = need("editor")
) -> Any:
    """Add the next version of ``name`` from an upload: a ``spec`` part (description, files:
    their relative paths, source, run_id) and one part per file (``file0``, ``file1``, ...).
    The server hashes, profiles and records them as a local add does."""
    import shutil
    import tempfile

    import anyio

    from conveyor.core.names import validate_artifact_path

    _check_declared_size(call, request)
    form = await request.form(max_files=_DATASET_FILES_MAX + 1, max_fields=_DATASET_FILES_MAX + 1)
    folder = FilePath(tempfile.mkdtemp(prefix="conveyor-dataset-"))
    try:
        missing = "A dataset upload needs a 'spec' file part (JSON)."
        spec = _dataset_spec(await _part(form, "spec", missing).read())
        for i, relative in enumerate(spec["files"]):
            validate_artifact_path(relative)
            part = _file_part(form, i, relative)
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                while chunk := await part.read(1 << 20):
                    await anyio.to_thread.run_sync(out.write, chunk)

        def add() -> Any:
            from conveyor.store.activity import activity

            run = _owned_run(call, spec["run_id"])
            root = folder / spec["files"][0] if spec["single_file"] else folder
            source = spec["source"]  # the caller's path, as a local add records it
            with call:
                if run is None:
                    return _data(call).add_files(
                        name, root, description=spec["description"], source=source
                    )
                with activity(run):
                    return _data(call).add_files(
                        name, root, description=spec["description"], source=source
                    )

        return jsonable(await anyio.to_thread.run_sync(add))
    finally:
        await form.close()
        shutil.rmtree(folder, ignore_errors=True)


def _check_declared_size(call: Call, request: Request) -> None:
    from conveyor.server.api_tracking import PayloadTooLargeError

    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise InvalidArgumentError("An upload needs a Content-Length header.")
    if int(declared) > call.state.max_artifact_bytes:
        raise PayloadTooLargeError(call.state.max_artifact_bytes)


def _owned_run(call: Call, run_id: str | None) -> ObjectRef | None:
    if not run_id:
        return None
    from conveyor.tracking.store import TrackingStore

    runs = call.workspace.service("tracking-store", TrackingStore)
    runs.get_run(run_id)  # 404 unless it is one of this project's
    return ObjectRef("run", run_id)


def _dataset_spec(raw: bytes) -> dict[str, Any]:
    import orjson

    try:
        spec = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidArgumentError(f"The upload's spec is not JSON ({e}).") from None
    if not isinstance(spec, dict):
        raise InvalidArgumentError("The upload's spec is a JSON object.")
    files = spec.get("files")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise InvalidArgumentError("spec.files lists the relative paths of the uploaded files.")
    if len(files) > _DATASET_FILES_MAX or len(set(files)) != len(files):
        raise InvalidArgumentError(f"spec.files lists at most {_DATASET_FILES_MAX} distinct paths.")
    for key in ("description", "source"):
        if not isinstance(spec.get(key, ""), str):
            raise InvalidArgumentError(f"spec.{key} must be text.")
    run_id = spec.get("run_id")
    if run_id is not None and not isinstance(run_id, str):
        raise InvalidArgumentError("spec.run_id must be text or null.")
    single = spec.get("single_file", False)
    if not isinstance(single, bool) or (single and len(files) != 1):
        raise InvalidArgumentError("spec.single_file is true only for an upload of one file.")
    return {
        "files": files,
        "single_file": single,
        "description": spec.get("description", "")[:10_000],
        "source": spec.get("source", "")[:1000],
        "run_id": run_id,
    }


@api.get("/datasets/{name:path}/diff")
def dataset_diff(
    project: str,
    name: str,
    a: int = Query(ge=1, le=MAX_INT),
    b: int = Query(ge=1, le=MAX_INT),
    call: Call = need("viewer"),
) -> Any:
    """What changed between two versions of a dataset."""
    return jsonable(_data(call).diff(f"{name}@{a}", f"{name}@{b}"))


# -- deployments ---------------------------------------------------------------------------


def _deployments(call: Call) -> Any:
    from conveyor.serving.deployment import deployment_service

    return deployment_service(call.workspace)


@api.get("/deployments")
def list_deployments(project: str, call: Call = need("viewer")) -> dict[str, Any]:
    """The current revision of every deployment."""
    return {"deployments": jsonable(_deployments(call).list())}


@api.get("/deployments/{name}")
def deployment_history(
    project: str,
    name: str,
    limit: int | None = Query(default=None, ge=1, le=10_000, description="newest first"),
    call: Call = need("viewer"),
) -> dict[str, Any]:
    """A deployment's revisions, newest first: what it served, when and who changed it
    (``limit=1``: the current one, what model servers check every few seconds)."""
    service = _deployments(call)
    revisions = [service.get(name)] if limit == 1 else service.history(name)[:limit]
    return {"revisions": jsonable(revisions)}


Limits = dict[Literal["max_error_rate", "max_p99_ms"], float]


class NewDeployment(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    model: str = Field(min_length=1, max_length=300, description="churn/3 or churn@champion")
    limits: Limits | None = None


@api.post("/deployments", status_code=201)
def create_deployment(project: str, body: NewDeployment, call: Call = need("approver")) -> Any:
    """Create a deployment serving ``model`` to all traffic (revision 1)."""
    with call:
        return jsonable(_deployments(call).create(body.name, body.model, limits=body.limits))


class Candidate(BaseModel):
    model: str = Field(min_length=1, max_length=300)
    weight: float = Field(gt=0, lt=100, description="percent of traffic")
    limits: Limits | None = None
    key: str | None = Field(default=None, max_length=100, description="A/B: the sticky field")


@api.post("/deployments/{name}/canary")
def canary_deployment(
    project: str, name: str, body: Candidate, call: Call = need("approver")
) -> Any:
    """Send ``weight`` % of traffic to ``model`` as a canary; ``limits`` roll it back."""
    with call:
        return jsonable(
            _deployments(call).canary(name, body.model, body.weight, limits=body.limits)
        )


@api.post("/deployments/{name}/ab")
def ab_deployment(project: str, name: str, body: Candidate, call: Call = need("approver")) -> Any:
    """Split traffic with ``model`` at ``weight`` %, each user kept on one side by ``key``."""
    with call:
        return jsonable(_deployments(call).ab(name, body.model, body.weight, key=body.key or ""))


class Shadow(BaseModel):
    model: str = Field(min_length=1, max_length=300)


@api.post("/deployments/{name}/shadow")
def shadow_deployment(project: str, name: str, body: Shadow, call: Call = need("approver")) -> Any:
    """Mirror every request to ``model``: its answers are logged, never returned."""
    with call:
        return jsonable(_deployments(call).shadow(name, body.model))


class CanaryVerdict(BaseModel):
    model: str = Field(min_length=1, max_length=300, description="the canary, as routed")
    reason: str = Field(min_length=1, max_length=2000, description="the limit it broke")


@api.post("/deployments/{name}/canary/rollback")
def roll_back_canary(
    project: str, name: str, body: CanaryVerdict, call: Call = need("approver")
) -> Any:
    """Drop the canary ``model`` (what a model server's guard does when it breaks a limit);
    null when it is gone already. The guard's token needs the approver role."""
    with call:
        found = _deployments(call).rollback_canary(name, body.model, body.reason, actor=call.actor)
    return jsonable(found)


@api.post("/deployments/{name}/promote")
def promote_deployment(project: str, name: str, call: Call = need("approver")) -> Any:
    """Make the canary (or A/B challenger, or shadow) the primary at 100%."""
    with call:
        return jsonable(_deployments(call).promote(name))


class Rollback(BaseModel):
    to: int | None = Field(
        default=None, ge=1, le=MAX_INT, description="revision (default: the previous)"
    )
    reason: str = Field(default="", max_length=10_000)


@api.post("/deployments/{name}/rollback")
def rollback(project: str, name: str, body: Rollback, call: Call = need("approver")) -> Any:
    """Serve an earlier revision's models again (a new revision, audited)."""
    with call:
        return jsonable(_deployments(call).rollback(name, to=body.to, reason=body.reason))


# -- monitoring ----------------------------------------------------------------------------


def _monitoring(call: Call) -> Any:
    from conveyor.monitoring.service import monitoring_service

    return monitoring_service(call.workspace)


@api.get("/monitors")
def list_monitors(project: str, call: Call = need("viewer")) -> dict[str, Any]:
    """The project's monitors."""
    return {"monitors": jsonable(_monitoring(call).list())}


@api.get("/monitors/{name}")
def monitor_results(
    project: str,
    name: str,
    limit: int = Query(default=20, ge=1, le=1000),
    call: Call = need("viewer"),
) -> dict[str, Any]:
    """A monitor with its latest results."""
    service = _monitoring(call)
    return {
        "monitor": jsonable(service.get(name)),
        "results": jsonable(service.results(name, limit=limit)),
    }


class NewMonitor(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    deployment: str = Field(min_length=1, max_length=100)
    reference: str | None = Field(
        default=None, max_length=300, description="NAME@VERSION (default: the training data)"
    )
    window: str = Field(default="1h", max_length=20)
    schedule: str | None = Field(default=None, max_length=100)
    tests: str | dict[str, str] = "auto"
    thresholds: dict[str, float] | None = None
    min_labels: int = Field(default=30, ge=0, le=MAX_INT)
    columns: list[str] | None = Field(default=None, max_length=10_000)
    task: Literal["auto", "classification", "regression"] = "auto"
    max_feature_age: str | None = Field(default=None, max_length=20)


@api.post("/monitors", status_code=201)
def create_monitor(project: str, body: NewMonitor, call: Call = need("editor")) -> Any:
    """Create a monitor of a deployment's prediction log against a reference dataset version."""
    for field in ("tests", "thresholds", "columns"):
        _bounded(getattr(body, field), field)  # stored, and sent back with every listing
    with call:
        return jsonable(_monitoring(call).create(**body.model_dump()))


class Window(BaseModel):
    start: Moment | None = Field(default=None, description="ISO 8601 (default: end - window)")
    end: Moment | None = Field(default=None, description="ISO 8601 (default: now)")


@api.post("/monitors/{name}/run")
def run_monitor(project: str, name: str, body: Window, call: Call = need("editor")) -> Any:
    """Check one window of the deployment's prediction log (the server's) and store the
    result; alerts open or resolve as its rules say."""
    with call:
        return jsonable(_monitoring(call).run(name, start=body.start, end=body.end))


class AlertRule(BaseModel):
    expression: str = Field(min_length=1, max_length=500, description="drift.share_drifted > 0.3")
    cooldown: str = Field(default="6h", max_length=20)
    notify: list[str] = Field(default_factory=lambda: ["log"], max_length=20)


@api.post("/monitors/{name}/alert-rules", status_code=201)
def add_alert_rule(project: str, name: str, body: AlertRule, call: Call = need("admin")) -> Any:
    """Add an alert rule to a monitor (project admins). A rule that calls webhooks needs a
    server administrator: the server calls them from inside your network."""
    webhooks = [t for t in body.notify if t != "log"]
    if webhooks and not (call.principal is None or call.principal.server_admin):
        from conveyor.core.errors import PermissionDeniedError

        raise PermissionDeniedError(
            f"Only a server administrator adds rules that call webhooks ({webhooks[0]}): "
            "the server calls them from inside your network.",
            hint="Add the rule with notify 'log', or ask a server administrator.",
        )
    with call:
        return jsonable(
            _monitoring(call).alert_rule(
                name, body.expression, cooldown=body.cooldown, notify=body.notify
            )
        )


class Label(BaseModel):
    prediction_id: str = Field(min_length=1, max_length=100)
    label: Annotated[int, Field(ge=-(2**63), lt=2**63)] | float | str | bool | None


class Labels(BaseModel):
    labels: list[Label] = Field(max_length=100_000)


@api.post("/deployments/{name}/labels")
def add_labels(project: str, name: str, body: Labels, call: Call = need("editor")) -> Any:
    """Record ground truth for earlier predictions of deployment ``name`` (the feedback log
    the server's monitors read)."""
    rows = [item.model_dump() for item in body.labels]
    with call:
        return {"recorded": _monitoring(call).log_labels(rows, deployment=name)}


@api.get("/alerts")
def list_alerts(
    project: str,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    call: Call = need("viewer"),
) -> dict[str, Any]:
    """Alerts, newest first."""
    return {"alerts": jsonable(_monitoring(call).alerts(status=status))}


@api.post("/alerts/{alert_id}/{action}")
def close_alert(
    project: str,
    alert_id: str,
    action: Literal["acknowledge", "resolve"],
    call: Call = need("editor"),
) -> Any:
    """Acknowledge or resolve an alert."""
    status = "acknowledged" if action == "acknowledge" else "resolved"
    with call:
        return jsonable(_monitoring(call).close_alert(alert_id, status))


# -- feature views -------------------------------------------------------------------------


@contextmanager
def _features(call: Call) -> Iterator[Any]:
    """A feature service of its own for this request: a long-lived one would keep the
    definitions it first read after someone applies new ones (and its plans grow per query)."""
    from conveyor.features.service import FeatureService

    service = FeatureService(call.workspace)
    try:
        yield service
    finally:
        service.close()


@api.get("/feature-views")
def list_feature_views(project: str, call: Call = need("viewer")) -> dict[str, Any]:
    """Feature views: entities, features, TTL, online or not, latest definition version."""
    with _features(call) as features:
        return {"views": jsonable(features.list_views())}


@api.get("/feature-views/{name}")
def get_feature_view(project: str, name: str, call: Call = need("viewer")) -> Any:
    """A feature view: its definition, versions, materializations and freshness."""
    with _features(call) as features:
        return jsonable(features.show(name))


class Definitions(BaseModel):
    definitions: list[dict[str, Any]] = Field(
        min_length=1, max_length=500, description="Entity.spec() and FeatureView.spec() objects"
    )


@api.post("/feature-views")
def apply_feature_views(
    project: str, body: Definitions, call: Call = need("editor")
) -> dict[str, Any]:
    """Store entity and feature-view definitions (a changed view becomes a new version).

    Views read a dataset of the project (``DatasetSource``): the server does not read paths
    or run SQL a caller names, and on-demand views (code) are applied on the server's host.
    """
    from conveyor.features.definitions import DatasetSource, FeatureView
    from conveyor.features.service import definitions_from_specs

    _bounded(body.definitions, "definitions")
    objects = definitions_from_specs(body.definitions)
    for obj in objects:  # a view names a dataset of this project that exists
        if isinstance(obj, FeatureView) and isinstance(obj.source, DatasetSource):
            _data(call).get(obj.source.ref)
    with call, _features(call) as features:
        done = features.apply(objects)
    return {"applied": jsonable(done)}


_HISTORICAL_MAX_FEATURES = 1000
_HISTORICAL_MAX_ROWS = 2_000_000
_HISTORICAL_MAX_BYTES = 256 << 20


@api.post(
    "/features/historical",
    openapi_extra=_multipart(["spec", "entities"]),
    responses={200: {"content": {"application/vnd.apache.parquet": {}}}},
)
async def historical_features(
    project: str, request: Request, call: Call = need("viewer")
) -> Response:
    """Point-in-time correct features for entity rows: a ``spec`` part (JSON: ``features``,
    ``timestamp``, ``full_names``) and an ``entities`` part (Parquet: the keys and the
    timestamp column, and what on-demand views read). Answers Parquet: one column per
    feature, a row per entity row in the same order. At most 2,000,000 rows (256 MiB
    decoded) a request, within the body limit."""
    import io

    import anyio
    import orjson

    form = await request.form(max_files=2, max_fields=2)
    try:
        raw = await _part(form, "spec", "The request needs a 'spec' part (JSON).").read()
        entities = _part(form, "entities", "The request needs an 'entities' part (Parquet).")
        data = await entities.read()
    finally:
        await form.close()
    try:
        spec = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidArgumentError(f"The spec part is not JSON ({e}).") from None
    features = spec.get("features") if isinstance(spec, dict) else None
    if (
        not isinstance(features, list)
        or not 0 < len(features) <= _HISTORICAL_MAX_FEATURES
        or not all(isinstance(f, str) and 0 < len(f) <= 300 for f in features)
        or not isinstance(spec.get("timestamp", "event_timestamp"), str)
        or not isinstance(spec.get("full_names", False), bool)
    ):
        raise InvalidArgumentError(
            "spec: expected {features: [1 to 1,000 names], timestamp: column name, "
            "full_names: true or false}."
        )

    def compute() -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        def not_parquet(e: Exception) -> InvalidArgumentError:
            return InvalidArgumentError(f"The entities part is not a Parquet table ({e}).")

        # What the rows hold once decoded is checked first: Parquet compresses well, so
        # the body limit alone bounds nothing.
        try:
            meta = pq.ParquetFile(io.BytesIO(data)).metadata
            decoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        except (pa.ArrowException, OSError, ValueError) as e:
            raise not_parquet(e) from None
        if meta.num_rows > _HISTORICAL_MAX_ROWS or decoded > _HISTORICAL_MAX_BYTES:
            raise InvalidArgumentError(
                f"The entity rows are {meta.num_rows:,} rows, {decoded >> 20:,} MiB decoded; "
                f"a request takes at most {_HISTORICAL_MAX_ROWS:,} rows and "
                f"{_HISTORICAL_MAX_BYTES >> 20} MiB.",
                hint="Send the rows in batches.",
            )
        try:
            frame = read_parquet(data).to_pandas()
        except (pa.ArrowException, OSError, ValueError) as e:
            raise not_parquet(e) from None
        with _features(call) as service:
            result = service.historical(
                frame,
                features,
                timestamp=spec.get("timestamp", "event_timestamp"),
                full_names=spec.get("full_names", False),
            )
        # Only the feature columns go back: the caller has its rows (and their index).
        added = result[[c for c in result.columns if c not in frame.columns]]
        out = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(added, preserve_index=False), out)
        return out.getvalue()

    body = await anyio.to_thread.run_sync(compute)
    return Response(body, media_type="application/vnd.apache.parquet")


def _in_range(moment: datetime) -> datetime:
    if not 1970 <= moment.year <= 9998:
        raise ValueError("a time from 1970 to 9998 (UTC)")
    return moment


Moment = Annotated[datetime, AfterValidator(_in_range)]


class MaterializeRequest(BaseModel):
    views: list[str] | None = Field(default=None, max_length=1000, description="default: all")
    start: Moment | None = Field(default=None, description="default: where the last run ended")
    end: Moment | None = Field(default=None, description="default: now")


@api.post("/feature-views/materialize")
def materialize_features(
    project: str, body: MaterializeRequest, call: Call = need("editor")
) -> dict[str, Any]:
    """Write the views' latest values from their sources to the online store, on the server
    (definitions are applied where the stores are, so only theirs run here)."""
    with call, _features(call) as features:
        done = features.materialize(body.views, start=body.start, end=body.end or "now")
    return {"materializations": jsonable(done)}


class OnlineRequest(BaseModel):
    entity: dict[str, list[str | int | float | bool | None]] = Field(
        description="key column -> values, one per row", max_length=20
    )
    features: list[str] = Field(min_length=1, max_length=1000)
    with_timestamps: bool = False


@api.post("/features/online")
def online_features(project: str, body: OnlineRequest, call: Call = need("viewer")) -> Any:
    """The materialized values for the given entity rows (nulls for unknown ones)."""
    sizes = {len(v) for v in body.entity.values()}
    if len(sizes) > 1 or sum(sizes) > 10_000:
        raise InvalidArgumentError(
            "entity: every key column needs the same number of values, at most 10,000."
        )
    with _features(call) as features:
        found = features.online(
            body.entity, list(dict.fromkeys(body.features)), with_timestamps=body.with_timestamps
        )
    # JSON has no time type: the columns that hold datetimes are named, so that a client
    # gives them back as datetimes, as an embedded read does.
    times = [k for k, v in found.items() if any(isinstance(x, datetime) for x in v)]
    return {"values": jsonable(found), "times": times}


# -- pipelines -----------------------------------------------------------------------------


def pipeline_run_json(run: Any) -> dict[str, Any]:
    """A pipeline run with its steps as JSON (its outputs are named, not loaded)."""
    return {
        field: jsonable(getattr(run, field))
        for field in run.__dataclass_fields__
        if field != "outputs"
    }


@api.get("/pipeline-runs")
def list_pipeline_runs(
    project: str,
    pipeline: str | None = Query(default=None, max_length=200),
    status: Literal["RUNNING", "SUCCEEDED", "FAILED", "KILLED"] | None = None,
    limit: int = Query(default=50, ge=1, le=1000),
    call: Call = need("viewer"),
) -> dict[str, Any]:
    """Pipeline runs, newest first (without their steps)."""
    from conveyor.pipelines.service import list_runs

    found = list_runs(pipeline, status=status, limit=limit, workspace=call.workspace)
    return {"runs": [pipeline_run_json(r) for r in found]}


class PipelineStart(BaseModel):
    pipeline: str = Field(max_length=300, description="package.module:name, on the server")
    params: dict[str, Any] = Field(default_factory=dict, description="JSON values")
    executor: str = Field(default="local", max_length=40)
    cache: bool = True
    run_id: str | None = Field(
        default=None,
        pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$",
        description="the id to record it under (a new ULID the client chose, so that it can "
        "cancel the run even if this answer never reaches it)",
    )


@api.post("/pipeline-runs", status_code=201)
async def start_pipeline_run(
    project: str, body: PipelineStart, call: Call = need("editor")
) -> dict[str, Any]:
    """Run an installed pipeline on the server's host, as the caller; answers once the run
    is recorded (follow it with ``GET /pipeline-runs/{id}``). Only pipelines of the packages
    the server allows (``conveyor server --pipelines``); executors inline, local, local:N."""
    from conveyor.pipelines import launch

    _bounded(body.params, "params")
    launch.check_installed(body.pipeline, call.state.pipelines)
    launch.check_executor(body.executor, launch=True)
    job = {"reference": body.pipeline, "params": body.params, "cache": body.cache}
    return await _launch(call, job, body.executor, body.run_id)


class PipelineResume(BaseModel):
    executor: str | None = Field(default=None, max_length=40, description="default: the run's")
    cache: bool = Field(default=True, description="false: reuse only this run's finished steps")
    run_id: str | None = Field(default=None, pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$")


@api.post("/pipeline-runs/{run_id}/resume", status_code=201)
async def resume_pipeline_run(
    project: str, run_id: str, body: PipelineResume, call: Call = need("editor")
) -> dict[str, Any]:
    """Run a FAILED or KILLED run again on the server's host, reusing its finished steps
    (as ``conveyor pipeline resume``); the same packages and executors as a new run."""
    import anyio

    from conveyor.core.errors import ConflictError
    from conveyor.pipelines import launch
    from conveyor.pipelines.records import PipelineStatus
    from conveyor.pipelines.service import abandoned, get_run

    old = await anyio.to_thread.run_sync(lambda: get_run(run_id, workspace=call.workspace))
    launch.check_installed(old.entrypoint, call.state.pipelines, what="the run's pipeline")
    # (a RUNNING run whose coordinator is gone is marked KILLED and resumed by the launch)
    if old.status is PipelineStatus.SUCCEEDED or (
        old.status is PipelineStatus.RUNNING and abandoned(old) is None
    ):
        raise ConflictError(
            f"Pipeline run {old.id} is {old.status}; only FAILED or KILLED runs are resumed."
        )
    executor = body.executor or old.executor
    launch.check_executor(executor, launch=True)
    job = {"reference": old.entrypoint, "resume": old.id, "cache": body.cache}
    return await _launch(call, job, executor, body.run_id)


#: How long a launch waits for the run's record; a client waits a little longer.
START_TIMEOUT_S = 45.0
#: Runs the server's processes keep going at once: per user, and in all.
_LAUNCHES_PER_USER = 4
_LAUNCHES = 16


async def _launch(
    call: Call, job: dict[str, Any], executor: str, run_id: str | None
) -> dict[str, Any]:
    """Start ``job`` (see conveyor.pipelines.launch) as the caller, within the limits, and
    answer with its run once recorded (or with why it stopped before)."""
    import anyio

    from conveyor.core import ids
    from conveyor.core.errors import AlreadyExistsError
    from conveyor.pipelines.store import PipelineStore

    store = PipelineStore(call.workspace)
    run_id = run_id or ids.new_id()
    with call.state.lock:  # two requests with one id: only the first goes on
        if run_id in call.state.reserved:
            raise AlreadyExistsError(f"There is already a pipeline run {run_id}.")
        call.state.reserved.add(run_id)
    try:
        if await anyio.to_thread.run_sync(store.id_in_use, run_id):
            raise AlreadyExistsError(f"The id {run_id} is taken; send another, or none.")
        return await _launch_reserved(call, store, job, executor, run_id)
    finally:
        with call.state.lock:
            call.state.reserved.discard(run_id)


def _acting_as(call: Call) -> str | None:
    """What makes a process the server starts act as the caller, narrowed to the project
    (see ``ACTING_ENV``); None on a server without authentication."""
    from conveyor.store.principal import Principal, acting_env

    if call.principal is None or call.project is None:
        return None
    p, project_id = call.principal, call.project.id
    role = p.role_in(project_id)
    narrowed = Principal(
        user_id=p.user_id,
        name=p.name,
        roles={project_id: role} if role else {},
        is_admin=False,
        token_id=p.token_id,
        token_project_id=project_id,
    )
    return acting_env(narrowed, source=call.source)


async def _launch_reserved(
    call: Call, store: Any, job: dict[str, Any], executor: str, run_id: str
) -> dict[str, Any]:
    import asyncio

    import anyio

    from conveyor.core.errors import BackendUnavailableError, NotFoundError, RateLimitedError
    from conveyor.pipelines import launch

    assert call.project is not None
    reference = job["reference"]

    def recorded(run_id: str) -> Any:
        try:
            return store.get_run(run_id)
        except NotFoundError:
            return None

    acting_as = _acting_as(call)
    live = call.state.launches
    with call.state.lock:
        for user in list(live):
            live[user] = {p for p in live[user] if p.poll() is None}
        mine = live.setdefault(call.actor, set())
        if len(mine) >= _LAUNCHES_PER_USER or sum(map(len, live.values())) >= _LAUNCHES:
            raise RateLimitedError(
                f"This server already runs {len(mine)} of your pipeline runs and "
                f"{sum(map(len, live.values()))} in all (at most {_LAUNCHES_PER_USER} and "
                f"{_LAUNCHES}).",
                hint="Wait for one to end, or cancel one: conveyor pipeline cancel RUN.",
            )

        def ended(status: int) -> None:
            launch.settle(store, run_id, proc.pid, status)

        root = call.state.root.settings.root
        try:
            proc = launch.start(
                root,
                project=call.project.name,
                actor=call.actor,
                acting_as=acting_as,
                job={**job, "run_id": run_id, "executor": executor},
                on_exit=ended,
            )
        except OSError as e:
            raise BackendUnavailableError(f"The server could not start the run: {e}.") from e
        mine.add(proc)
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
    while True:
        run = await anyio.to_thread.run_sync(recorded, run_id)
        if run is None and proc.poll() is not None:
            run = await anyio.to_thread.run_sync(recorded, run_id)  # it may have just ended
            if run is None:  # it stopped before recording the run: say why
                reason = launch.last_words(root, run_id) or f"exit status {proc.returncode}"
                raise InvalidArgumentError(f"Pipeline {reference!r} did not start: {reason}")
        if run is not None:
            return pipeline_run_json(run)
        if asyncio.get_running_loop().time() > deadline:
            raise BackendUnavailableError(
                f"Pipeline {reference!r} was started as run {run_id} but has not recorded "
                f"it within {START_TIMEOUT_S:.0f} s.",
                hint=f"Look for it with GET .../pipeline-runs/{run_id}.",
            )
        await asyncio.sleep(0.25)


@api.get("/pipeline-runs/{run_id}")
def get_pipeline_run(project: str, run_id: str, call: Call = need("viewer")) -> dict[str, Any]:
    """A pipeline run (its id or its last 6+ characters) with each step's status, cache key,
    attempts, upstream steps, outputs (digests) and error."""
    from conveyor.pipelines.service import get_run

    return pipeline_run_json(get_run(run_id, workspace=call.workspace))


@api.get("/pipeline-runs/{run_id}/steps/{step}/log")
def get_step_log(project: str, run_id: str, step: str, call: Call = need("viewer")) -> Any:
    """What a step printed, and its traceback if it failed (a cached step: the log of the
    run it was taken from)."""
    from conveyor.pipelines.service import step_log

    return {"step": step, "log": step_log(run_id, step, workspace=call.workspace)}


@api.post("/pipeline-runs/{run_id}/cancel")
def cancel_pipeline_run(project: str, run_id: str, call: Call = need("editor")) -> Any:
    """Ask a running pipeline run to stop (its coordinator kills its steps within a second);
    a run whose coordinator died is marked KILLED at once."""
    from conveyor.pipelines.service import cancel

    with call:
        return pipeline_run_json(cancel(run_id, workspace=call.workspace))


@api.get("/schedules")
def list_pipeline_schedules(project: str, call: Call = need("viewer")) -> dict[str, Any]:
    """Cron schedules that start pipeline runs, with their next and last runs."""
    from conveyor.pipelines.schedules import list_schedules

    return {"schedules": jsonable(list_schedules(workspace=call.workspace))}


class NewSchedule(BaseModel):
    pipeline: str = Field(max_length=500, description="package.module:name, installed here")
    name: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][\w.-]{0,199}$", description="default: the pipeline's"
    )
    cron: str = Field(max_length=100, description="when, in UTC: '0 3 * * *'")
    params: dict[str, Any] = Field(default_factory=dict)
    executor: str = Field(default="local", max_length=40)
    catch_up: int = Field(default=1, ge=0, le=1000)
    replace: bool = False


#: Pipelines being imported to check a new schedule, at once per server process.
_DESCRIBING = threading.BoundedSemaphore(4)


@api.post("/schedules", status_code=201)
async def create_pipeline_schedule(
    project: str, body: NewSchedule, call: Call = need("editor")
) -> Any:
    """Schedule an installed pipeline (the packages the server allows, executors inline,
    local, local:N). The scheduler on the server's host starts its runs, each acting as the
    caller with the role they hold when it is due."""
    import anyio

    from conveyor.core.errors import RateLimitedError
    from conveyor.pipelines import launch
    from conveyor.pipelines.schedules import check_cron, store_schedule

    _bounded(body.params, "params")
    launch.check_installed(body.pipeline, call.state.pipelines)
    launch.check_executor(body.executor, launch=True)
    check_cron(body.cron)
    if not _DESCRIBING.acquire(blocking=False):
        raise RateLimitedError("The server is checking other schedules.", hint="Try again.")
    try:  # its name and bound params, from a process of its own
        root = call.state.root.settings.root
        described = await anyio.to_thread.run_sync(
            functools.partial(
                launch.describe, root, body.pipeline, body.params, acting_as=_acting_as(call)
            )
        )
    finally:
        _DESCRIBING.release()

    def store() -> Any:
        with call:
            return store_schedule(
                call.workspace,
                name=body.name or described["name"],
                pipeline=described["name"],
                entrypoint=body.pipeline,
                params=described["params"],
                cron=body.cron,
                executor=body.executor,
                catch_up=body.catch_up,
                replace=body.replace,
            )

    return jsonable(await anyio.to_thread.run_sync(store))


@api.delete("/schedules/{name}")
def delete_pipeline_schedule(project: str, name: str, call: Call = need("editor")) -> Any:
    """Delete a schedule (the runs it started stay)."""
    from conveyor.pipelines.schedules import delete_schedule

    with call:
        return jsonable(delete_schedule(name, workspace=call.workspace))


# -- the closed loop -----------------------------------------------------------------------


def _loop(call: Call) -> Any:
    from conveyor.loop.service import loop_service

    return loop_service(call.workspace)


@api.get("/loop/policies")
def list_policies(project: str, call: Call = need("viewer")) -> dict[str, Any]:
    """Continuous-training policies and their state."""
    return {"policies": jsonable(_loop(call).list())}


class PolicyBody(BaseModel):
    policy: dict[str, Any] = Field(description="Policy.to_dict(): name, deployment, pipeline...")


@api.post("/loop/policies")
def apply_policy(project: str, body: PolicyBody, call: Call = need("approver")) -> Any:
    """Create or update a continuous-training policy (checked now: the deployment, monitors,
    datasets and pipeline it names). Applying one lets the loop roll candidates out to a
    deployment, so it is a release decision: the approver role. The pipeline is
    ``package.module:name``, installed where the loop controller runs."""
    from conveyor.loop.policy import policy_from_wire

    _bounded(body.policy, "policy")
    policy = policy_from_wire(body.policy, pipelines=call.state.pipelines)
    with call:
        return jsonable(_loop(call).apply(policy))


@api.get("/loop/policies/{name}")
def policy_status(project: str, name: str, call: Call = need("viewer")) -> Any:
    """A policy's status: its current execution, cursors, recent events."""
    return jsonable(_loop(call).status(name))


@api.get("/loop/policies/{name}/events")
def policy_events(
    project: str,
    name: str,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    call: Call = need("viewer"),
) -> dict[str, Any]:
    """A policy's events, oldest first (the last ``limit``)."""
    return {"events": jsonable(_loop(call).events(name, limit=limit))}


@api.get("/loop/executions")
def loop_executions(
    project: str,
    policy: Annotated[str | None, Query(max_length=100)] = None,
    active: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    call: Call = need("viewer"),
) -> dict[str, Any]:
    """Executions, newest first (of one policy; only those in flight with ``active``)."""
    found = _loop(call).executions(policy, active=active, limit=limit)
    return {"executions": [execution_json(e) for e in found]}


def execution_json(execution: Any) -> dict[str, Any]:
    """An execution with every field (``to_dict`` leaves the spec and trigger key out)."""
    import dataclasses

    return jsonable(dataclasses.asdict(execution))


@api.post("/loop/policies/{name}/{action}")
def policy_action(
    project: str,
    name: str,
    action: Literal["pause", "resume", "trigger"],
    reason: Annotated[str, Query(max_length=500, description="why (trigger)")] = "",
    call: Call = need("editor"),
) -> Any:
    """Pause, resume or trigger a policy."""
    service = _loop(call)
    with call:
        if action == "trigger":
            why = (
                f"{reason} (via the API by {call.actor})"
                if reason
                else f"via the API by {call.actor}"
            )
            return execution_json(service.trigger(name, reason=why))
        return jsonable(service.pause(name, action == "pause"))


# -- batch predictions ---------------------------------------------------------------------


class BatchJob(BaseModel):
    id: str = Field(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$", description="the job's id (a ULID)")
    model: str = Field(min_length=1, max_length=300, description="the version it ran: churn/3")
    dataset: str | None = Field(default=None, max_length=300, description="customers@4")
    input: str = Field(max_length=2000, description="what it read, as the client describes it")
    output: str | None = Field(default=None, max_length=2000)
    rows: int = Field(ge=0, le=10**15)


@api.post("/batch-predictions", status_code=201)
def record_batch_prediction(
    project: str, body: BatchJob, call: Call = need("editor")
) -> dict[str, Any]:
    """Record a batch prediction a client ran (``conveyor predict``): its audit event and
    the lineage of the model version, and of the dataset version it read, into the job."""
    from conveyor.serving.batch import JOB_KIND, record_job

    version = _models(call).get(body.model)
    dataset = (
        ObjectRef("dataset_version", _data(call).get(body.dataset).id) if body.dataset else None
    )
    with call:
        record_job(call.workspace, body.id, version, body.input, body.output, body.rows, dataset)
    return {"job": str(ObjectRef(JOB_KIND, body.id)), "model": version.ref, "rows": body.rows}


# -- lineage -------------------------------------------------------------------------------


class Use(BaseModel):
    kind: Literal["dataset", "model"]
    ref: str = Field(min_length=1, max_length=300, description="customers@3 or churn/2")


@api.post("/runs/{run_id}/uses")
def record_use(project: str, run_id: str, body: Use, call: Call = need("editor")) -> Any:
    """Record that a run read a dataset version or loaded a model version (the lineage edge
    ``version -used_by-> run``), for clients that read them through this server."""
    assert call.project is not None
    run = _owned_run(call, run_id)
    assert run is not None
    with call:
        if body.kind == "dataset":
            node = ObjectRef("dataset_version", _data(call).get(body.ref).id)
        else:
            node = ObjectRef("model_version", _models(call).get(body.ref).id)
        with call.workspace.metadata.transaction(project_id=call.project.id) as uow:
            uow.link(node, run, "used_by")
    return {"src": str(node), "dst": str(run), "relation": "used_by"}


@api.get("/lineage/{kind}/{object_id}")
def lineage(
    project: str,
    kind: str,
    object_id: str,
    direction: Literal["upstream", "downstream"] = "upstream",
    depth: int | None = Query(default=None, ge=1, le=100),
    call: Call = need("viewer"),
) -> dict[str, Any]:
    """What is upstream or downstream of an object, within this project."""
    assert call.project is not None
    graph = call.state.root.metadata.lineage(
        ObjectRef(kind, object_id), direction=direction, depth=depth, project_id=call.project.id
    )
    return {
        "root": str(graph.root),
        "direction": graph.direction,
        "edges": [
            {"src": str(e.src), "dst": str(e.dst), "relation": e.relation, "depth": e.depth}
            for e in graph.edges
        ],
    }
