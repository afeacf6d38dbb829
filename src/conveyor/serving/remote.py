"""Deployments through a team server: list, show and change them (create, canary, A/B, shadow,
promote, roll back), with the same revisions as embedded. The server checks the approver
role on every change, as the local service does on a team's store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conveyor.core.errors import InvalidArgumentError, NotFoundError
from conveyor.serving.deployment import DeploymentService, Revision
from conveyor.store.client import ServerClient
from conveyor.store.workspace import Workspace

__all__ = ["RemoteDeploymentService"]

_list = list


def _revision(raw: dict[str, Any]) -> Revision:
    return Revision(
        deployment=raw["deployment"],
        revision=int(raw["revision"]),
        routes=tuple(raw["routes"]),
        key=raw.get("key"),
        limits=dict(raw.get("limits") or {}),
        change=raw["change"],
        reason=raw.get("reason") or "",
        created_at=datetime.fromisoformat(raw["created_at"]),
        created_by=raw["created_by"],
        id=raw.get("id") or "",
    )


class RemoteDeploymentService(DeploymentService):
    """:class:`DeploymentService` whose deployments a team server keeps."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        client = ws.remote
        if client is None:
            raise InvalidArgumentError(
                "RemoteDeploymentService needs a workspace on a team server."
            )
        self.client: ServerClient = client

    def _path(self, *rest: str) -> str:
        return self.client.project_path(self.ws.settings.project, "deployments", *rest)

    def _send(self, *rest: str, body: dict[str, Any] | None = None) -> Revision:
        path = self.client.project_path(self.ws.settings.project, "deployments", *rest)
        return _revision(self.client.send_json("POST", path, body or {}))

    def list(self) -> _list[Revision]:
        body = self.client.get_json(
            self.client.project_path(self.ws.settings.project, "deployments")
        )
        return [_revision(r) for r in body["deployments"]]

    def history(self, name: str) -> _list[Revision]:
        return [_revision(r) for r in self.client.get_json(self._path(name))["revisions"]]

    def get(self, name: str, revision: int | None = None) -> Revision:
        if revision is None:  # the current revision alone: model servers ask every 2 s
            current = self.client.get_json(self._path(name), limit=1)["revisions"]
            return _revision(current[0])
        found = self.history(name)
        for r in found:
            if r.revision == revision:
                return r
        raise NotFoundError(
            f"Deployment {name!r} has no revision {revision}; it has 1 to {found[0].revision}."
        )

    def create(self, name: str, model: str, *, limits: dict[str, float] | None = None) -> Revision:
        return self._send(body={"name": name, "model": model, "limits": limits})

    def canary(
        self, name: str, model: str, weight: float, *, limits: dict[str, float] | None = None
    ) -> Revision:
        return self._send(name, "canary", body={"model": model, "weight": weight, "limits": limits})

    def ab(self, name: str, model: str, weight: float, *, key: str) -> Revision:
        return self._send(name, "ab", body={"model": model, "weight": weight, "key": key})

    def shadow(self, name: str, model: str) -> Revision:
        return self._send(name, "shadow", body={"model": model})

    def promote(self, name: str) -> Revision:
        return self._send(name, "promote")

    def rollback_canary(
        self, name: str, model: str, reason: str, *, actor: str = "conveyor-server"
    ) -> Revision | None:
        """Drop the canary through the server (the caller's token needs the approver role;
        the server records its user, not ``actor``)."""
        path = self._path(name, "canary", "rollback")
        raw = self.client.send_json("POST", path, {"model": model, "reason": reason})
        return None if raw is None else _revision(raw)

    def rollback(self, name: str, *, to: int | None = None, reason: str = "") -> Revision:
        return self._send(name, "rollback", body={"to": to, "reason": reason})
