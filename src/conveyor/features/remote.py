"""Feature views through a team server: apply entities and views over project datasets, list
them, show one (definition, versions, materializations, freshness), build point-in-time
training sets, materialize and read online values, all on the server, with the same records
as embedded. On-demand views (code) and views over Parquet paths or SQL are applied on the
server's host, where that code and those files are."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from conveyor.core.errors import ConveyorError, InvalidArgumentError
from conveyor.core.parquet import read_parquet
from conveyor.features.service import Applied, FeatureService, Materialization, definition_specs
from conveyor.store.client import ServerClient, revive_times
from conveyor.store.workspace import Workspace

__all__ = ["RemoteFeatureService"]

_list = list
_TIMES = ("created_at", "start", "end")


def _revive(value: Any) -> Any:
    """Turn ISO times back into datetimes, where the embedded dicts hold datetimes."""
    return revive_times(value, _TIMES.__contains__)


class RemoteFeatureService(FeatureService):
    """:class:`FeatureService` whose feature views a team server keeps and computes."""

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
            hint="Run it where those stores are reachable; applying, listing, showing, "
            "historical reads, materializing and online reads work through the server.",
        )

    @property
    def online_store(self) -> Any:
        raise self._needs_the_stores("Reading the online store")

    def apply(self, objects: Any) -> _list[Applied]:
        """Store the definitions on the server (entities, and views over project datasets)."""
        specs = definition_specs(list(objects))
        if not specs:
            return []
        body = self.client.send_json("POST", self._path("feature-views"), {"definitions": specs})
        return [Applied(**a) for a in body["applied"]]

    def historical(
        self,
        entity_df: Any,
        features: Sequence[str],
        *,
        timestamp: str = "event_timestamp",
        full_names: bool = False,
    ) -> Any:
        """Point-in-time correct features, joined on the server: the entity rows travel as
        Parquet (within the server's limits: the request body, 2,000,000 rows) and the
        feature columns come back, added to a copy of ``entity_df`` as embedded."""
        import io

        import orjson
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not isinstance(entity_df, pd.DataFrame):
            raise InvalidArgumentError(
                "historical takes a pandas DataFrame of entity rows; "
                f"got {type(entity_df).__name__}."
            )
        sent: dict[str, Any] = {}
        for column in entity_df.columns:  # what Arrow cannot hold is no key or timestamp
            try:
                sent[str(column)] = pa.array(entity_df[column], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                continue
        rows = io.BytesIO()
        pq.write_table(pa.table(sent), rows)
        spec = {"features": list(features), "timestamp": timestamp, "full_names": full_names}
        parts = [
            ("spec", ("spec.json", orjson.dumps(spec), "application/json")),
            ("entities", ("entities.parquet", rows.getvalue(), "application/vnd.apache.parquet")),
        ]
        # Not resent on its own: a proxy's timeout would start the whole join again.
        response = self.client.request(
            "POST", self._path("features", "historical"), files=parts, retry=False
        )
        features_table = read_parquet(response.content).to_pandas()
        result = entity_df.copy()
        for column in features_table.columns:
            result[column] = features_table[column].to_numpy()
        return result

    def materialize(
        self,
        views: Sequence[str] | None = None,
        *,
        start: datetime | None = None,
        end: datetime | str = "now",
    ) -> _list[Materialization]:
        """Materialize on the server, from the sources its stored definitions name."""
        body = {
            "views": list(views) if views is not None else None,
            "start": start.isoformat() if start is not None else None,
            "end": None if isinstance(end, str) and end == "now" else _iso(end),
        }
        done = self.client.send_json("POST", self._path("feature-views", "materialize"), body)
        return [
            Materialization(
                view=m["view"],
                start=datetime.fromisoformat(m["start"]) if m["start"] else None,
                end=datetime.fromisoformat(m["end"]),
                rows=int(m["rows"]),
                seconds=float(m["seconds"]),
            )
            for m in done["materializations"]
        ]

    def online(
        self,
        entity_rows: Any,
        features: Sequence[str],
        *,
        with_timestamps: bool = False,
        full_names: bool = False,
    ) -> Any:
        """The server's online values for ``entity_rows`` (a dict of key columns, or a
        DataFrame, answered in the same shape)."""
        import pandas as pd

        if full_names:
            raise InvalidArgumentError("full_names is not offered through a team server.")
        frame = entity_rows if isinstance(entity_rows, pd.DataFrame) else None
        columns = (
            {c: frame[c].tolist() for c in frame.columns}
            if frame is not None
            else {k: list(v) for k, v in entity_rows.items()}
        )
        body = {"entity": columns, "features": list(features), "with_timestamps": with_timestamps}
        answer = self.client.send_json("POST", self._path("features", "online"), body)
        values = answer["values"]
        # Times travel as ISO text: datetimes again, as embedded reads give them (the columns
        # the server names, and the event times; an older server names none).
        times = {k for k in values if k.endswith("__event_ts")}
        times.update(k for k in answer.get("times", ()) if k in values)
        for k in times:
            values[k] = [_from_iso(t) if isinstance(t, str) else t for t in values[k]]
        return pd.DataFrame(values) if frame is not None else values


def _from_iso(text: str) -> Any:
    """A time sent as ISO text, as a datetime; text that is not one (a timestamp feature's
    source can hold some) comes back as it is, as embedded reads give it."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text


def _iso(moment: Any) -> str:
    """An end time as the API takes it: a datetime, or an ISO 8601 string as given."""
    return moment.isoformat() if isinstance(moment, datetime) else str(moment)
