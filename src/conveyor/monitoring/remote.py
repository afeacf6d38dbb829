"""Monitors and alerts through a team server: create, list, show and run monitors (the server
runs them, over the prediction log its model servers write), list, acknowledge and resolve
alerts, with the same records (times as datetimes) as embedded. Adding labels and alert rules
needs the stores themselves."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from conveyor.core.errors import InvalidArgumentError
from conveyor.monitoring.service import MonitorResult, MonitorService, _result, labels_frame
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

    def create(self, name: str, **options: Any) -> dict[str, Any]:
        for key in ("window", "max_feature_age"):  # durations travel as text ("1h")
            if isinstance(options.get(key), timedelta):
                options[key] = f"{int(options[key].total_seconds())}s"
        body = self.client.send_json("POST", self._path("monitors"), {"name": name, **options})
        return _revive(body)

    def results(self, name: str, *, limit: int = 20) -> _list[MonitorResult]:
        body = self.client.get_json(self._path("monitors", name), limit=limit)
        return [_result(r, r.get("id", "")) for r in body["results"]]

    def run(
        self, name: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> MonitorResult:
        """Run the monitor on the server, over the prediction log its model servers write."""
        window = {
            "start": start.isoformat() if start is not None else None,
            "end": end.isoformat() if end is not None else None,
        }
        raw = self.client.send_json("POST", self._path("monitors", name, "run"), window)
        return _result(raw, raw.get("id", ""))

    def alert_rule(
        self,
        name: str,
        expression: str,
        *,
        cooldown: str | timedelta = "6h",
        notify: _list[str] | None = None,
    ) -> dict[str, Any]:
        if isinstance(cooldown, timedelta):
            cooldown = f"{int(cooldown.total_seconds())}s"
        body = {"expression": expression, "cooldown": cooldown, "notify": notify or ["log"]}
        return _revive(
            self.client.send_json("POST", self._path("monitors", name, "alert-rules"), body)
        )

    def log_labels(self, labels: Any, *, deployment: str) -> int:
        """Send ground truth to the server (in parts of at most 50,000 labels)."""
        import pandas as pd

        frame = labels_frame(labels)
        rows = [
            {"prediction_id": str(i), "label": None if pd.isna(v) else _plain(v)}
            for i, v in zip(frame["prediction_id"], frame["label"], strict=True)
        ]
        recorded = 0  # nothing to send: nothing recorded, as embedded
        path = self._path("deployments", deployment, "labels")
        for start in range(0, len(rows), 50_000):
            part = {"labels": rows[start : start + 50_000]}
            recorded += int(self.client.send_json("POST", path, part)["recorded"])
        return recorded

    def alerts(self, *, status: str | None = None) -> _list[dict[str, Any]]:
        body = self.client.get_json(self._path("alerts"), status=status)
        return _revive(body["alerts"])

    def close_alert(self, alert_id: str, status: str) -> dict[str, Any]:
        actions = {"acknowledged": "acknowledge", "resolved": "resolve"}
        if status not in actions:
            raise InvalidArgumentError(f"status must be acknowledged or resolved, not {status!r}.")
        body = self.client.send_json("POST", self._path("alerts", alert_id, actions[status]))
        return _revive(body)


def _plain(value: Any) -> Any:
    """A label as JSON carries it (NumPy scalars as Python values)."""
    return value.item() if hasattr(value, "item") else value
