"""The model registry of a workspace: log, load, aliases, approvals, comparison, events.

One :class:`ModelService` per workspace (``ws.service("models", ModelService)``); the functions
in :mod:`conveyor.models` call the one of the workspace in use.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.errors import (
    ConflictError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from conveyor.models import registry
from conveyor.models.evaluation import PRIMARY_METRIC, Evaluation
from conveyor.models.events import EventBus, RegistryEvent
from conveyor.models.flavors import Flavor, flavor_for, get_flavor, requirements_of
from conveyor.models.loaded import LoadedModel
from conveyor.models.records import (
    AliasMove,
    ModelDocument,
    ModelVersion,
    PromotionRequest,
    RegisteredModel,
)
from conveyor.models.signature import Signature, SignatureError, infer_signature, to_frame_or_array
from conveyor.store import catalog
from conveyor.store.activity import current_activity
from conveyor.store.metadata.schema import (
    dataset_versions,
    datasets,
    deployment_revisions,
    deployments,
    lineage_edges,
    model_aliases,
    model_evaluations,
    models,
    promotion_requests,
)
from conveyor.store.principal import current_principal, require_role
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace, current_workspace

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_PROTECTED", "ModelService", "model_service"]

DOCUMENT = "conveyor-model.json"


@dataclass(frozen=True)
class PreparedModel:
    """A saved model ready to register: its files, flavor info, signature and example."""

    flavor: str
    files: dict[str, bytes]
    info: dict[str, Any]
    requirements: dict[str, str]
    signature: dict[str, Any] | None
    example: tuple[str, bytes] | None  # (artifact name, Parquet or .npy bytes)


CARD_PROFILE_COLUMNS = 15  # the columns of a training dataset's profile a model card shows
EXAMPLE = "input_example.parquet"
EXAMPLE_ARRAY = "input_example.npy"
DEFAULT_PROTECTED = ("champion", "production")
#: What ``require_approval``'s aliases do to those protected already.
_PROTECTION_CHANGES = ("set", "add", "remove")


def model_service(ws: Workspace | None = None) -> ModelService:
    """Return the model service of ``ws`` (default: the workspace in use)."""
    ws = ws or current_workspace()
    if ws.remote is not None:
        from conveyor.models.remote import RemoteModelService

        return ws.service("models", RemoteModelService)
    return ws.service("models", ModelService)


class ModelService:
    """Registered models and their versions, in one workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.events = EventBus()
        self.webhooks = None
        if ws.settings.webhooks.strip():
            from conveyor.models.webhooks import WebhookDispatcher, parse_webhook_urls

            self.webhooks = WebhookDispatcher(ws, parse_webhook_urls(ws.settings.webhooks))
            self.events.subscribe(self.webhooks)

    def close(self) -> None:
        """Finish webhook deliveries in flight (closed with the workspace)."""
        if self.webhooks is not None:
            self.webhooks.close()

    def _project_id(self) -> str:
        return self.ws.project.id

    # -- logging ---------------------------------------------------------------------------

    def log(
        self,
        model: Any,
        name: str,
        *,
        signature: Signature | dict[str, Any] | None = None,
        input_example: Any = None,
        description: str = "",
        flavor: str | None = None,
        imported_from: dict[str, Any] | None = None,
        features: Sequence[str] | None = None,
    ) -> ModelVersion:
        """Store ``model`` and register it as the next version of ``name``.

        Inside a run, the version records the run (a lineage edge ``run -produced-> version``).
        Without a signature, one is inferred from ``input_example`` and the model's
        predictions on it; with both, the example must match the signature. ``features``
        names the feature-store features (``view:feature``) the model takes, so a model server
        can read them from the online store for requests that give entity keys instead.
        """
        registry.validate_model_name(name)
        if features is not None and (
            isinstance(features, str) or not all(isinstance(f, str) and f for f in features)
        ):
            raise InvalidArgumentError(
                "features= is a list of feature references such as "
                "['customer_activity:txn_count_7d']."
            )
        chosen = get_flavor(flavor) if flavor else flavor_for(model)
        if flavor and not chosen.handles(model):
            raise InvalidArgumentError(
                f"The {flavor} flavor cannot store a {type(model).__qualname__}.",
                hint="Leave flavor= out to pick the flavor from the model.",
            )
        if isinstance(signature, dict):
            signature = Signature.from_dict(signature)
        elif signature is not None and not isinstance(signature, Signature):
            raise InvalidArgumentError(
                f"signature must be a Signature (or its dict form); got "
                f"{type(signature).__name__} {signature!r}.",
                hint="Leave it out to infer it from input_example, or build one: "
                "cv.models.infer_signature(X).",
            )
        example = to_frame_or_array(input_example) if input_example is not None else None
        if example is not None:
            if signature is None:
                signature = _infer_from_example(chosen, model, example)
            else:
                try:
                    signature.prepare(example)
                except SignatureError as e:
                    raise SignatureError(
                        f"The input example does not match the signature: "
                        f"{'; '.join(e.problems[:10])}.",
                        e.problems,
                        hint="Pass an example of the data the model is called with, or the "
                        "signature inferred from it.",
                    ) from e
        files, info = chosen.save(model, example)
        if imported_from:
            info = {**info, "imported_from": imported_from}
        if features:
            info = {**info, "features": list(features)}
        prepared = PreparedModel(
            flavor=chosen.name,
            files=files,
            info=info,
            requirements=requirements_of(chosen),
            signature=signature.to_dict() if signature else None,
            example=_encode_example(example) if example is not None else None,
        )
        return self.register(name, prepared, description=description, run=current_activity())

    def register(
        self,
        name: str,
        prepared: PreparedModel,
        *,
        description: str = "",
        run: ObjectRef | None = None,
    ) -> ModelVersion:
        """Store a prepared model's files and register them as the next version of ``name``
        (what :meth:`log` does after saving the model; a team server does it for uploads)."""
        registry.validate_model_name(name)
        get_flavor(prepared.flavor)  # a known flavor
        # A deployment that follows the newest version changes with this one.
        self._check_served(name, (name, f"{name}@latest"), "register a version of")
        store = self.ws.artifacts
        stored = {n: store.put_bytes(data) for n, data in prepared.files.items()}
        links = [
            (f"model/{n}", p.digest, p.size, "application/octet-stream") for n, p in stored.items()
        ]
        checked = {p.digest for p in stored.values() if not p.created}
        example_ref = None
        if prepared.example is not None:
            example_name, example_bytes = prepared.example
            put = store.put_bytes(example_bytes)
            example_ref = (put.digest, put.size)
            links.append((example_name, put.digest, put.size, "application/octet-stream"))
            if not put.created:
                checked.add(put.digest)
        document = ModelDocument(
            flavor=prepared.flavor,
            files={n: (p.digest, p.size) for n, p in stored.items()},
            info=prepared.info,
            requirements=prepared.requirements,
            signature=prepared.signature,
            input_example=example_ref,
        )
        doc = store.put_bytes(document.encode())
        links.append((DOCUMENT, doc.digest, doc.size, "application/json"))
        if not doc.created:
            checked.add(doc.digest)
        info = prepared.info
        values = {
            "digest": doc.digest,
            "flavor": prepared.flavor,
            "signature": document.signature,
            "requirements": document.requirements,
            "info": info,
            "run_id": run.id if run is not None and run.kind == "run" else None,
        }
        with self.ws.metadata.transaction(project_id=self._project_id()) as uow:
            version = registry.create_version(
                uow, self._project_id(), name, values, description=description
            )
            ref = ObjectRef(registry.VERSION_KIND, version.id)
            catalog.link_many(uow, store, ref, links, check=checked)
            if run is not None:
                uow.link(run, ref, "produced")
        self._emit("model_version.created", name, version=version.version, digest=version.digest)
        return version

    def import_mlflow(self, path: str, name: str, *, trust: bool = False) -> ModelVersion:
        """Register the MLflow model at ``path`` (sklearn flavor) as the next version of name.

        Its pickle is read (which needs ``trust=True``) and stored again with skops; the
        signature and input example are converted; the MLflow source is kept in the info.
        """
        from conveyor.models.mlflow_import import read_mlflow_model

        registry.validate_model_name(name)
        found = read_mlflow_model(path, trust=trust)
        return self.log(
            found.model,
            name,
            signature=found.signature,
            input_example=found.input_example,
            description=found.description,
            imported_from=found.source,
        )

    def export(
        self,
        ref: str,
        *,
        format: str = "onnx",
        path: str | None = None,
        register: str | None = None,
        tolerance: float = 1e-4,
    ) -> dict[str, Any]:
        """Convert a scikit-learn version to ONNX, check it predicts the same, write it.

        The check runs both on the version's input example: labels must be equal and
        probabilities within ``tolerance``; a mismatch raises and writes nothing. With
        ``register``, the ONNX model is also logged as a version of that model (flavor onnx).
        """
        if format != "onnx":
            raise InvalidArgumentError(f"export writes format 'onnx' only; got {format!r}.")
        version = self.get(ref)
        if version.flavor != "sklearn":
            raise InvalidArgumentError(
                f"{version.ref} is a {version.flavor} model; export converts scikit-learn "
                "models (skl2onnx)."
            )
        example = self.input_example(version.ref)
        if example is None or version.signature is None:
            raise InvalidArgumentError(
                f"{version.ref} has no input example: the export is checked on it.",
                hint="Log the model with input_example=X[:5].",
            )
        if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise InvalidArgumentError(
                f"Cannot write {path}: the folder {os.path.dirname(path) or '.'} does not exist."
            )
        from conveyor.models.onnx_export import convert_and_check

        loaded = self.load(version.ref)
        onnx_model, report = convert_and_check(loaded, example, tolerance=tolerance)
        result: dict[str, Any] = {"ref": version.ref, **report}
        if path is not None:
            from pathlib import Path

            target = Path(path)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(onnx_model.SerializeToString())
            tmp.replace(target)
            result["path"] = str(target)
        if register is not None:
            exported = self.log(
                onnx_model,
                register,
                signature=version.signature,
                input_example=example,
                description=f"ONNX export of {version.ref} (digest {version.digest[:12]}).",
            )
            self.link_export(version, exported)
            result["registered"] = exported.ref
        return result

    def link_export(self, source: ModelVersion, exported: ModelVersion) -> None:
        """Record in the lineage that ``exported`` is an export of ``source``."""
        with self.ws.metadata.transaction(project_id=self._project_id()) as uow:
            uow.link(
                ObjectRef(registry.VERSION_KIND, source.id),
                ObjectRef(registry.VERSION_KIND, exported.id),
                "exported_as",
            )

    # -- reading ---------------------------------------------------------------------------

    def get(self, ref: str, *, at: datetime | str | None = None) -> ModelVersion:
        """Return the version ``ref`` names (``churn/3``, ``churn@champion``, ``churn``).

        With ``at`` (a datetime, or an ISO 8601 string; naive means UTC), an alias resolves
        to the version it pointed at then.
        """
        if at is not None:
            at = _as_time(at)
        with self.ws.metadata.read() as conn:
            return registry.find_version(conn, self._project_id(), ref, at=at)

    def versions(self, name: str) -> list[ModelVersion]:
        """Return the versions of model ``name``, newest first."""
        with self.ws.metadata.read() as conn:
            return registry.list_versions(conn, self._project_id(), name)

    def list_models(self) -> list[RegisteredModel]:
        """Return the project's models, sorted by name."""
        with self.ws.metadata.read() as conn:
            return registry.list_models(conn, self._project_id())

    def model(self, name: str) -> RegisteredModel:
        """Return the registered model ``name`` with its aliases."""
        with self.ws.metadata.read() as conn:
            return registry.to_model(conn, registry.find_model(conn, self._project_id(), name))

    def document(self, version: ModelVersion) -> ModelDocument:
        """Return the stored document of ``version``, checked against its digest."""
        return ModelDocument.decode(self._content(version, version.digest))

    def _content(self, version: ModelVersion, digest: str) -> bytes:
        """The stored bytes of one of ``version``'s files, checked against ``digest``."""
        return self.ws.artifacts.get(digest)  # verifies the sha256

    def load(self, ref: str, *, trust: bool = False) -> LoadedModel:
        """Load the version ``ref`` names, checking every byte against the recorded digests.

        A flavor whose format runs code when loaded (pickle) needs ``trust=True`` or a
        project that sets ``trust_pickled_models``.
        """
        version = self.get(ref)
        document = self.document(version)
        flavor = get_flavor(document.flavor)
        if flavor.executes_code and not (trust or self.ws.settings.trusts_pickled_models):
            raise PermissionDeniedError(
                f"{version.ref} is a {flavor.name} model, {flavor.code_reason}: loading it can "
                "run code from the file, so it needs your explicit trust.",
                hint="If you trust whoever can write to this store, pass trust=True (CLI: "
                '--trust) or set trust_pickled_models = "true" in conveyor.toml.',
            )
        files = {
            name: self._content(version, digest) for name, (digest, _) in document.files.items()
        }
        try:
            obj = flavor.load(files, document.info)
        except ImportError as e:  # ModuleNotFoundError too: the model's code is not here
            where = document.info.get("class") or getattr(e, "name", None) or "its code"
            raise InvalidArgumentError(
                f"{version.ref} cannot be loaded here: it needs {where}, and importing it "
                f"failed ({type(e).__name__}: {e}).",
                hint="Run from the folder that holds that module, add it to PYTHONPATH, or "
                "install its package, as when the model was logged.",
            ) from e
        run = current_activity()
        if run is not None:
            self._record_use(version, run)
        return LoadedModel(version, flavor, obj)

    def _record_use(self, version: ModelVersion, run: ObjectRef) -> None:
        """Draw the lineage edge ``version -used_by-> run``."""
        with self.ws.metadata.transaction(project_id=self._project_id()) as uow:
            uow.link(ObjectRef(registry.VERSION_KIND, version.id), run, "used_by")

    def input_example(self, ref: str) -> Any:
        """Return the input example stored with a version (None when it has none)."""
        version = self.get(ref)
        document = self.document(version)
        if document.input_example is None:
            return None
        data = self._content(version, document.input_example[0])
        return _decode_example(data)

    # -- aliases ---------------------------------------------------------------------------

    def set_alias(
        self, name: str, alias: str, version: int, *, request_id: str | None = None
    ) -> AliasMove:
        """Point ``alias`` of model ``name`` at ``version``, atomically; returns the move.

        A protected alias (see :meth:`require_approval`) moves only through an approved
        promotion request: its approval, or, for a deferred request, ``request_id`` (see
        :meth:`request_promotion`): the continuous-training loop has a candidate approved
        first and moves the alias once its rollout succeeds.
        """
        registry.validate_alias(alias)
        target = self.get(f"{name}/{_version_number(version)}")
        model = self.model(name)
        self._check_served_alias(name, alias)
        if request_id is not None:
            return self._apply_deferred(request_id, model.id, alias, target)
        if alias in model.protected_aliases:
            raise PermissionDeniedError(
                f"The alias {name}@{alias} is protected: it moves only through an approved "
                "promotion request.",
                hint=f"Request it: cv.models.request_promotion({target.ref!r}, alias={alias!r}) "
                f"or `conveyor models promote {target.ref} --alias {alias}`.",
            )
        return self._move(model.id, name, alias, target.id, target.version)

    def _apply_deferred(
        self, request_id: str, model_id: str, alias: str, target: ModelVersion
    ) -> AliasMove:
        """Move ``alias`` with the deferred request ``request_id``: approved, for exactly this
        move, by its requester, while the alias still points where it did when the request was
        made; the request is used up (``applied``) in the same transaction as the move."""
        with self.ws.metadata.transaction(project_id=self._project_id()) as uow:
            row = registry.find_request(uow.conn, self._project_id(), request_id)
            request = registry.to_request(uow.conn, row)
            asked = f"{request.model}/{request.version}"
            holder = uow.conn.execute(
                sa.select(model_aliases.c.version_id).where(
                    model_aliases.c.model_id == model_id, model_aliases.c.alias == alias
                )
            ).scalar_one_or_none()
            problem = ""
            if not request.deferred:
                problem = "it is not a deferred request (approving it moved its alias already)"
            elif request.status != "approved":
                problem = f"it is {request.status}"
            elif (request.alias, asked) != (alias, target.ref):
                problem = f"it asks for {request.model}@{request.alias} -> {asked}"
            elif request.requested_by != uow.actor:
                problem = f"only its requester, {request.requested_by}, may use it"
            elif holder != row.holder_version_id:
                problem = "the alias has moved since it was made, so its checks are out of date"
            if problem:
                raise PermissionDeniedError(
                    f"Request {request_id} cannot move {target.name}@{alias} to {target.ref}: "
                    f"{problem}."
                )
            used = uow.conn.execute(
                promotion_requests.update()
                .where(
                    promotion_requests.c.id == request_id,
                    promotion_requests.c.status == "approved",
                )
                .values(status="applied")
            ).rowcount
            if used != 1:
                raise ConflictError(f"Request {request_id} was used at the same time.")
            previous_id = registry.move_alias(
                uow, model_id, alias, target.id, request_id=request_id
            )
            previous = registry.version_by_id(uow.conn, previous_id) if previous_id else None
            uow.audit(
                "promotion.apply",
                ObjectRef(registry.REQUEST_KIND, request_id),
                after={"alias": alias, "ref": target.ref},
            )
            move = AliasMove(
                model=target.name,
                alias=alias,
                version=target.version,
                previous=previous.version if previous else None,
                at=uow.now,
                actor=uow.actor,
                request_id=request_id,
            )
        self._emit(
            "alias.moved",
            target.name,
            alias=alias,
            version=target.version,
            previous=move.previous,
            request_id=request_id,
        )
        return move

    def withdraw(self, request_id: str, *, comment: str = "") -> PromotionRequest:
        """Withdraw a request that is pending, or approved but deferred and unused: only its
        requester may (the loop does when the candidate does not make it)."""
        with self.ws.metadata.transaction(project_id=self._project_id()) as uow:
            row = registry.find_request(uow.conn, self._project_id(), request_id)
            if row.requested_by != uow.actor:
                raise PermissionDeniedError(
                    f"Only {row.requested_by}, who made request {request_id}, may withdraw it."
                )
            done = uow.conn.execute(
                promotion_requests.update()
                .where(
                    promotion_requests.c.id == request_id,
                    sa.or_(
                        promotion_requests.c.status == "pending",
                        (promotion_requests.c.status == "approved")
                        & (promotion_requests.c.deferred.is_(True)),
                    ),
                )
                .values(status="withdrawn", decision_comment=comment)
            ).rowcount
            if not done and row.status != "withdrawn":  # withdrawn already: nothing to do
                raise ConflictError(
                    f"Request {request_id} is {row.status}, so it cannot be withdrawn: only a "
                    "pending request can be, or an approved one that waits (deferred) for its "
                    "requester to move the alias.",
                    hint="To undo an approved promotion, move the alias back with a new request.",
                )
            if done:
                uow.audit(
                    "promotion.withdraw",
                    ObjectRef(registry.REQUEST_KIND, request_id),
                    before={"status": row.status},
                    after={"status": "withdrawn", "comment": comment},
                )
        return self.request(request_id)

    def delete_alias(self, name: str, alias: str) -> AliasMove:
        """Remove ``alias`` from model ``name`` (protected aliases cannot be removed)."""
        registry.validate_alias(alias)
        model = self.model(name)
        self._check_served_alias(name, alias)
        if alias in model.protected_aliases:
            raise PermissionDeniedError(
                f"The alias {name}@{alias} is protected and cannot be removed.",
                hint=f"Release that alias first: conveyor models protect {name} {alias} --off "
                f"(cv.models.require_approval({name!r}, [{alias!r}], change='remove')).",
            )
        if alias not in model.aliases:
            raise NotFoundError(f"Model {name!r} has no alias {alias!r}.")
        return self._move(model.id, name, alias, None, None)

    def _move(
        self,
        model_id: str,
        name: str,
        alias: str,
        version_id: str | None,
        number: int | None,
        request_id: str | None = None,
    ) -> AliasMove:
        with self.ws.metadata.transaction(project_id=self._project_id()) as uow:
            previous_id = registry.move_alias(
                uow, model_id, alias, version_id, request_id=request_id
            )
            previous = registry.version_by_id(uow.conn, previous_id) if previous_id else None
            move = AliasMove(
                model=name,
                alias=alias,
                version=number,
                previous=previous.version if previous else None,
                at=uow.now,
                actor=uow.actor,
                request_id=request_id,
            )
        kind = "alias.moved" if version_id else "alias.deleted"
        self._emit(kind, name, alias=alias, version=number, previous=move.previous)
        return move

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of ``alias`` (or of every alias) of ``name``, oldest first."""
        with self.ws.metadata.read() as conn:
            return registry.alias_history(conn, self._project_id(), name, alias)

    def require_approval(
        self,
        name: str,
        aliases: list[str] | tuple[str, ...] = DEFAULT_PROTECTED,
        *,
        change: str = "set",
    ) -> RegisteredModel:
        """Protect ``aliases`` of ``name``: they move only through approved requests.

        ``change`` says what ``aliases`` are: ``"set"`` (exactly these; an empty list turns
        protection off), ``"add"`` (these too) or ``"remove"`` (no longer these). Adding and
        removing read the protected aliases in the same transaction that writes them, so
        two people changing protection at once both get their change. Audited.
        """
        if change not in _PROTECTION_CHANGES:
            raise InvalidArgumentError(
                f"change must be one of {', '.join(_PROTECTION_CHANGES)}; got {change!r}."
            )
        named = {registry.validate_alias(a) for a in aliases}
        model = self.model(name)
        self._check_approver(None)
        # Turning protection off would let one approver skip the second person: admins only.
        require_role(self._project_id(), "admin", "change which aliases are protected")
        with self.ws.metadata.transaction(project_id=self._project_id()) as uow:
            held = uow.conn.execute(
                sa.select(models.c.protected_aliases)
                .where(models.c.id == model.id)
                .with_for_update()
            ).scalar_one()
            before = sorted(held or ())
            if change == "add":
                wanted = sorted(named.union(before))
            elif change == "remove":
                wanted = sorted(set(before) - named)
            else:
                wanted = sorted(named)
            uow.conn.execute(
                models.update()
                .where(models.c.id == model.id)
                .values(protected_aliases=wanted or None)
            )
            uow.audit(
                "model.protect",
                ObjectRef(registry.MODEL_KIND, model.id),
                before={"protected_aliases": before},
                after={"protected_aliases": wanted},
            )
        return self.model(name)

    # -- promotion requests ----------------------------------------------------------------

    def request_promotion(
        self, ref: str, alias: str, *, comment: str = "", deferred: bool = False
    ) -> PromotionRequest:
        """Ask for ``alias`` to point at the version ``ref`` names; checks run now.

        ``deferred``: approving records the decision without moving the alias; the requester
        moves it later with ``set_alias(..., request_id=)``, once, and only while the alias
        still points where it did (then the request is ``applied``), or withdraws it.

        Checks: the signature is compatible with the current holder's, the stored input
        example matches the signature and the model predicts on it, and (when evaluations
        exist) the candidate's evaluation against the holder's.
        """
        registry.validate_alias(alias)
        candidate = self.get(ref)
        model = self.model(candidate.name)
        holder = None
        if alias in model.aliases:
            holder = self.get(f"{candidate.name}/{model.aliases[alias]}")
        checks = self._checks(candidate, holder)
        request_id = ids.new_id()
        with self.ws.metadata.transaction(project_id=self._project_id()) as uow:
            pending = uow.conn.execute(
                sa.select(promotion_requests.c.id).where(
                    promotion_requests.c.model_id == model.id,
                    promotion_requests.c.version_id == candidate.id,
                    promotion_requests.c.alias == alias,
                    promotion_requests.c.status == "pending",
                )
            ).scalar_one_or_none()
            if pending is not None:
                raise ConflictError(
                    f"{candidate.ref} already has a pending request for @{alias}: {pending}.",
                    hint=f"Wait for a second person to decide it (conveyor models approve|reject "
                    f"{pending}), or withdraw it: conveyor models withdraw {pending}.",
                )
            uow.conn.execute(
                promotion_requests.insert().values(
                    id=request_id,
                    model_id=model.id,
                    version_id=candidate.id,
                    alias=alias,
                    holder_version_id=holder.id if holder else None,
                    status="pending",
                    checks=checks,
                    requested_by=uow.actor,
                    requested_at=uow.now,
                    comment=comment,
                    deferred=deferred,
                )
            )
            uow.audit(
                "promotion.request",
                ObjectRef(registry.REQUEST_KIND, request_id),
                after={"ref": candidate.ref, "alias": alias, "checks": checks},
            )
        request = self.request(request_id)
        self._emit(
            "promotion.requested",
            candidate.name,
            request_id=request_id,
            version=candidate.version,
            alias=alias,
        )
        return request

    def _checks(self, candidate: ModelVersion, holder: ModelVersion | None) -> list[dict[str, Any]]:
        checks: list[dict[str, Any]] = []
        if holder is None:
            checks.append(_check("signature", "skipped", "no current holder to compare with"))
        elif candidate.signature is None or holder.signature is None:
            checks.append(_check("signature", "skipped", "a version has no signature"))
        else:
            changes = [c for c in holder.signature.diff(candidate.signature) if "input" in c]
            checks.append(
                _check("signature", "failed", "; ".join(changes))
                if changes
                else _check("signature", "passed", f"inputs match {holder.ref}")
            )
        example = self.input_example(candidate.ref)
        trusted = not get_flavor(candidate.flavor).executes_code or (
            self.ws.settings.trusts_pickled_models
        )
        if example is None:
            checks.append(_check("input_example", "skipped", "the version has no input example"))
        elif not trusted:
            # Loading a pickle runs its code: a request must not do that on someone's behalf.
            checks.append(
                _check(
                    "input_example",
                    "skipped",
                    f"{candidate.flavor} models load only with trust; the reviewer checks it",
                )
            )
        else:
            try:
                loaded = self.load(candidate.ref)
                loaded.predict(example)
            except Exception as e:  # noqa: BLE001 - any failure to predict is the finding
                checks.append(_check("input_example", "failed", f"{type(e).__name__}: {e}"))
            else:
                checks.append(
                    _check("input_example", "passed", f"predicted {len(example)} example rows")
                )
        checks.append(self._evaluation_check(candidate, holder))
        return checks

    def _evaluation_check(
        self, candidate: ModelVersion, holder: ModelVersion | None
    ) -> dict[str, Any]:
        mine = self.evaluations(candidate.ref)
        if not mine:
            return _check(
                "evaluation",
                "skipped",
                f"{candidate.ref} has no evaluation: run cv.models.evaluate first",
            )
        if holder is None:
            name, value, _ = mine[0].primary
            return _check(
                "evaluation", "passed", f"{name} {_fmt(value)} on {mine[0].dataset}; no holder"
            )
        # Like with like: the same dataset version, target and task. A newer evaluation of
        # another kind (another task, say) does not hide a comparable one that fails.
        theirs: dict[tuple[str, str, str], Evaluation] = {}
        for e in self.evaluations(holder.ref):  # newest first: keep each kind's newest
            theirs.setdefault((e.dataset, e.target, e.task), e)
        pairs = [
            (e, theirs[key])
            for e in mine
            if e.dataset != "<frame>" and (key := (e.dataset, e.target, e.task)) in theirs
        ]
        compared = [(o, t, m) for o, t in pairs if (m := _shared(o, t)) is not None]
        if not compared:
            return _check(
                "evaluation",
                "skipped",
                f"no dataset version, target and task both {candidate.ref} and {holder.ref} were "
                "evaluated on with a metric both have",
            )
        ours, other, name = compared[0]  # the candidate's newest comparable evaluation
        higher = PRIMARY_METRIC[ours.task][1] if name != "accuracy" else True
        value, held = float(ours.metrics[name] or 0.0), float(other.metrics[name] or 0.0)
        better = value >= held if higher else value <= held
        detail = (
            f"{name} {_fmt(value)} vs {_fmt(held)} for {holder.ref} on {ours.dataset} "
            f"({'higher' if higher else 'lower'} is better)"
        )
        return _check("evaluation", "passed" if better else "failed", detail)

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(
        self,
        ref: str,
        data: Any,
        *,
        target: str,
        slices: list[str] | None = None,
        sensitive: list[str] | None = None,
        task: str | None = None,
        importance: bool = True,
        trust: bool = False,
    ) -> Evaluation:
        """Evaluate a version on labelled data (a dataset version ref or a DataFrame), stored.

        Metrics suit the task (classification: accuracy, precision, recall, F1, ROC AUC,
        log loss, calibration; regression: MAE, RMSE, R2), also per value of each ``slices``
        column; for each ``sensitive`` column, group fairness (selection rate, TPR and FPR
        gaps, demographic parity difference); and permutation feature importance.
        """
        from conveyor.models.evaluation import compute_evaluation

        if isinstance(data, str):
            from conveyor.data.service import data_service

            data_svc = data_service(self.ws)
            dataset_version = data_svc.get(data)
            frame = data_svc.load(dataset_version.ref)
            label = dataset_version.ref
        else:
            frame = to_frame_or_array(data)
            if not hasattr(frame, "columns"):
                raise InvalidArgumentError(
                    "evaluate needs a table with the target column: a DataFrame or a "
                    "dataset version like 'customers@4'."
                )
            label = "<frame>"
        loaded = self.load(ref, trust=trust)
        values = compute_evaluation(
            loaded,
            frame,
            target,
            slices=slices,
            sensitive=sensitive,
            task=task,
            importance=importance,
        )
        return self.record_evaluation(loaded.version, label, target, values)

    def record_evaluation(
        self, version: ModelVersion, dataset: str, target: str, values: dict[str, Any]
    ) -> Evaluation:
        """Store an evaluation computed by :meth:`evaluate` (``values``: task, rows, metrics,
        slices, fairness, importance) on ``dataset``, a dataset version ref or ``<frame>``.

        A team server records the evaluations its clients compute this way.
        """
        dataset_version = None
        if dataset != "<frame>":
            from conveyor.data.service import data_service

            dataset_version = data_service(self.ws).get(dataset)
            dataset = dataset_version.ref
        evaluation_id = ids.new_id()
        with self.ws.metadata.transaction(project_id=self._project_id()) as uow:
            uow.conn.execute(
                model_evaluations.insert().values(
                    id=evaluation_id,
                    version_id=version.id,
                    dataset_version_id=dataset_version.id if dataset_version else None,
                    dataset=dataset,
                    target=target,
                    created_at=uow.now,
                    created_by=uow.actor,
                    **values,
                )
            )
            node = ObjectRef("model_evaluation", evaluation_id)
            uow.link(node, ObjectRef(registry.VERSION_KIND, version.id), "evaluates")
            if dataset_version is not None:
                uow.link(ObjectRef("dataset_version", dataset_version.id), node, "used_by")
            uow.audit(
                "model.evaluate",
                node,
                after={"ref": version.ref, "dataset": dataset, "metrics": values["metrics"]},
            )
        return self.evaluations(version.ref)[0]

    def evaluations(self, ref: str) -> list[Evaluation]:
        """Return the evaluations of a version, newest first."""
        version = self.get(ref)
        with self.ws.metadata.read() as conn:
            rows = conn.execute(
                sa.select(model_evaluations)
                .where(model_evaluations.c.version_id == version.id)
                .order_by(model_evaluations.c.created_at.desc(), model_evaluations.c.id.desc())
            ).all()
        return [
            Evaluation(
                id=r.id,
                model=version.name,
                version=version.version,
                dataset=r.dataset,
                target=r.target,
                task=r.task,
                rows=r.rows,
                metrics=dict(r.metrics),
                slices=dict(r.slices),
                fairness=dict(r.fairness),
                importance=list(r.importance),
                created_at=r.created_at,
                created_by=r.created_by,
            )
            for r in rows
        ]

    def request(self, request_id: str) -> PromotionRequest:
        """Return the promotion request ``request_id``."""
        with self.ws.metadata.read() as conn:
            return registry.to_request(
                conn, registry.find_request(conn, self._project_id(), request_id)
            )

    def requests(self, name: str | None = None, *, status: str | None = None) -> list[Any]:
        """Return promotion requests (of model ``name``; with ``status``), newest first."""
        query = (
            sa.select(promotion_requests)
            .join(models, models.c.id == promotion_requests.c.model_id)
            .where(models.c.project_id == self._project_id())
            .order_by(promotion_requests.c.requested_at.desc(), promotion_requests.c.id.desc())
        )
        if status is not None:
            if status not in ("pending", "approved", "rejected", "withdrawn", "applied"):
                raise InvalidArgumentError(
                    "status must be pending, approved, rejected, withdrawn or applied (a "
                    f"deferred request used); got {status!r}."
                )
            query = query.where(promotion_requests.c.status == status)
        with self.ws.metadata.read() as conn:
            if name is not None:
                model = registry.find_model(conn, self._project_id(), name)
                query = query.where(promotion_requests.c.model_id == model.id)
            return [registry.to_request(conn, r) for r in conn.execute(query).all()]

    def _check_served_alias(self, name: str, alias: str) -> None:
        """On a team server, an alias a deployment serves moves only by an approver's hand
        (moving it changes what the deployment serves)."""
        self._check_served(name, (f"{name}@{alias}",), "move")

    def _check_served(self, name: str, refs: tuple[str, ...], action: str) -> None:
        """Refuse a caller below approver an ``action`` on what a deployment serves as one
        of ``refs`` (only on a team server: embedded use has no caller)."""
        if current_principal() is None:
            return
        current = (
            sa.select(deployment_revisions.c.policy)
            .join(deployments, deployments.c.id == deployment_revisions.c.deployment_id)
            .where(
                deployments.c.project_id == self._project_id(),
                deployment_revisions.c.revision == deployments.c.latest_revision,
            )
        )
        with self.ws.metadata.read() as conn:
            policies = conn.execute(current).scalars().all()
        served = [
            route["model"]
            for policy in policies
            for route in (policy or {}).get("routes", [])
            if route.get("model") in refs
        ]
        if served:
            require_role(
                self._project_id(), "approver", f"{action} {served[0]}, which a deployment serves"
            )

    def _check_approver(self, request: PromotionRequest | None) -> None:
        principal = current_principal()
        actor = principal.name if principal is not None else self.ws.settings.actor
        approvers = self.ws.settings.approver_list
        if principal is not None:
            # A team server's caller: the approver role in the project decides.
            require_role(self._project_id(), "approver", "decide promotion requests")
        elif approvers and _same_person(actor) not in {_same_person(a) for a in approvers}:
            raise PermissionDeniedError(
                f"{actor!r} is not an approver of this project; approvers: {', '.join(approvers)}.",
                hint="Ask one of them to decide it.",
            )
        # On the embedded store one person under another spelling ("Ada", "ada ") is still
        # the requester; a team server's users are distinct names, compared as they are.
        if request is not None and (
            request.requested_by == actor
            if principal is not None
            else _same_person(request.requested_by) == _same_person(actor)
        ):
            raise PermissionDeniedError(
                f"{actor!r} requested {request.id} and so cannot decide it: a second person "
                "approves.",
            )

    def approve(
        self, request_id: str, *, comment: str = "", override_checks: bool = False
    ) -> PromotionRequest:
        """Approve a pending request: the alias moves, atomically, in the same transaction.

        A request with a failed check is approved only with ``override_checks`` and a
        comment saying why (both go in the audit log).
        """
        return self._decide(request_id, "approved", comment, override_checks=override_checks)

    def reject(self, request_id: str, *, comment: str = "") -> PromotionRequest:
        """Reject a pending request; the alias stays where it is."""
        return self._decide(request_id, "rejected", comment)

    def _decide(
        self, request_id: str, status: str, comment: str, *, override_checks: bool = False
    ) -> PromotionRequest:
        request = self.request(request_id)
        self._check_approver(request)
        overridden = status == "approved" and not request.checks_passed
        if overridden and request.status == "pending":
            _check_override(request, comment, override_checks)
        previous: int | None = None  # the alias's version before an approval moved it
        with self.ws.metadata.transaction(project_id=self._project_id()) as uow:
            row = registry.find_request(uow.conn, self._project_id(), request_id)
            # Decided only if still pending: of two concurrent decisions, one wins.
            done = uow.conn.execute(
                promotion_requests.update()
                .where(
                    promotion_requests.c.id == request_id, promotion_requests.c.status == "pending"
                )
                .values(
                    status=status,
                    decided_by=uow.actor,
                    decided_at=uow.now,
                    decision_comment=comment,
                )
            ).rowcount
            if not done:
                current = registry.to_request(uow.conn, row)
                if current.status == "withdrawn":
                    raise ConflictError(
                        f"Request {request_id} was withdrawn by its requester, "
                        f"{current.requested_by}: there is nothing left to decide.",
                        hint="Ask for a new request if the promotion is still wanted.",
                    )
                raise ConflictError(
                    f"Request {request_id} was already {current.status} by {current.decided_by} "
                    f"at {current.decided_at}.",
                )
            if status == "approved" and not row.deferred:
                holder = uow.conn.execute(
                    sa.select(model_aliases.c.version_id).where(
                        model_aliases.c.model_id == row.model_id,
                        model_aliases.c.alias == row.alias,
                    )
                ).scalar_one_or_none()
                if holder != row.holder_version_id:
                    # The checks compared with another holder: approving would act on stale
                    # evidence (and could move the alias back). The update above rolls back.
                    def number(version_id: str | None) -> str:
                        if version_id is None:
                            return "no version"
                        return registry.version_by_id(uow.conn, version_id).ref

                    raise ConflictError(
                        f"@{row.alias} has moved since {request_id} was made: it pointed at "
                        f"{number(row.holder_version_id)}, now at {number(holder)}, so the "
                        "request's checks are out of date.",
                        hint="Reject it, and request the promotion again to re-run the checks.",
                    )
                previous_id = registry.move_alias(
                    uow, row.model_id, row.alias, row.version_id, request_id=request_id
                )
                if previous_id:
                    previous = registry.version_by_id(uow.conn, previous_id).version
            after: dict[str, Any] = {"status": status, "comment": comment}
            if overridden:
                after["overrode_checks"] = _failed_checks(request)
            uow.audit(
                {"approved": "promotion.approve", "rejected": "promotion.reject"}[status],
                ObjectRef(registry.REQUEST_KIND, request_id),
                after=after,
            )
        decided = self.request(request_id)
        self._emit(
            f"promotion.{status}",
            decided.model,
            request_id=request_id,
            version=decided.version,
            alias=decided.alias,
        )
        if status == "approved" and not decided.deferred:
            self._emit(
                "alias.moved",
                decided.model,
                alias=decided.alias,
                version=decided.version,
                previous=previous,
                request_id=request_id,
            )
        return decided

    # -- model card ------------------------------------------------------------------------

    def card(self, ref: str, *, format: str = "markdown") -> str:
        """Return the model card of a version as Markdown or as an HTML page."""
        if format not in ("markdown", "html"):
            raise InvalidArgumentError(f"format must be 'markdown' or 'html'; got {format!r}.")
        card = self._card(self.get(ref))
        return card.markdown() if format == "markdown" else card.html()

    def _card(self, v: ModelVersion) -> Any:
        from conveyor.models.cards import Card, Section, fmt

        described = self._describe(v)
        card = Card(title=f"Model card: {v.ref}")
        overview = Section("Overview")
        overview.blocks.append(v.description or "No description was given when it was logged.")
        overview.blocks.append(
            [
                f"flavor: {v.flavor}",
                f"digest: {v.digest}",
                f"logged {v.created_at:%Y-%m-%d %H:%M} UTC by {v.created_by}",
                f"aliases: {', '.join(v.aliases) or 'none'}",
                f"source run: {v.run_id or 'none (logged outside a run)'}",
                "requirements: " + ", ".join(f"{k}=={x}" for k, x in v.requirements.items()),
            ]
        )
        card.sections.append(overview)
        card.sections.append(self._data_section(described["data"], Section, fmt))
        params = Section("Parameters")
        params.blocks.append(
            (["param", "value"], [[k, str(x)] for k, x in sorted(described["params"].items())])
            if described["params"]
            else "No params recorded."
        )
        metrics = Section("Training metrics")
        metrics.blocks.append(
            (["metric", "value"], [[k, fmt(x)] for k, x in sorted(described["metrics"].items())])
            if described["metrics"]
            else "No metrics recorded."
        )
        card.sections += [params, metrics]
        card.sections += self._evaluation_sections(v, Section, fmt)
        signature = Section("Signature")
        if v.signature is None:
            signature.blocks.append("No signature: inputs are not checked.")
        else:
            signature.blocks.append(
                (
                    ["input", "type", "nullable"],
                    [[c.name or "(tensor)", c.dtype, str(c.nullable)] for c in v.signature.inputs],
                )
            )
            if v.signature.outputs:
                signature.blocks.append(
                    "Outputs: " + ", ".join(c.describe() for c in v.signature.outputs)
                )
        card.sections.append(signature)
        lineage = Section("Lineage")
        edges = self.ws.lineage(ObjectRef(registry.VERSION_KIND, v.id), direction="upstream")
        lineage.blocks.append(
            [f"{e.src} {e.relation} {e.dst}" for e in edges.edges] or "No recorded lineage."
        )
        card.sections.append(lineage)
        card.sections.append(self._approval_section(v, Section))
        return card

    def _data_section(self, refs: list[str], section: Any, fmt: Any) -> Any:
        out = section("Training data")
        if not refs:
            out.blocks.append("No dataset version is recorded for the source run.")
            return out
        from conveyor.data.service import data_service

        data = data_service(self.ws)
        for ref in refs:
            d = data.get(ref)
            out.blocks.append(
                f"{d.ref}: {d.kind}, {d.files} file(s), {d.size:,} bytes"
                + (f", {d.rows:,} rows" if d.rows is not None else "")
                + f", digest {d.digest[:12]}"
            )
            columns = (d.profile or {}).get("columns", {})
            if columns:
                rows = [
                    [
                        name,
                        str(p.get("type", "")),
                        fmt(p.get("null_rate")),
                        fmt(p.get("mean")),
                        fmt(p.get("min")),
                        fmt(p.get("max")),
                    ]
                    for name, p in list(columns.items())[:CARD_PROFILE_COLUMNS]
                ]
                out.blocks.append((["column", "type", "null rate", "mean", "min", "max"], rows))
                hidden = len(columns) - len(rows)
                if hidden:
                    out.blocks.append(
                        f"… and {hidden} more column{'s' if hidden > 1 else ''}, not shown here: "
                        f"conveyor data show {d.ref}"
                    )
        return out

    def _evaluation_sections(self, v: ModelVersion, section: Any, fmt: Any) -> list[Any]:
        found = self.evaluations(v.ref)[:3]
        out = section("Evaluation")
        if not found:
            out.blocks.append("Not evaluated yet: cv.models.evaluate(ref, dataset, target=...).")
            return [out]
        sections = [out]
        for ev in found:
            out.blocks.append(
                f"On {ev.dataset} (target {ev.target}, {ev.rows:,} rows, {ev.task}), "
                f"{ev.created_at:%Y-%m-%d %H:%M} UTC by {ev.created_by}:"
            )
            out.blocks.append((["metric", "value"], [[k, fmt(x)] for k, x in ev.metrics.items()]))
            for column, groups in ev.slices.items():
                keys = [k for k in groups[0] if k not in ("value", "rows")] if groups else []
                out.blocks.append(f"By {column}:")
                out.blocks.append(
                    (
                        [column, "rows", *keys],
                        [
                            [fmt(g["value"]), str(g["rows"]), *(fmt(g[k]) for k in keys)]
                            for g in groups
                        ],
                    )
                )
            if ev.fairness:
                fair = section(f"Fairness on {ev.dataset}")
                for column, result in ev.fairness.items():
                    fair.blocks.append(
                        f"{column} (positive class {result['positive']}): demographic parity "
                        f"difference {fmt(result['demographic_parity_difference'])}, TPR gap "
                        f"{fmt(result['tpr_gap'])}, FPR gap {fmt(result['fpr_gap'])}."
                    )
                    fair.blocks.append(
                        (
                            ["group", "rows", "selection rate", "TPR", "FPR"],
                            [
                                [
                                    fmt(g["group"]),
                                    str(g["rows"]),
                                    fmt(g["selection_rate"]),
                                    fmt(g["tpr"]),
                                    fmt(g["fpr"]),
                                ]
                                for g in result["groups"]
                            ],
                        )
                    )
                sections.append(fair)
            if ev.importance:
                imp = section(f"Feature importance on {ev.dataset}")
                imp.blocks.append(
                    f"Permutation importance: the drop in {ev.importance[0]['metric']} when a "
                    "column is shuffled (mean over repeats); the top 10."
                )
                imp.blocks.append(
                    (
                        ["feature", "importance", "std"],
                        [
                            [f["feature"], fmt(f["importance"]), fmt(f["std"])]
                            for f in ev.importance[:10]
                        ],
                    )
                )
                sections.append(imp)
        return sections

    def _approval_section(self, v: ModelVersion, section: Any) -> Any:
        out = section("Approvals and alias history")
        requests = [r for r in self.requests(v.name) if r.version == v.version]
        if requests:
            out.blocks.append(
                (
                    ["request", "alias", "status", "requested by", "decided by", "comment"],
                    [
                        [
                            r.id,
                            r.alias,
                            _decision(r),
                            r.requested_by,
                            r.decided_by or "",
                            r.decision_comment or r.comment,
                        ]
                        for r in requests
                    ],
                )
            )
        moves = [m for m in self.alias_history(v.name) if v.version in (m.version, m.previous)]
        out.blocks.append(
            [
                f"{m.at:%Y-%m-%d %H:%M} UTC: @{m.alias} "
                + (f"moved to {v.ref}" if m.version == v.version else f"moved away to {m.version}")
                + f" by {m.actor}"
                for m in moves
            ]
            or "No alias has pointed at this version."
        )
        return out

    # -- comparison ------------------------------------------------------------------------

    def compare(self, a: str, b: str) -> dict[str, Any]:
        """Compare two versions: params, metrics, data versions, signature, requirements."""
        first, second = self.get(a), self.get(b)
        sides = [self._describe(first), self._describe(second)]
        signature_changes = (
            first.signature.diff(second.signature)
            if first.signature and second.signature
            else (["signature missing on one side"] if first.signature != second.signature else [])
        )
        out: dict[str, Any] = {"a": sides[0], "b": sides[1], "signature_changes": signature_changes}
        for key in ("params", "metrics", "requirements"):
            keys = sorted(set(sides[0][key]) | set(sides[1][key]))
            out[f"{key}_diff"] = {
                k: [sides[0][key].get(k), sides[1][key].get(k)]
                for k in keys
                if sides[0][key].get(k) != sides[1][key].get(k)
            }
        return out

    def _describe(self, version: ModelVersion) -> dict[str, Any]:
        params: dict[str, Any] = {}
        metrics: dict[str, Any] = {}
        if version.run_id:
            from conveyor.tracking.runs import tracker

            t = tracker(self.ws)
            t.flush()
            try:
                run = t.store.get_run(version.run_id)
            except NotFoundError:
                pass
            else:
                params, metrics = dict(run.params), dict(run.metrics)
        return {
            "ref": version.ref,
            "digest": version.digest,
            "flavor": version.flavor,
            "run_id": version.run_id,
            "params": params,
            "metrics": metrics,
            "data": self.data_versions(version),
            "requirements": dict(version.requirements),
        }

    def data_versions(self, version: ModelVersion) -> list[str]:
        """The dataset versions the version's source run used, as ``name@N``."""
        if not version.run_id:
            return []
        e = lineage_edges
        query = (
            sa.select(datasets.c.name, dataset_versions.c.version)
            .select_from(e)
            .join(dataset_versions, dataset_versions.c.id == e.c.src_id)
            .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
            .where(
                e.c.dst_kind == "run",
                e.c.dst_id == version.run_id,
                e.c.src_kind == "dataset_version",
            )
            .order_by(datasets.c.name, dataset_versions.c.version)
        )
        with self.ws.metadata.read() as conn:
            return [f"{n}@{v}" for n, v in conn.execute(query)]

    # -- events ----------------------------------------------------------------------------

    def _emit(self, kind: str, model: str, **payload: Any) -> None:
        self.events.emit(RegistryEvent(kind=kind, model=model, payload=payload))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _check(name: str, status: str, detail: str) -> dict[str, Any]:
    return {"name": name, "status": status, "detail": detail}


def _version_number(version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise InvalidArgumentError(f"version must be a number like 3; got {version!r}.")
    text = str(version)
    if not text.isdigit() or int(text) < 1:
        raise InvalidArgumentError(f"version must be a number like 3; got {version!r}.")
    return int(text)


def _infer_from_example(flavor: Flavor, model: Any, example: Any) -> Signature:
    signature = infer_signature(example)
    try:
        output = flavor.predict(model, example)
    except Exception as e:  # noqa: BLE001 - an unfitted or picky model: sign the inputs only
        # Logged all the same: most often the example is not what the model was trained on
        # (a column short) or the model is not fitted, and every predict would fail alike.
        log.warning(
            "The model cannot predict its own input example (%s: %s); its signature has "
            "inputs only. Check that the example has the training columns and the model is "
            "fitted.",
            type(e).__name__,
            str(e)[:300],
        )
        return signature
    return Signature(signature.inputs, infer_signature(example, output).outputs)


def _encode_example(example: Any) -> tuple[str, bytes]:
    import numpy as np
    import pandas as pd

    if isinstance(example, pd.DataFrame):
        buffer = io.BytesIO()
        example.to_parquet(buffer, index=False)
        return EXAMPLE, buffer.getvalue()
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(example), allow_pickle=False)
    return EXAMPLE_ARRAY, buffer.getvalue()


def _decode_example(data: bytes) -> Any:
    import numpy as np

    if data[:6] == b"\x93NUMPY":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if data[:4] == b"PAR1":
        from conveyor.core.parquet import read_parquet

        return read_parquet(data).to_pandas()
    raise IntegrityError("The stored input example is neither Parquet nor a NumPy array.")


def _as_time(value: object) -> datetime:
    """``value`` (a datetime or an ISO 8601 string) as an aware UTC datetime."""
    from conveyor.core.clock import as_utc

    parsed = value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
    if not isinstance(parsed, datetime):
        raise InvalidArgumentError(
            f"at={value!r} is not a time: give a datetime or an ISO 8601 string such as "
            "'2026-05-01' or '2026-05-01T12:00:00Z' (UTC unless it says otherwise)."
        )
    return as_utc(parsed)


def _decision(request: PromotionRequest) -> str:
    """A request's status for the model card, saying when an approval overrode failed checks
    (a pending request with a failed check is approved only with override_checks)."""
    if request.status in ("approved", "applied") and not request.checks_passed:
        return f"{request.status}, overriding failed checks: {', '.join(_failed_checks(request))}"
    return request.status


def _failed_checks(request: PromotionRequest) -> list[str]:
    return [str(c["name"]) for c in request.checks if c["status"] == "failed"]


def _check_override(request: PromotionRequest, comment: str, override: bool) -> None:
    """Refuse to approve ``request``, which failed a check, unless the approver says so
    explicitly and why."""
    failed = "; ".join(
        f"{c['name']}: {c.get('detail') or 'failed'}"
        for c in request.checks
        if c["status"] == "failed"
    )
    if not override:
        raise ConflictError(
            f"Request {request.id} failed its checks ({failed}): approving it would move "
            f"{request.model}@{request.alias} to a version that failed them.",
            hint="Reject it, or approve it anyway with override_checks=True "
            "(`conveyor models approve ID --override-checks -m WHY`) and a comment saying why.",
        )
    if not comment.strip():
        raise InvalidArgumentError(
            f"Approving {request.id} over its failed checks ({failed}) needs a comment saying why.",
            hint="Pass comment=... (`-m WHY` on the command line); it goes in the audit log.",
        )


def _same_person(name: str) -> str:
    """An actor name as compared for "a second person approves": spaces and case aside."""
    return name.strip().casefold()


def _shared(ours: Evaluation, other: Evaluation) -> str | None:
    """The metric a promotion check compares between two evaluations of one kind: the
    task's primary one, or accuracy (a classifier without probabilities has no ROC AUC)."""
    name = PRIMARY_METRIC[ours.task][0]
    for candidate in (name, "accuracy"):
        if ours.metrics.get(candidate) is not None and other.metrics.get(candidate) is not None:
            return candidate
    return None
