"""Monitors and alerts through a team server: list and show monitors, list, acknowledge and
resolve alerts, with the same dicts (times as datetimes) as embedded. Creating and running
monitors needs the store itself (they read the prediction log)."""

from __future__ import annotations

from typing import Any

from conveyor.core.errors import InvalidArgumentError
from conveyor.monitoring.service import MonitorService
from conveyor.store.client import ServerClient, revive_times
from conveyor.store.workspace import Workspace

__all__ = ["RemoteMonitorService"]

_list = list


def _revive(value: Any) -> Any:
    """Turn the ISO times of ``*_at`` keys back into datetimes (as the embedded dicts hold)."""
    return revive_times(value, lambda key: key.endswith("_at"))


class RemoteMonitorService(MonitorService):
    """:class:`MonitorService` whose monitors and alerts a team server keeps."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        client = ws.remote
        if client is None:
            raise InvalidArgumentError("RemoteMonitorService needs a workspace on a team server.")
        self.client: ServerClient = client

    def _path(self, *rest: str) -> str:
        return self.client.project_path(self.ws.settings.project, *rest)

    def list(self) -> _list[dict[str, Any]]:
        return _revive(self.client.get_json(self._path("monitors"))["monitors"])

    def get(self, name: str) -> dict[str, Any]:
        return _revive(self.client.get_json(self._path("monitors", name))["monitor"])

    def alerts(self, *, status: str | None = None) -> _list[dict[str, Any]]:
        body = self.client.get_json(self._path("alerts"), status=status)
        return _revive(body["alerts"])

    def close_alert(self, alert_id: str, status: str) -> dict[str, Any]:
        actions = {"acknowledged": "acknowledge", "resolved": "resolve"}
        if status not in actions:
            raise InvalidArgumentError(f"status must be acknowledged or resolved, not {status!r}.")
        body = self.client.send_json("POST", self._path("alerts", alert_id, actions[status]))
        return _revive(body)
