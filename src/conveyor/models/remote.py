"""The model registry through a team server: log, list, get and load versions, move aliases,
request, approve and reject promotions, with the same records and errors as embedded.

The model is saved here (the flavor runs in your process) and its files are uploaded in one
multipart request; the server stores them, computes every digest itself and registers the
version. Loading downloads each file and checks it against the digest the version records.
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import IntegrityError, InvalidArgumentError
from conveyor.models.records import AliasMove, ModelVersion, PromotionRequest, RegisteredModel
from conveyor.models.service import DEFAULT_PROTECTED, ModelService, PreparedModel
from conveyor.models.wire import (
    evaluation_from_json,
    model_from_json,
    move_from_json,
    request_from_json,
    version_from_json,
)
from conveyor.store.client import ServerClient
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace

if TYPE_CHECKING:
    from conveyor.models.evaluation import Evaluation

__all__ = ["RemoteModelService"]


class RemoteModelService(ModelService):
    """:class:`ModelService` whose registry is a team server's. Calls not listed here (evaluate,
    cards, compare, export, import) need the store itself and say so."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        client = ws.remote
        if client is None:
            raise InvalidArgumentError("RemoteModelService needs a workspace on a team server.")
        self.client: ServerClient = client
        self._names: dict[str, dict[str, str]] = {}  # version id -> digest -> artifact name
        self._names_lock = threading.Lock()

    def _path(self, *rest: str) -> str:
        return self.client.project_path(self.ws.settings.project, *rest)

    # -- writing -----------------------------------------------------------------------------

    def register(
        self,
        name: str,
        prepared: PreparedModel,
        *,
        description: str = "",
        run: ObjectRef | None = None,
    ) -> ModelVersion:
        """Upload the prepared model's files; the server registers the next version."""
        import orjson

        spec = {
            "flavor": prepared.flavor,
            "info": prepared.info,
            "requirements": prepared.requirements,
            "signature": prepared.signature,
            "description": description,
            "run_id": run.id if run is not None and run.kind == "run" else None,
            "example_name": prepared.example[0] if prepared.example else None,
            "files": sorted(prepared.files),
        }
        files: list[tuple[str, tuple[str, bytes, str]]] = [
            ("spec", ("spec.json", orjson.dumps(spec, default=str), "application/json"))
        ]
        for i, file_name in enumerate(sorted(prepared.files)):
            files.append(
                (f"file{i}", (file_name, prepared.files[file_name], "application/octet-stream"))
            )
        if prepared.example is not None:
            files.append(
                ("example", (prepared.example[0], prepared.example[1], "application/octet-stream"))
            )
        self.ws.flush_before_remote_write()
        response = self.client.request(
            "POST", self._path("models", name, "versions"), files=files, retry=False
        )
        version = version_from_json(response.json())
        self._emit("model_version.created", name, version=version.version, digest=version.digest)
        return version

    # -- reading -----------------------------------------------------------------------------

    def get(self, ref: str, *, at: Any = None) -> ModelVersion:
        if at is not None:
            raise InvalidArgumentError("at= (an alias at a past time) needs the store itself.")
        return version_from_json(self.client.get_json(self._path("model-versions", ref)))

    def versions(self, name: str) -> list[ModelVersion]:
        body = self.client.get_json(self._path("models", name))
        return [version_from_json(v) for v in body["versions"]]

    def list_models(self) -> list[RegisteredModel]:
        return [model_from_json(m) for m in self.client.get_json(self._path("models"))["models"]]

    def model(self, name: str) -> RegisteredModel:
        return model_from_json(self.client.get_json(self._path("models", name))["model"])

    def _content(self, version: ModelVersion, digest: str) -> bytes:
        owner = ObjectRef("model_version", version.id)
        with self._names_lock:
            names = self._names.get(version.id)
        if names is None:
            names = {a.digest: a.name for a in self.ws.list_artifacts(owner)}
            with self._names_lock:
                self._names[version.id] = names
        if digest not in names:
            raise IntegrityError(f"{version.ref} has no stored file with digest {digest[:12]}.")
        with self.ws.open_artifact(owner, names[digest]) as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"A file of {version.ref} arrived damaged (digest mismatch).")
        return data

    def _record_use(self, version: ModelVersion, run: ObjectRef) -> None:
        """Have the server draw ``version -used_by-> run`` (runs only, as for datasets)."""
        if run.kind != "run":
            return
        self.ws.flush_before_remote_write()  # the server must know the run first
        self.client.send_json(
            "POST", self._path("runs", run.id, "uses"), {"kind": "model", "ref": version.ref}
        )

    # -- aliases and promotions -----------------------------------------------------------------

    def set_alias(
        self, name: str, alias: str, version: int, *, request_id: str | None = None
    ) -> AliasMove:
        if request_id is not None:
            raise InvalidArgumentError(
                "Moving an alias with a deferred request (request_id) is not supported through "
                "a team server: the continuous-training loop applies them on the server's store.",
                hint="Approve a request that is not deferred: its approval moves the alias.",
            )
        body = self.client.send_json(
            "PUT", self._path("models", name, "aliases", alias), {"version": int(version)}
        )
        return move_from_json(body)

    def delete_alias(self, name: str, alias: str) -> AliasMove:
        return move_from_json(
            self.client.send_json("DELETE", self._path("models", name, "aliases", alias))
        )

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        body = self.client.get_json(self._path("models", name, "aliases"), alias=alias)
        return [move_from_json(m) for m in body["moves"]]

    def require_approval(
        self,
        name: str,
        aliases: list[str] | tuple[str, ...] = DEFAULT_PROTECTED,
        *,
        change: str = "set",
    ) -> RegisteredModel:
        body = self.client.send_json(
            "PUT",
            self._path("models", name, "protection"),
            {"aliases": list(aliases), "change": change},
        )
        return model_from_json(body)

    def request_promotion(
        self, ref: str, alias: str, *, comment: str = "", deferred: bool = False
    ) -> PromotionRequest:
        if deferred:
            raise InvalidArgumentError("Deferred requests are made by the loop, on the store.")
        version = self.get(ref)
        body = self.client.send_json(
            "POST",
            self._path("models", version.name, "versions", str(version.version), "promotions"),
            {"alias": alias, "comment": comment},
        )
        return request_from_json(body)

    def request(self, request_id: str) -> PromotionRequest:
        return request_from_json(self.client.get_json(self._path("promotions", request_id)))

    def requests(self, name: str | None = None, *, status: str | None = None) -> list[Any]:
        body = self.client.get_json(self._path("promotions"), model=name, status=status)
        return [request_from_json(r) for r in body["requests"]]

    def approve(
        self, request_id: str, *, comment: str = "", override_checks: bool = False
    ) -> PromotionRequest:
        body = {"comment": comment, "override_checks": override_checks}
        return request_from_json(
            self.client.send_json("POST", self._path("promotions", request_id, "approve"), body)
        )

    def withdraw(self, request_id: str, *, comment: str = "") -> PromotionRequest:
        return request_from_json(
            self.client.send_json(
                "POST", self._path("promotions", request_id, "withdraw"), {"comment": comment}
            )
        )

    # -- evaluations, cards, comparisons ------------------------------------------------------

    def record_evaluation(
        self, version: ModelVersion, dataset: str, target: str, values: dict[str, Any]
    ) -> Evaluation:
        """Send an evaluation computed here (the model loaded from the server) to be stored."""
        self.ws.flush_before_remote_write()
        path = self._path("models", version.name, "versions", str(version.version), "evaluations")
        body = self.client.send_json("POST", path, {**values, "dataset": dataset, "target": target})
        return evaluation_from_json(body)

    def evaluations(self, ref: str) -> list[Evaluation]:
        version = self.get(ref)
        body = self.client.get_json(
            self._path("models", version.name, "versions", str(version.version), "evaluations")
        )
        return [evaluation_from_json(e) for e in body["evaluations"]]

    def card(self, ref: str, *, format: str = "markdown") -> str:
        if format not in ("markdown", "html"):
            raise InvalidArgumentError(f"format must be 'markdown' or 'html'; got {format!r}.")
        version = self.get(ref)
        path = self._path("models", version.name, "versions", str(version.version), "card")
        return self.client.request("GET", path, params={"format": format}).text

    def link_export(self, source: ModelVersion, exported: ModelVersion) -> None:
        """Record the export on the server (the lineage edge source -exported_as-> export)."""
        path = self._path("models", source.name, "versions", str(source.version), "exports")
        self.client.send_json("POST", path, {"version": exported.ref})

    def data_versions(self, version: ModelVersion) -> list[str]:
        """The dataset versions the version's source run used, as the server's lineage has it."""
        if not version.run_id:
            return []
        path = self._path("models", version.name, "versions", str(version.version), "data")
        return list(self.client.get_json(path)["data_versions"])

    def compare(self, a: str, b: str) -> dict[str, Any]:
        return dict(self.client.get_json(self._path("model-comparison"), a=a, b=b))

    def reject(self, request_id: str, *, comment: str = "") -> PromotionRequest:
        return request_from_json(
            self.client.send_json(
                "POST", self._path("promotions", request_id, "reject"), {"comment": comment}
            )
        )
