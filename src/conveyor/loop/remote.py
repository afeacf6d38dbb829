"""Loop policies through a team server: apply, list, show, pause, resume and trigger them,
and read their executions and events, with the same records (times as datetimes) as
embedded. The controller that acts on them (``tick``, ``run``) runs where the stores are."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conveyor.core.encoding import jsonable
from conveyor.core.errors import ConveyorError, InvalidArgumentError
from conveyor.loop.policy import Policy
from conveyor.loop.service import Execution, LoopService
from conveyor.store.client import ServerClient, revive_times
from conveyor.store.workspace import Workspace

__all__ = ["RemoteLoopService", "controller_needs_the_stores"]

_list = list
_POLICY_TIMES = ("created_at", "updated_at")


def _policy(raw: dict[str, Any]) -> dict[str, Any]:
    """A policy (or its status) with its own times as datetimes, as embedded; the
    executions a status holds keep the ISO text embedded ``status`` gives them too."""
    return {
        k: datetime.fromisoformat(v) if k in _POLICY_TIMES and isinstance(v, str) else v
        for k, v in raw.items()
    }


def _execution(raw: dict[str, Any]) -> Execution:
    """An execution from JSON: its own times as datetimes (not keys inside its spec)."""
    values = {k: raw[k] for k in Execution.__dataclass_fields__}
    for key in ("state_at", "created_at", "ended_at"):
        if isinstance(values[key], str):
            values[key] = datetime.fromisoformat(values[key])
    return Execution(**values)


def controller_needs_the_stores(ws: Workspace) -> ConveyorError:
    """The error for running the loop controller through a team server."""
    return ConveyorError(
        "The loop controller does not run through a team server "
        f"(CONVEYOR_STORE_URI={ws.settings.store_uri}): it starts pipelines and moves "
        "deployments with the project's stores.",
        hint="Run `conveyor loop run` on the server's host, with the server's stores; "
        "policies apply, pause, resume and trigger through the server.",
    )


class RemoteLoopService(LoopService):
    """:class:`LoopService` whose policies a team server keeps."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        client = ws.remote
        if client is None:
            raise InvalidArgumentError("RemoteLoopService needs a workspace on a team server.")
        self.client: ServerClient = client

    def _path(self, *rest: str) -> str:
        return self.client.project_path(self.ws.settings.project, "loop", *rest)

    def apply(self, policy: Policy) -> dict[str, Any]:
        """Create or update ``policy`` on the server (which checks what it names)."""
        if not isinstance(policy, Policy):
            raise InvalidArgumentError(f"apply() takes a Policy; got {type(policy).__name__}.")
        body = {"policy": jsonable(policy.to_dict())}
        return _policy(self.client.send_json("POST", self._path("policies"), body))

    def get(self, name: str) -> dict[str, Any]:
        status = self.status(name)
        return {k: status[k] for k in _POLICY_KEYS}

    def list(self) -> _list[dict[str, Any]]:
        return [_policy(p) for p in self.client.get_json(self._path("policies"))["policies"]]

    def status(self, name: str) -> dict[str, Any]:
        return _policy(self.client.get_json(self._path("policies", name)))

    def pause(self, name: str, paused: bool = True) -> dict[str, Any]:
        action = "pause" if paused else "resume"
        return _policy(self.client.send_json("POST", self._path("policies", name, action)))

    def trigger(self, name: str, reason: str = "") -> Execution:
        path = self._path("policies", name, "trigger")
        raw = self.client.send_json("POST", path, params={"reason": reason} if reason else None)
        return _execution(raw)

    def executions(
        self, name: str | None = None, *, active: bool = False, limit: int = 50
    ) -> _list[Execution]:
        body = self.client.get_json(
            self._path("executions"), policy=name, active=active or None, limit=limit
        )
        return [_execution(e) for e in body["executions"]]

    def events(self, name: str, *, limit: int = 100) -> _list[dict[str, Any]]:
        body = self.client.get_json(self._path("policies", name, "events"), limit=limit)
        return revive_times(body["events"], "at".__eq__)


_POLICY_KEYS = (
    "id",
    "name",
    "deployment",
    "spec",
    "cursors",
    "paused",
    "created_at",
    "updated_at",
    "created_by",
)
