"""The feature store of one workspace: apply definitions, build training sets, materialize,
serve online."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.clock import utcnow
from conveyor.core.errors import ConveyorError, InvalidArgumentError, NotFoundError
from conveyor.core.modules import entrypoint_of, import_module_or_file
from conveyor.core.uris import redact_uri
from conveyor.features import offline
from conveyor.features.definitions import (
    DatasetSource,
    DetachedSource,
    Entity,
    FeatureView,
    Field,
    OnDemandView,
    ParquetSource,
    SqlSource,
    digest,
)
from conveyor.features.online_stores import OnlineStore, open_online_store, pack_many
from conveyor.store.activity import current_activity
from conveyor.store.metadata.schema import (
    entities,
    feature_view_versions,
    feature_views,
    materializations,
)
from conveyor.store.metadata.sql import insert_ignore
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace, current_workspace

__all__ = [
    "FeatureComputeError",
    "FeatureService",
    "Materialization",
    "definition_specs",
    "definitions_from_specs",
    "feature_service",
]

log = logging.getLogger(__name__)

#: How long a process reuses its plan for reading a list of features online before it reads
#: the definitions and the stored layout again (another process may apply or materialize).
PLAN_TTL_S = 5.0

VERSION_KIND = "feature_view_version"
#: Views whose features all have these types are stored packed (float64s), read back typed.
_NUMERIC = {"int64": int, "int32": int, "float64": None, "float32": None, "bool": bool}


def _as_datetime(value: Any) -> Any:
    """A timestamp feature read online, where the record holds it as text, as the datetime
    offline reads give (naive when the source's column is; a time zone when it has one)."""
    if isinstance(value, datetime):
        return value
    text = str(value)
    if _SHORT_OFFSET.search(text):  # DuckDB writes UTC as '+00'
        text += ":00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # text the source held that is not a time: given as it is
        return value


_SHORT_OFFSET = re.compile(r"[ T]\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d$")


#: How online reads give back a feature of each type stored packed or as text.
_READ_AS: dict[str, Any] = {**_NUMERIC, "timestamp": _as_datetime}


class FeatureComputeError(ConveyorError, RuntimeError):
    """An on-demand feature function raised."""

    code = "conveyor.feature_compute_failed"


@dataclass(frozen=True, slots=True)
class Applied:
    name: str
    kind: str
    version: int
    changed: bool


@dataclass(frozen=True, slots=True)
class Materialization:
    view: str
    start: datetime | None
    end: datetime
    rows: int
    seconds: float


@dataclass(frozen=True, slots=True)
class _Plan:
    reads: list[
        tuple[str, str, tuple[str, ...], list[tuple[str, int | None, Any]]]
    ]  # view, its records' name, keys, (f, position in the stored layout or None, type)
    direct: list[tuple[str, tuple[str, str]]]  # column, (view, feature)
    demanded: list[tuple[Any, list[tuple[str, tuple[str, str]]], list[tuple[str, str]]]]


@dataclass(frozen=True, slots=True)
class _Ref:
    view: str
    feature: str
    on_demand: bool


def feature_service(ws: Workspace | None = None) -> FeatureService:
    """The feature service of ``ws`` (default: the workspace in use)."""
    ws = ws or current_workspace()
    if ws.remote is not None:
        from conveyor.features.remote import RemoteFeatureService

        return ws.service("features", RemoteFeatureService)
    return ws.service("features", FeatureService)


def _us(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000)


def _key_of(values: Sequence[Any]) -> str:
    """An entity key as stored online: the value as text, or a JSON list for several (UTF-8
    as is, as DuckDB's ``to_json`` writes it when materializing)."""
    if len(values) == 1:
        return _text(values[0])
    return json.dumps([_text(v) for v in values], separators=(",", ":"), ensure_ascii=False)


def _stored_as(view: FeatureView) -> str:
    """The name of ``view``'s records in the online store: its name and a digest of their
    layout (keys, and features in order with their types). A definition that lays records
    out differently writes and reads other records, so a reader never takes one feature's
    value for another's, whichever definition it holds."""
    layout = [list(view.keys), [[f.name, f.dtype] for f in view.features]]
    return f"{view.name}__{digest({'layout': layout})[:12]}"


def _missing(value: Any) -> bool:
    """Whether a key value is missing: None, or a value unequal to itself (NaN, NaT, pd.NA)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:  # pd.NA: its comparisons are NA, whose truth is ambiguous
        return True


def _text(value: Any) -> str:
    """One text form per key value, offline and online alike: NumPy scalars as Python ones,
    and a whole float as an integer (a key column becomes float64 once it held a NaN)."""
    if hasattr(value, "item"):  # NumPy scalars
        value = value.item()
    if isinstance(value, float) and value.is_integer() and abs(value) < _INT64_SAFE:
        value = int(value)
    return str(value)


#: Whole floats below this are keys as integers, in Python as in SQL (larger ones do not fit
#: DuckDB's BIGINT and stay floats in both).
_INT64_SAFE = 2.0**63


class FeatureService:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._objects: dict[str, FeatureView | OnDemandView] = {}
        self._online: OnlineStore | None = None
        self._refs: dict[tuple[str, ...], list[_Ref]] = {}
        self._plans: dict[tuple[tuple[str, ...], bool], tuple[_Plan, float]] = {}
        self._applied: set[str] = set()  # definitions this process applied (authoritative)

    def close(self) -> None:
        if self._online is not None:
            self._online.close()
            self._online = None

    @property
    def project_id(self) -> str:
        return str(self.ws.project.id)

    @property
    def online_store(self) -> OnlineStore:
        if self._online is None:
            self._online = open_online_store(self.ws.settings.online_uri, self.project_id)
        return self._online

    # -- definitions ---------------------------------------------------------------------

    def apply(self, objects: Iterable[Entity | FeatureView | OnDemandView]) -> list[Applied]:
        """Store the definitions; a changed one becomes a new version. Returns what happened."""
        items = list(objects)
        for obj in items:
            if not isinstance(obj, Entity | FeatureView | OnDemandView):
                raise InvalidArgumentError(
                    f"apply takes Entity, FeatureView and on_demand objects; got {obj!r}."
                )
        for obj in items:
            if isinstance(obj, OnDemandView):
                for ref in self._parse_refs(obj.inputs, extra=items):
                    if ref.on_demand:
                        raise InvalidArgumentError(
                            f"On-demand view {obj.name!r} takes {ref.feature!r}, itself "
                            "on-demand; inputs must be features of feature views."
                        )
        done: list[Applied] = []
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            for obj in items:
                if isinstance(obj, Entity):
                    entity_id = ids.new_id()
                    created = insert_ignore(
                        uow.conn,
                        entities,
                        [
                            {
                                "id": entity_id,
                                "project_id": self.project_id,
                                "name": obj.name,
                                "keys": list(obj.keys),
                                "created_at": uow.now,
                            }
                        ],
                        conflict_columns=["project_id", "name"],
                    )
                    if created:
                        uow.audit(
                            "feature_entity.create",
                            ObjectRef("feature_entity", entity_id),
                            after={"name": obj.name, "keys": list(obj.keys)},
                        )
                    done.append(Applied(obj.name, "entity", 1, bool(created)))
                    continue
                done.append(self._apply_view(uow, obj))
        for obj in items:
            if not isinstance(obj, Entity):
                self._objects[obj.name] = obj
                self._applied.add(obj.name)
        self._refs.clear()
        self._plans.clear()
        return done

    def _apply_view(self, uow: Any, obj: FeatureView | OnDemandView) -> Applied:
        kind = "view" if isinstance(obj, FeatureView) else "on_demand"
        spec = obj.spec()
        if isinstance(obj, OnDemandView):
            spec["entrypoint"] = entrypoint_of(obj.fn)
        new_digest = digest(spec)
        conn = uow.conn
        row = conn.execute(
            sa.select(feature_views).where(
                feature_views.c.project_id == self.project_id, feature_views.c.name == obj.name
            )
        ).first()
        if row is None:
            view_id = ids.new_id()
            conn.execute(
                feature_views.insert(),
                [
                    {
                        "id": view_id,
                        "project_id": self.project_id,
                        "name": obj.name,
                        "kind": kind,
                        "latest_version": 0,
                        "created_at": uow.now,
                    }
                ],
            )
            latest = 0
        else:
            if row.kind != kind:
                raise InvalidArgumentError(
                    f"{obj.name!r} is already a {row.kind.replace('_', '-')} view; names are "
                    "shared by feature views and on-demand views."
                )
            view_id, latest = row.id, row.latest_version
            current = conn.execute(
                sa.select(feature_view_versions.c.digest).where(
                    feature_view_versions.c.view_id == view_id,
                    feature_view_versions.c.version == latest,
                )
            ).scalar()
            if current == new_digest:
                return Applied(obj.name, kind, latest, False)
        version = latest + 1
        version_id = ids.new_id()
        conn.execute(
            feature_view_versions.insert(),
            [
                {
                    "id": version_id,
                    "view_id": view_id,
                    "version": version,
                    "digest": new_digest,
                    "definition": spec,
                    "created_at": uow.now,
                    "created_by": uow.actor,  # the caller, on a server
                }
            ],
        )
        conn.execute(
            feature_views.update()
            .where(feature_views.c.id == view_id)
            .values(latest_version=version)
        )
        uow.audit(
            "feature_view.apply",
            ObjectRef(VERSION_KIND, version_id),
            after={"name": obj.name, "version": version},
        )
        return Applied(obj.name, kind, version, True)

    def list_views(self) -> list[dict[str, Any]]:
        """The project's feature views and on-demand views with their latest definition."""
        query = (
            sa.select(
                feature_views.c.name,
                feature_views.c.kind,
                feature_views.c.latest_version,
                feature_view_versions.c.definition,
                feature_view_versions.c.created_at,
            )
            .join(
                feature_view_versions,
                (feature_view_versions.c.view_id == feature_views.c.id)
                & (feature_view_versions.c.version == feature_views.c.latest_version),
            )
            .where(feature_views.c.project_id == self.project_id)
            .order_by(feature_views.c.name)
        )
        with self.ws.metadata.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def show(self, name: str) -> dict[str, Any]:
        """A view's versions, materializations and freshness."""
        found = [v for v in self.list_views() if v["name"] == name]
        if not found:
            raise self._unknown_view(name)
        view = found[0]
        with self.ws.metadata.read() as conn:
            view_id = conn.execute(
                sa.select(feature_views.c.id).where(
                    feature_views.c.project_id == self.project_id, feature_views.c.name == name
                )
            ).scalar()
            versions = conn.execute(
                sa.select(
                    feature_view_versions.c.id,
                    feature_view_versions.c.version,
                    feature_view_versions.c.digest,
                    feature_view_versions.c.created_at,
                    feature_view_versions.c.created_by,
                )
                .where(feature_view_versions.c.view_id == view_id)
                .order_by(feature_view_versions.c.version.desc())
            ).all()
            runs = conn.execute(
                sa.select(
                    materializations.c.start_at,
                    materializations.c.end_at,
                    materializations.c.rows,
                    materializations.c.seconds,
                    materializations.c.online_uri,
                )
                .where(materializations.c.view_id == view_id)
                .order_by(materializations.c.end_at.desc())
                .limit(10)
            ).all()
        view["versions"] = [dict(v._mapping) for v in versions]
        view["materializations"] = [
            {
                "start": r.start_at,
                "end": r.end_at,
                "rows": r.rows,
                "seconds": r.seconds,
                "online_uri": r.online_uri,
            }
            for r in runs
        ]
        view["freshness_s"] = (
            None
            if view["kind"] != "view"
            else (lambda age: None if age is None else age.total_seconds())(self.freshness(name))
        )
        return view

    def _definition(self, name: str) -> FeatureView | OnDemandView:
        """The in-process definition, else one rebuilt from the stored spec."""
        if name in self._objects:
            return self._objects[name]
        found = [v for v in self.list_views() if v["name"] == name]
        if not found:
            raise self._unknown_view(name)
        spec = found[0]["definition"]
        if spec["kind"] == "on_demand":
            module_name, _, attr = spec["entrypoint"].rpartition(":")
            try:
                obj = getattr(import_module_or_file(module_name), attr)
            except Exception as e:
                raise InvalidArgumentError(
                    f"On-demand view {name!r} is defined in {spec['entrypoint']}, which cannot be "
                    f"imported here ({e}).",
                    hint="Import the module that defines it (or apply it) in this process.",
                ) from e
            if not isinstance(obj, OnDemandView):
                raise InvalidArgumentError(f"{spec['entrypoint']} is not an on-demand view.")
        else:
            obj = _view_from_spec(spec)
        self._objects[name] = obj
        return obj

    def _unknown_view(self, name: str) -> NotFoundError:
        known = sorted({*self._objects, *(v["name"] for v in self.list_views())})
        return NotFoundError(
            f"No feature view called {name!r}; views: {', '.join(known) or '(none)'}.",
            hint="Define it and cv.features.apply([...]) it.",
        )

    def _version_ids(self, names: Iterable[str]) -> dict[str, str]:
        query = (
            sa.select(feature_views.c.name, feature_view_versions.c.id)
            .join(
                feature_view_versions,
                (feature_view_versions.c.view_id == feature_views.c.id)
                & (feature_view_versions.c.version == feature_views.c.latest_version),
            )
            .where(
                feature_views.c.project_id == self.project_id,
                feature_views.c.name.in_(list(names)),
            )
        )
        with self.ws.metadata.read() as conn:
            return {r.name: r.id for r in conn.execute(query)}

    # -- references ----------------------------------------------------------------------

    def _parse_refs(self, refs: Sequence[str], extra: Sequence[Any] = ()) -> list[_Ref]:
        objects = {**self._objects, **{o.name: o for o in extra if not isinstance(o, Entity)}}
        stored = None
        out: list[_Ref] = []
        for ref in refs:
            if not isinstance(ref, str) or not ref:
                raise InvalidArgumentError(f"A feature reference is 'view:feature'; got {ref!r}.")
            view_name, sep, feature = ref.partition(":")
            if sep:
                obj = objects.get(view_name)
                if obj is None:
                    obj = self._definition(view_name)
                if feature not in obj.feature_names:
                    raise NotFoundError(
                        f"Feature view {view_name!r} has no feature {feature!r}; its features: "
                        f"{', '.join(obj.feature_names)}."
                    )
                out.append(_Ref(view_name, feature, isinstance(obj, OnDemandView)))
                continue
            if stored is None:  # names only: nothing is imported to search them
                stored = {name: list(o.feature_names) for name, o in objects.items()}
                for v in self.list_views():
                    spec = v["definition"]
                    listed = spec.get("features") or spec.get("outputs") or []
                    stored.setdefault(v["name"], [n for n, _ in listed])
            owner_names = [name for name, feats in stored.items() if ref in feats]
            owners = [objects.get(name) or self._definition(name) for name in owner_names]
            if not owners:
                raise NotFoundError(
                    f"No feature view has a feature called {ref!r}.",
                    hint="Name it as 'view:feature'; `conveyor features list` shows them.",
                )
            if len(owners) > 1:
                raise InvalidArgumentError(
                    f"The feature {ref!r} is in several views "
                    f"({', '.join(o.name for o in owners)}); name it as 'view:feature'."
                )
            out.append(_Ref(owners[0].name, ref, isinstance(owners[0], OnDemandView)))
        return out

    def _resolve(self, features: Sequence[str]) -> list[_Ref]:
        key = tuple(features)
        found = self._refs.get(key)
        if found is None:
            found = self._parse_refs(features)
            self._refs[key] = found
        return found

    # -- offline -------------------------------------------------------------------------

    def historical(
        self,
        entity_df: Any,
        features: Sequence[str],
        *,
        timestamp: str = "event_timestamp",
        full_names: bool = False,
    ) -> Any:
        """Point-in-time correct features for each row of ``entity_df`` (a pandas DataFrame
        with the entity keys and ``timestamp``): same rows, same order and index, one column
        per requested feature (``view__feature`` when two views share a name or
        ``full_names``), null where no value is in range."""
        import pandas as pd
        import pyarrow as pa

        if not isinstance(entity_df, pd.DataFrame):
            raise InvalidArgumentError(
                "historical takes a pandas DataFrame of entity rows; "
                f"got {type(entity_df).__name__}."
            )
        if timestamp not in entity_df.columns:
            times = [
                c for c in entity_df.columns if pd.api.types.is_datetime64_any_dtype(entity_df[c])
            ]
            raise InvalidArgumentError(
                f"The entity rows have no timestamp column {timestamp!r}; their timestamp "
                f"columns: {', '.join(map(str, times)) or '(none)'}.",
                hint="Pass timestamp='<column>' or add the column.",
            )
        if not pd.api.types.is_datetime64_any_dtype(entity_df[timestamp]):
            raise InvalidArgumentError(
                f"The entity column {timestamp!r} must hold timestamps; it holds "
                f"{entity_df[timestamp].dtype}.",
                hint="Convert it with pd.to_datetime(...).",
            )
        refs = self._resolve(features)
        direct = [r for r in refs if not r.on_demand]
        demanded = [r for r in refs if r.on_demand]
        needed: dict[str, list[str]] = {}
        for r in direct:
            needed.setdefault(r.view, []).append(r.feature)
        for r in demanded:
            view = self._definition(r.view)
            assert isinstance(view, OnDemandView)
            for inp in self._parse_refs(view.inputs):
                feats = needed.setdefault(inp.view, [])
                if inp.feature not in feats:
                    feats.append(inp.feature)
        views = {name: self._definition(name) for name in needed}
        for view in views.values():
            assert isinstance(view, FeatureView)
            missing = [k for k in view.keys if k not in entity_df.columns]
            if missing:
                raise InvalidArgumentError(
                    f"The entity rows lack the key column {', '.join(map(repr, missing))} of "
                    f"feature view {view.name!r}."
                )
        counts: dict[str, int] = {}
        for r in refs:
            counts[r.feature] = counts.get(r.feature, 0) + 1
        clash = [
            name
            for name in dict.fromkeys(_column(r, counts, full_names) for r in refs)
            if name in entity_df.columns
        ]
        if clash:
            raise InvalidArgumentError(
                f"The entity rows already have a column {', '.join(map(repr, clash))}, which "
                "a requested feature's column would replace.",
                hint="Rename that column of the entity rows, or pass full_names=True for "
                "view__feature columns.",
            )
        # The feature columns are gathered here and joined once at the end: one column
        # assigned at a time fragments the frame (pandas warns past a hundred).
        columns: dict[str, Any] = {}
        ts = entity_df[timestamp]
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
        settings = self.ws.settings
        con = offline.connect(settings.query_memory_limit, settings.state_dir / "tmp")
        data = (
            self._data_service()
            if any(
                isinstance(v.source, DatasetSource)
                for v in views.values()
                if isinstance(v, FeatureView)
            )
            else None
        )
        values: dict[tuple[str, str], Any] = {}
        import duckdb

        try:
            for view in views.values():
                assert isinstance(view, FeatureView)
                # From pandas, not NumPy: a text column with a missing value (pandas' str
                # dtype) is an object array starting with NaN, which Arrow takes for floats.
                frame = {k: pa.Array.from_pandas(entity_df[k]) for k in view.keys}
                frame["__ts"] = ts.to_numpy().astype("datetime64[us]")
                frame["__row"] = range(len(entity_df))
                try:
                    table = offline.join_view(
                        con, view, pa.table(frame), needed[view.name], data, self.ws.settings.root
                    )
                except duckdb.Error as e:
                    keys = ", ".join(f"{k} ({entity_df[k].dtype})" for k in view.keys)
                    raise InvalidArgumentError(
                        f"Joining feature view {view.name!r} on the entity rows failed: {e}",
                        hint=f"The entity keys {keys} need the types of the view's source.",
                    ) from None
                for feature in needed[view.name]:
                    values[(view.name, feature)] = table.column(feature).to_pandas().to_numpy()
        finally:
            con.close()
        for r in direct:
            columns[_column(r, counts, full_names)] = values[(r.view, r.feature)]
        for view_name in dict.fromkeys(r.view for r in demanded):
            view = self._definition(view_name)
            assert isinstance(view, OnDemandView)
            taken = self._parse_refs(view.inputs)
            inputs = pd.DataFrame(
                {
                    name: values[(inp.view, inp.feature)]
                    for name, inp in zip(_input_columns(taken), taken, strict=True)
                },
                index=entity_df.index,
            )
            out = self._compute(view, inputs, entity_df)
            for r in demanded:
                if r.view == view_name:
                    columns[_column(r, counts, full_names)] = out[r.feature].to_numpy()
        self._record_use(views.keys() | {r.view for r in demanded})
        # Positional: the arrays follow the entity rows, whatever their index holds.
        added = pd.DataFrame(columns, index=entity_df.index)
        return pd.concat([entity_df, added], axis=1)

    def text_keys(self, features: Sequence[str]) -> list[str]:
        """The entity keys that the sources of ``features`` keep as text (so that a file of
        entity rows can be read with those columns as text, "007" staying "007")."""
        views: dict[str, FeatureView] = {}
        for r in self._resolve(features):
            obj = self._definition(r.view)
            inputs = self._parse_refs(obj.inputs) if isinstance(obj, OnDemandView) else [r]
            for i in inputs:
                view = self._definition(i.view)
                assert isinstance(view, FeatureView)
                views[view.name] = view
        settings = self.ws.settings
        con = offline.connect(settings.query_memory_limit, settings.state_dir / "tmp")
        try:
            found: dict[str, None] = {}
            for view in views.values():
                data = self._data_service() if isinstance(view.source, DatasetSource) else None
                kinds = offline.key_kinds(con, view, data, settings.root)
                found.update({k: None for k, kind in kinds.items() if kind == "text"})
            return list(found)
        finally:
            con.close()

    def _compute(self, view: OnDemandView, inputs: Any, request: Any) -> Any:
        try:
            out = view.fn(inputs, request)
        except Exception as e:
            raise FeatureComputeError(
                f"The on-demand feature function {view.name!r} raised {type(e).__name__}: {e}"
            ) from e
        missing = [
            f for f in view.feature_names if not hasattr(out, "columns") or f not in out.columns
        ]
        if missing:
            raise FeatureComputeError(
                f"The on-demand feature function {view.name!r} returned no column "
                f"{', '.join(map(repr, missing))}; it must return a DataFrame with its outputs."
            )
        return out

    def _record_use(self, names: Iterable[str]) -> None:
        activity = current_activity()
        if activity is None:
            return
        version_ids = self._version_ids(names)
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            for version_id in version_ids.values():
                uow.link(ObjectRef(VERSION_KIND, version_id), activity, "used_by")

    def _data_service(self) -> Any:
        from conveyor.data.service import data_service

        return data_service(self.ws)

    # -- materialization and online ------------------------------------------------------

    def materialize(
        self,
        views: Sequence[str] | None = None,
        *,
        start: datetime | None = None,
        end: datetime | str = "now",
    ) -> list[Materialization]:
        """Write each view's latest values at ``end`` to the online store, incrementally from
        the last materialization (or from ``start``); idempotent."""
        end_at = utcnow() if end == "now" else end
        if not isinstance(end_at, datetime):
            raise InvalidArgumentError(f"end is a datetime or 'now'; got {end!r}.")
        end_at = _utc(end_at)
        if start is not None:
            start = _utc(start)
            if start > end_at:
                raise InvalidArgumentError(
                    f"start ({start:%Y-%m-%d %H:%M:%S}) is after end ({end_at:%Y-%m-%d %H:%M:%S})."
                )
        names = (
            list(views)
            if views is not None
            else [v["name"] for v in self.list_views() if v["kind"] == "view"]
        )
        version_ids = self._version_ids(names)
        done = []
        for name in names:
            view = self._definition(name)
            if not isinstance(view, FeatureView):
                raise InvalidArgumentError(
                    f"{name!r} is on-demand: there is nothing to materialize."
                )
            if views is None and isinstance(view.source, DetachedSource):
                # Every view was asked for: one whose rows are a DataFrame of another
                # process is passed over (named), not a failure of all the others.
                log.warning(
                    "conveyor: feature view %r reads a DataFrame in the process that applied "
                    "it; materialize it there (the other views go on).",
                    name,
                )
                continue
            if name not in version_ids:
                raise NotFoundError(f"Feature view {name!r} is not applied yet; apply it first.")
            done.append(self._materialize_one(view, version_ids[name], start, end_at))
        self._plans.clear()  # the records may be laid out anew: plans read them from here
        return done

    def _last_run(self, name: str) -> tuple[datetime, str, Any] | None:
        """When the latest materialization of ``name`` into this online store ended, the
        definition version it wrote and what its source read (``offline.source_state``)."""
        query = (
            sa.select(
                materializations.c.end_at,
                materializations.c.version_id,
                materializations.c.source_state,
            )
            .join(feature_views, feature_views.c.id == materializations.c.view_id)
            .where(
                feature_views.c.project_id == self.project_id,
                feature_views.c.name == name,
                materializations.c.online_uri == redact_uri(self.online_store.uri),
            )
            .order_by(materializations.c.created_at.desc(), materializations.c.id.desc())
            .limit(1)
        )
        with self.ws.metadata.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else (_utc(row.end_at), row.version_id, row.source_state)

    def _materialize_one(
        self, view: FeatureView, version_id: str, start: datetime | None, end: datetime
    ) -> Materialization:
        started = time.perf_counter()
        store = self.online_store
        root = self.ws.settings.root
        data = self._data_service() if isinstance(view.source, DatasetSource) else None
        state = offline.source_state(view, data, root)
        stored = _stored_as(view)
        last = self._last_run(view.name)
        since = start
        split = None
        if last is not None and last[1] != version_id:
            self._drop_records(view, last[1])  # a new definition: its records are laid out anew
            since = None
        elif last is not None and last[0] > end:
            store.drop(stored)  # going back in time: rebuild at END (from START if given)
        elif last is not None and store.newest(stored) is None:
            # Nothing stored for this layout although a run wrote it: the store was emptied,
            # or its records were named otherwise before. Rebuilt, not continued.
            store.drop(view.name)  # records named by the view alone (before layouts)
        elif since is None and last is not None:
            since = last[0]
        if since is not None and last is not None and view.source.created_timestamp is None:
            # Without a created time, rows older than the last run can only be told by where
            # they are: new or rewritten files, or another dataset version (read whole; the
            # stores keep the newer of two values).
            split = offline.split_files(last[2], state)
            if state and "dataset" in state and state != last[2]:
                since = None
        con = offline.connect(
            self.ws.settings.query_memory_limit, self.ws.settings.state_dir / "tmp"
        )
        try:
            numeric = all(f.dtype in _NUMERIC for f in view.features)
            table = offline.latest_rows(
                con, view, since, end, data, root, numeric=numeric, split=split
            )
        finally:
            con.close()
        keys = table.column("__key").to_pylist()
        stamps = table.column("__ts").to_pylist()
        if numeric:
            import numpy as np

            matrix = (
                np.column_stack(
                    [
                        table.column(f).to_numpy(zero_copy_only=False).astype("float64")
                        for f in view.feature_names
                    ]
                )
                if table.num_rows
                else np.empty((0, len(view.features)))
            )
            payloads: list[Any] = pack_many(table.column("__ts").to_numpy(), matrix)
        else:
            payloads = table.column("__payload").to_pylist()
        rows = store.write_encoded(stored, keys, stamps, payloads)
        if view.ttl_delta is not None:
            store.delete_older(stored, _us(end - view.ttl_delta))
        seconds = time.perf_counter() - started
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            view_id = uow.conn.execute(
                sa.select(feature_views.c.id).where(
                    feature_views.c.project_id == self.project_id,
                    feature_views.c.name == view.name,
                )
            ).scalar()
            # Only the newest run's source state is ever read: earlier ones are let go, so a
            # source of many files does not grow the store by its file list per run.
            uow.conn.execute(
                materializations.update()
                .where(
                    materializations.c.view_id == view_id,
                    materializations.c.online_uri == redact_uri(store.uri),
                    materializations.c.source_state.is_not(None),
                )
                .values(source_state=None)
            )
            uow.conn.execute(
                materializations.insert(),
                [
                    {
                        "id": ids.new_id(),
                        "view_id": view_id,
                        "version_id": version_id,
                        "online_uri": redact_uri(store.uri),  # no password in records
                        "start_at": since,
                        "end_at": end,
                        "rows": rows,
                        "seconds": seconds,
                        "source_state": state,
                        "created_at": uow.now,
                    }
                ],
            )
            uow.audit(  # who wrote the online values (through a server: the caller)
                "feature_view.materialize",
                ObjectRef("feature_view", str(view_id)),
                after={
                    "view": view.name,
                    "start": since.isoformat() if since is not None else None,
                    "end": end.isoformat(),
                    "rows": rows,
                },
            )
        return Materialization(view.name, since, end, rows, seconds)

    def _stored_layout(self, view: FeatureView) -> tuple[str, FeatureView]:
        """Where ``view``'s online records are, and the definition they were written with:
        the one the last run into this online store wrote (this process's definition may
        be newer, or older, than what is stored). Records written before they were named by
        layout are read under the view's name."""
        last = self._last_run(view.name)
        layout = view
        if last is not None:
            with self.ws.metadata.read() as conn:
                spec = conn.execute(
                    sa.select(feature_view_versions.c.definition).where(
                        feature_view_versions.c.id == last[1]
                    )
                ).scalar()
            if isinstance(spec, dict) and spec.get("kind") == "view":
                with contextlib.suppress(KeyError, TypeError, ValueError, InvalidArgumentError):
                    layout = _view_from_spec(spec)
        stored = _stored_as(layout)
        store = self.online_store
        if last is not None and store.newest(stored) is None and store.newest(view.name):
            stored = view.name  # written before layouts named records
        return stored, layout

    def _drop_records(self, view: FeatureView, version_id: str) -> None:
        """Remove the online records an earlier definition (``version_id``) of ``view``
        wrote, and any named by the view alone (before layouts)."""
        with self.ws.metadata.read() as conn:
            spec = conn.execute(
                sa.select(feature_view_versions.c.definition).where(
                    feature_view_versions.c.id == version_id
                )
            ).scalar()
        store = self.online_store
        if isinstance(spec, dict) and spec.get("kind") == "view":
            # a definition this version cannot read back names nothing to drop
            with contextlib.suppress(KeyError, TypeError, ValueError, InvalidArgumentError):
                store.drop(_stored_as(_view_from_spec(spec)))
        store.drop(view.name)

    def online(
        self,
        entity_rows: dict[str, Sequence[Any]] | Any,
        features: Sequence[str],
        *,
        with_timestamps: bool = False,
        full_names: bool = False,
    ) -> Any:
        """The materialized values for ``entity_rows`` (a dict of key columns, or a DataFrame):
        the same shape back with one column per feature (nulls for unknown entities)."""
        rows: Any = entity_rows
        frame_in = hasattr(rows, "columns") and hasattr(rows, "to_dict")
        columns = {c: list(rows[c]) for c in rows.columns} if frame_in else dict(rows)
        plan = self._online_plan(tuple(features), full_names)
        n = len(next(iter(columns.values()))) if columns else 0
        out: dict[str, Any] = {k: list(v) for k, v in columns.items()}
        fetched: dict[tuple[str, str], list[Any]] = {}
        for view_name, stored, keys, wanted in plan.reads:
            missing = [k for k in keys if k not in columns]
            if missing:
                raise InvalidArgumentError(
                    f"The entity rows lack the key {', '.join(map(repr, missing))} of feature "
                    f"view {view_name!r}."
                )
            # A missing key (None, NaN, NaT, pd.NA) names no entity: it is not looked up
            # (as text it would be 'None' or 'nan', which an entity may be called).
            key_values: list[str | None]
            if len(keys) == 1:
                key_values = [None if _missing(v) else _text(v) for v in columns[keys[0]]]
            else:
                key_cols = [columns[k] for k in keys]
                key_values = [
                    None
                    if any(_missing(c[i]) for c in key_cols)
                    else _key_of([c[i] for c in key_cols])
                    for i in range(n)
                ]
            asked = [k for k in key_values if k is not None]
            found = iter(self.online_store.read(stored, asked) if asked else ())
            records = [next(found) if k is not None else None for k in key_values]
            for feature, pos, kind in wanted:
                got = [rec[1][pos] if rec and pos is not None else None for rec in records]
                if kind is not None:  # packed as float64 (or text): back to its type
                    got = [v if v is None or type(v) is kind else kind(v) for v in got]
                fetched[(view_name, feature)] = got
            if with_timestamps:
                out[f"{view_name}__event_ts"] = [
                    datetime.fromtimestamp(rec[0] / 1_000_000, UTC) if rec else None
                    for rec in records
                ]
        for column, source in plan.direct:
            out[column] = fetched[source]
        if plan.demanded:
            import pandas as pd

            request = pd.DataFrame(columns)
            for view, inputs, outputs in plan.demanded:
                frame = pd.DataFrame({name: fetched[source] for name, source in inputs})
                result = self._compute(view, frame, request)
                for column, feature in outputs:
                    out[column] = result[feature].tolist()
        if frame_in:
            import pandas as pd

            return pd.DataFrame(out, index=rows.index)
        return out

    def _online_plan(self, features: tuple[str, ...], full_names: bool) -> _Plan:
        """What to read for ``features`` (cached: serving asks for the same list each time)."""
        found = self._plans.get((features, full_names))
        if found is not None and time.monotonic() - found[1] < PLAN_TTL_S:
            return found[0]
        if found is not None:  # stale: definitions others applied, and what is stored, anew
            for name in [n for n in self._objects if n not in self._applied]:
                del self._objects[name]
            self._refs.clear()
        refs = self._resolve(features)
        counts: dict[str, int] = {}
        for r in refs:
            counts[r.feature] = counts.get(r.feature, 0) + 1
        needed: dict[str, list[str]] = {}
        demanded = []
        for r in refs:
            if not r.on_demand:
                needed.setdefault(r.view, [])
                if r.feature not in needed[r.view]:
                    needed[r.view].append(r.feature)
        for view_name in dict.fromkeys(r.view for r in refs if r.on_demand):
            view = self._definition(view_name)
            assert isinstance(view, OnDemandView)
            inputs = self._parse_refs(view.inputs)
            for i in inputs:
                needed.setdefault(i.view, [])
                if i.feature not in needed[i.view]:
                    needed[i.view].append(i.feature)
            outputs = [
                (_column(r, counts, full_names), r.feature) for r in refs if r.view == view_name
            ]
            named = zip(_input_columns(inputs), inputs, strict=True)
            demanded.append((view, [(name, (i.view, i.feature)) for name, i in named], outputs))
        reads = []
        for view_name, feats in needed.items():
            view = self._definition(view_name)
            assert isinstance(view, FeatureView)
            stored, layout = self._stored_layout(view)
            # By name in the layout the records were written with: a feature that layout
            # lacks (added since) reads null until the next run writes it.
            names = layout.feature_names
            kinds = {f.name: _READ_AS.get(f.dtype) for f in layout.features}
            wanted = [(f, names.index(f) if f in names else None, kinds.get(f)) for f in feats]
            reads.append((view_name, stored, view.keys, wanted))
        direct = [
            (_column(r, counts, full_names), (r.view, r.feature)) for r in refs if not r.on_demand
        ]
        plan = _Plan(reads, direct, demanded)
        self._plans[(features, full_names)] = (plan, time.monotonic())
        return plan

    def freshness(self, name: str) -> timedelta | None:
        """How old the newest materialized value of view ``name`` is (None: nothing yet)."""
        view = self._definition(name)
        if not isinstance(view, FeatureView):
            raise InvalidArgumentError(f"{name!r} is on-demand: it has no stored values.")
        newest = self.online_store.newest(self._stored_layout(view)[0])
        if newest is None:
            return None
        return utcnow() - datetime.fromtimestamp(newest / 1_000_000, UTC)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _input_columns(inputs: Sequence[_Ref]) -> list[str]:
    """The columns an on-demand function's ``df`` gives its inputs: each feature's name, or
    ``view__feature`` for a name two of its inputs share."""
    counts: dict[str, int] = {}
    for r in inputs:
        counts[r.feature] = counts.get(r.feature, 0) + 1
    return [_column(r, counts, False) for r in inputs]


def _column(ref: _Ref, counts: dict[str, int], full_names: bool) -> str:
    """A result column's name: the feature's, or ``view__feature`` when asked or ambiguous."""
    return f"{ref.view}__{ref.feature}" if full_names or counts[ref.feature] > 1 else ref.feature


def definition_specs(objects: Iterable[Any]) -> list[dict[str, Any]]:
    """The specs of entities and feature views, as a team server takes them to apply.

    On-demand views are code: the server cannot take them from a caller (they are applied
    where the server runs, from a module it imports), and a DataFrame source's rows stay in
    this process: both are refused here, before anything is sent.
    """
    specs: list[dict[str, Any]] = []
    for obj in objects:
        if isinstance(obj, OnDemandView):
            raise InvalidArgumentError(
                f"On-demand view {obj.name!r} is code, which a team server does not take from "
                "a caller.",
                hint="Apply it on the server's host (its module must be importable there); "
                "entities and feature views apply through the server.",
            )
        if isinstance(obj, FeatureView) and not isinstance(obj.source, DatasetSource):
            raise InvalidArgumentError(_REMOTE_SOURCE.format(name=obj.name))
        if not isinstance(obj, Entity | FeatureView):
            raise InvalidArgumentError(
                f"apply takes Entity, FeatureView and on_demand objects; got {obj!r}."
            )
        specs.append(obj.spec())
    return specs


_REMOTE_SOURCE = (
    "Feature view {name!r}: through a team server a view reads a dataset of the project "
    "(DatasetSource); Parquet paths and SQL would be read with the server's own files and "
    "credentials. Add the rows with cv.data.add and use DatasetSource('NAME@latest'), or "
    "apply the view on the server's host."
)


def definitions_from_specs(specs: Sequence[Any]) -> list[Entity | FeatureView]:
    """Rebuild the entities and feature views that :func:`definition_specs` described.

    Only views over a project dataset are taken (see :func:`definition_specs`); every fault
    names the definition, by position and name, and what it should hold.
    """
    objects: list[Entity | FeatureView] = []
    for i, spec in enumerate(specs):
        where = f"definition {i}"
        if not isinstance(spec, dict):
            raise InvalidArgumentError(f"{where}: expected an object, got {type(spec).__name__}.")
        kind, name = spec.get("kind"), spec.get("name")
        if isinstance(name, str):
            where += f" ({name!r})"
        try:
            if kind == "entity":
                keys = spec.get("keys")
                if not isinstance(name, str) or not isinstance(keys, list):
                    raise InvalidArgumentError("an entity needs a name and a list of keys.")
                objects.append(Entity(name, tuple(keys)))
            elif kind == "view":
                source = spec.get("source")
                if not isinstance(source, dict) or source.get("kind") != "dataset":
                    raise InvalidArgumentError(_REMOTE_SOURCE.format(name=name))
                objects.append(_view_from_spec(_checked_view_spec(spec)))
            elif kind == "on_demand":
                raise InvalidArgumentError(
                    "on-demand views are code, applied on the server's host, not through it."
                )
            else:
                raise InvalidArgumentError(
                    f"kind is {kind!r}; expected 'entity' or 'view' (FeatureView.spec())."
                )
        except InvalidArgumentError as e:
            raise InvalidArgumentError(f"{where}: {e.message}", hint=e.hint) from None
    return objects


def _checked_view_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` if it has the shape :meth:`FeatureView.spec` gives, else a clear error."""
    source, ents, feats, ttl = (spec.get(k) for k in ("source", "entities", "features", "ttl_s"))
    assert isinstance(source, dict)
    text = (str, type(None))
    if not (
        isinstance(spec.get("name"), str)
        and isinstance(source.get("ref"), str)
        and isinstance(source.get("timestamp"), str)
        and isinstance(source.get("created_timestamp"), text)
        and isinstance(ents, list)
        and all(
            isinstance(e, dict)
            and isinstance(e.get("name"), str)
            and isinstance(e.get("keys"), list)
            and all(isinstance(k, str) for k in e["keys"])
            for e in ents
        )
        and isinstance(feats, list)
        and all(
            isinstance(f, list) and len(f) == 2 and all(isinstance(x, str) for x in f)
            for f in feats
        )
        and (ttl is None or (isinstance(ttl, int | float) and 0 < ttl < 1e10))
    ):
        raise InvalidArgumentError(
            "a view needs name, source {kind: dataset, ref, timestamp, created_timestamp}, "
            "entities [{name, keys}], features [[name, type]] and ttl_s (seconds or null), "
            "as FeatureView.spec() gives them."
        )
    return spec


def _view_from_spec(spec: dict[str, Any]) -> FeatureView:
    src = spec["source"]
    ts = {"timestamp": src["timestamp"], "created_timestamp": src.get("created_timestamp")}
    if src["kind"] == "parquet":
        source: Any = ParquetSource(src["path"], **ts)
    elif src["kind"] == "dataset":
        source = DatasetSource(src["ref"], **ts)
    elif src["kind"] == "sql":
        source = SqlSource(src["query"], **ts)
    else:
        source = DetachedSource(src, **ts)  # online reads work; reading its rows says why not
    ents = [Entity(e["name"], tuple(e["keys"])) for e in spec["entities"]]
    ttl = timedelta(seconds=spec["ttl_s"]) if spec.get("ttl_s") else None
    return FeatureView(
        name=spec["name"],
        entities=ents,
        source=source,
        features=[Field(n, t) for n, t in spec["features"]],
        ttl=ttl,
    )
