"""Tracking through a team server: the same interface as :class:`TrackingStore`, over HTTP.

The tracker's background writer batches writes exactly as it does for a local store; each
batch is one request carrying an idempotency key, so a batch resent after a network error is
applied once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from conveyor.core.errors import InvalidArgumentError
from conveyor.store.client import ServerClient
from conveyor.store.workspace import Workspace
from conveyor.tracking.records import Experiment, MetricPoint, Run, RunStatus
from conveyor.tracking.search import MAX_LIMIT, Page
from conveyor.tracking.wire import decode_page, encode_ops

__all__ = ["RemoteTrackingStore"]


def _experiment(body: dict[str, Any]) -> Experiment:
    return Experiment(
        id=body["id"],
        name=body["name"],
        project_id=body["project_id"],
        created_at=datetime.fromisoformat(body["created_at"]),
    )


def run_from_json(body: dict[str, Any]) -> Run:
    """Rebuild a :class:`Run` from :meth:`Run.to_dict` output."""
    return Run(
        id=body["run_id"],
        name=body["name"],
        experiment=body["experiment"],
        status=RunStatus(body["status"]),
        start_time=datetime.fromisoformat(body["start_time"]),
        end_time=datetime.fromisoformat(body["end_time"]) if body["end_time"] else None,
        user=body["user"],
        parent_id=body["parent_id"],
        params=body["params"],
        metrics={
            k: (float(v) if v is not None else float("nan")) for k, v in body["metrics"].items()
        },
        tags=body["tags"],
        git_commit=body["git_commit"],
        git_branch=body["git_branch"],
        git_dirty=body["git_dirty"],
        command=body["command"],
        python_version=body["python_version"],
        host=body["host"],
        environment_digest=body["environment_digest"],
        deleted=body["deleted"],
    )


class RemoteTrackingStore:
    """Experiments and runs of one project, kept by a team server."""

    def __init__(self, ws: Workspace) -> None:
        client = ws.remote
        if client is None:
            raise InvalidArgumentError("RemoteTrackingStore needs a workspace on a team server.")
        self.ws = ws
        self.client: ServerClient = client
        self._experiments: dict[str, Experiment] = {}
        self._lock = threading.Lock()
        self._last_ops: Sequence[Any] | None = None
        self._last_key = ""

    def _path(self, *rest: str) -> str:
        return self.client.project_path(self.ws.settings.project, *rest)

    # -- experiments -----------------------------------------------------------------------

    def experiment(self, name: str, *, create: bool = True) -> Experiment:
        """Return the experiment ``name``, creating it on the server if asked."""
        with self._lock:
            if name in self._experiments:
                return self._experiments[name]
        if create:
            body = self.client.send_json("PUT", self._path("experiments", name))
        else:
            body = self.client.get_json(self._path("experiments", name))
        exp = _experiment(body)
        with self._lock:
            self._experiments[name] = exp
        return exp

    def list_experiments(self) -> list[tuple[Experiment, int]]:
        """Return the project's experiments with their number of (not deleted) runs."""
        body = self.client.get_json(self._path("experiments"))
        return [(_experiment(e), int(e["runs"])) for e in body["experiments"]]

    # -- writing ---------------------------------------------------------------------------

    def write(self, ops: Sequence[Any]) -> None:
        """Send ``ops`` as one batch; a retry after a lost answer is not applied twice.

        The writer retries a batch by passing the same list again: it keeps its key, so the
        server recognises it even when the first attempt committed but its answer was lost.
        """
        with self._lock:
            if ops is not self._last_ops:
                self._last_ops, self._last_key = ops, uuid.uuid4().hex
            key = self._last_key
        self.client.send_json(
            "POST", self._path("runs", "batch"), encode_ops(ops), headers={"Idempotency-Key": key}
        )

    def put_content(self, data: bytes, media_type: str) -> str:
        """Store ``data`` on the server as environment content; return its sha256."""
        response = self.client.request(
            "PUT", self._path("environments"), content=data, params={"media_type": media_type}
        )
        return str(response.json()["digest"])

    # -- reading ---------------------------------------------------------------------------

    def get_run(self, run_id: str, *, include_deleted: bool = True) -> Run:
        """Return a run with its params, latest metrics and tags."""
        body = self.client.get_json(
            self._path("runs", run_id), include_deleted=str(include_deleted).lower()
        )
        return run_from_json(body)

    def metric_history(
        self, run_id: str, key: str, *, max_points: int | None = None
    ) -> list[MetricPoint]:
        """Return a metric's points by step (downsampled on the server when asked)."""
        body = self.client.get_json(
            self._path("runs", run_id, "metrics", key), max_points=max_points
        )
        return [
            MetricPoint(int(s), float(v) if v is not None else float("nan"), int(t))
            for s, v, t in body["points"]
        ]

    def set_deleted(self, run_id: str, deleted: bool) -> None:
        """Delete (hide) or restore a run."""
        action = "delete" if deleted else "restore"
        self.client.send_json("POST", self._path("runs", run_id, action))

    def search(
        self,
        *,
        experiment: str | list[str] | None = None,
        filter: str | None = None,
        order_by: list[str] | str | None = None,
        limit: int = 1000,
        page_token: str | None = None,
        view: Literal["active", "deleted", "all"] = "active",
    ) -> Page:
        """One page of a search, run on the server."""
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidArgumentError(f"limit must be 1 to {MAX_LIMIT}; got {limit!r}.")
        payload = {
            "experiments": [experiment] if isinstance(experiment, str) else experiment,
            "filter": filter,
            "order_by": [order_by] if isinstance(order_by, str) else order_by,
            "limit": limit,
            "page_token": page_token,
            "view": view,
        }
        return decode_page(self.client.send_json("POST", self._path("runs", "search"), payload))
