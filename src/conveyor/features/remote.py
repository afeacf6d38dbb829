"""Feature views through a team server: list them and show one (definition, versions,
materializations, freshness), with the same dicts as embedded. Applying definitions,
materializing and reading features need the stores themselves (offline sources, the online
store)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from conveyor.core.errors import ConveyorError, InvalidArgumentError
from conveyor.features.service import FeatureService
from conveyor.store.client import ServerClient, revive_times
from conveyor.store.workspace import Workspace

__all__ = ["RemoteFeatureService"]

_list = list
_TIMES = ("created_at", "start", "end")


def _revive(value: Any) -> Any:
    """Turn ISO times back into datetimes, where the embedded dicts hold datetimes."""
    return revive_times(value, _TIMES.__contains__)


class RemoteFeatureService(FeatureService):
    """:class:`FeatureService` whose feature views a team server keeps (read only)."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        client = ws.remote
        if client is None:
            raise InvalidArgumentError("RemoteFeatureService needs a workspace on a team server.")
        self.client: ServerClient = client

    def _path(self, *rest: str) -> str:
        return self.client.project_path(self.ws.settings.project, *rest)

    def list_views(self) -> _list[dict[str, Any]]:
        return _revive(self.client.get_json(self._path("feature-views"))["views"])

    def show(self, name: str) -> dict[str, Any]:
        return _revive(self.client.get_json(self._path("feature-views", name)))

    def freshness(self, name: str) -> timedelta | None:
        """How old the newest value is, as the server measures it on the project's store."""
        shown = self.show(name)
        if shown["kind"] != "view":
            raise InvalidArgumentError(f"{name!r} is on-demand: it has no stored values.")
        age = shown.get("freshness_s")
        return None if age is None else timedelta(seconds=age)

    # What reads or writes feature values needs the stores the server's project uses, not
    # this machine's: refused plainly rather than answered from a local store.

    def _needs_the_stores(self, what: str) -> ConveyorError:
        return ConveyorError(
            f"{what} is not available through a team server "
            f"(CONVEYOR_STORE_URI={self.ws.settings.store_uri}): it reads the project's "
            "offline sources and online store.",
            hint="Run it where those stores are reachable; listing and showing feature views "
            "works through the server.",
        )

    @property
    def online_store(self) -> Any:
        raise self._needs_the_stores("Reading the online store")

    def apply(self, objects: Any) -> Any:
        raise self._needs_the_stores("Applying feature definitions")

    def historical(self, *args: Any, **kwargs: Any) -> Any:
        raise self._needs_the_stores("Reading historical features")

    def materialize(self, *args: Any, **kwargs: Any) -> Any:
        raise self._needs_the_stores("Materializing features")

    def online(self, *args: Any, **kwargs: Any) -> Any:
        raise self._needs_the_stores("Reading online features")
