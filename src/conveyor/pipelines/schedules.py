"""Cron schedules for pipelines, and the scheduler that starts the runs that are due.

``cv.schedule(churn, cron="0 3 * * *", params={...})`` stores a schedule; ``conveyor
scheduler run`` (a :class:`Scheduler`) starts the due runs. Two schedulers may run at once
(for availability): the one holding the project's lease in the metadata store starts runs,
and each start also claims the schedule's due time with a compare-and-set, so no due run is
ever started twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.clock import utcnow
from conveyor.core.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from conveyor.pipelines.dsl import Pipeline
from conveyor.store.leases import acquire, new_holder, release
from conveyor.store.metadata.schema import schedules
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace, current_workspace

__all__ = ["Schedule", "Scheduler", "delete_schedule", "list_schedules", "schedule"]

log = logging.getLogger(__name__)

#: How long a scheduler's lease lasts without renewal.
LEASE_TTL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Schedule:
    id: str
    name: str
    pipeline: str
    entrypoint: str
    cron: str
    params: dict[str, Any]
    executor: str
    enabled: bool
    catch_up: int
    next_run_at: datetime
    last_run_at: datetime | None
    last_run_id: str | None
    created_at: datetime
    created_by: str


def _row(row: Any) -> Schedule:
    return Schedule(
        id=row.id,
        name=row.name,
        pipeline=row.pipeline,
        entrypoint=row.entrypoint,
        cron=row.cron,
        params=dict(row.params or {}),
        executor=row.executor,
        enabled=bool(row.enabled),
        catch_up=int(row.catch_up),
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
        last_run_id=row.last_run_id,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _check_cron(cron: str) -> str:
    from croniter import croniter

    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise InvalidArgumentError(
            f"{cron!r} is not a cron expression.",
            hint="Five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *' "
            "(03:00 every day) or '*/15 * * * *' (every 15 minutes); times are UTC.",
        )
    return cron


def next_fire(cron: str, after: datetime) -> datetime:
    """The first time ``cron`` fires strictly after ``after`` (UTC)."""
    from croniter import croniter

    found = croniter(cron, after).get_next(datetime)
    assert isinstance(found, datetime)
    return found


def fires_between(cron: str, start: datetime, end: datetime, limit: int = 1000) -> int:
    """How many times ``cron`` fires in [start, end] (at most ``limit``)."""
    from croniter import croniter

    it = croniter(cron, start - timedelta(microseconds=1))
    count = 0
    while count < limit:
        t = it.get_next(datetime)
        if t > end:
            break
        count += 1
    return count


def schedule(
    pipeline: Pipeline | str,
    *,
    cron: str,
    params: dict[str, Any] | None = None,
    name: str | None = None,
    executor: str = "local",
    catch_up: int = 1,
    replace: bool = False,
    workspace: Workspace | None = None,
) -> Schedule:
    """Store a schedule that runs ``pipeline`` with ``params`` at the times ``cron`` names (UTC).

    ``pipeline`` is a pipeline object or a reference (``module:pipeline``). After a
    scheduler was down, at most ``catch_up`` missed runs are started (0: none, only the
    next due time). ``replace=True`` overwrites a schedule of the same name.
    """
    from conveyor.pipelines.loader import load_pipeline

    ws = workspace or current_workspace()
    target = load_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    if not isinstance(target, Pipeline):
        raise InvalidArgumentError(f"schedule takes a pipeline; got {pipeline!r}.")
    bound = target.bind(params or {})
    _check_cron(cron)
    if target.entrypoint.startswith("__main__:"):
        raise InvalidArgumentError(
            f"Pipeline {target.name!r} is defined in a notebook or `python -c`, where a "
            "scheduler cannot import it from.",
            hint="Move it into a module or a .py file, and schedule that "
            "(cv.schedule('pipelines.churn:train', ...)).",
        )
    if not isinstance(catch_up, int) or catch_up < 0:
        raise InvalidArgumentError(f"catch_up must be a whole number >= 0; got {catch_up!r}.")
    if executor != "inline" and not executor.startswith(("local", "ray")):
        raise InvalidArgumentError(
            f"Unknown executor {executor!r}; use 'local', 'inline', 'ray' or 'ray://host:port'."
        )
    schedule_name = name or target.name
    project_id = ws.project.id
    now = utcnow()
    row = {
        "id": ids.new_id(),
        "project_id": project_id,
        "name": schedule_name,
        "pipeline": target.name,
        "entrypoint": target.entrypoint,
        "cron": cron,
        "params": bound,
        "executor": executor,
        "enabled": True,
        "catch_up": catch_up,
        "next_run_at": next_fire(cron, now),
        "last_run_at": None,
        "last_run_id": None,
        "created_at": now,
        "created_by": ws.settings.actor,
    }
    with ws.metadata.transaction(project_id=project_id) as uow:
        where = (schedules.c.project_id == project_id) & (schedules.c.name == schedule_name)
        existing = uow.conn.execute(sa.select(schedules.c.id).where(where)).scalar()
        if existing is not None:
            if not replace:
                raise AlreadyExistsError(
                    f"There is already a schedule called {schedule_name!r}.",
                    hint="Pass replace=True (--replace) to overwrite it, or another name.",
                )
            uow.conn.execute(schedules.delete().where(schedules.c.id == existing))
        uow.conn.execute(schedules.insert(), [row])
        uow.audit(
            "schedule.create",
            ObjectRef("schedule", str(row["id"])),
            after={"name": schedule_name, "cron": cron, "pipeline": target.name},
        )
    return get_schedule(schedule_name, workspace=ws)


def get_schedule(name: str, *, workspace: Workspace | None = None) -> Schedule:
    ws = workspace or current_workspace()
    with ws.metadata.read() as conn:
        row = conn.execute(
            sa.select(schedules).where(
                schedules.c.project_id == ws.project.id, schedules.c.name == name
            )
        ).first()
    if row is None:
        raise NotFoundError(
            f"No schedule called {name!r}.", hint="List them with: conveyor schedule list"
        )
    return _row(row)


def list_schedules(*, workspace: Workspace | None = None) -> list[Schedule]:
    """Return the project's schedules, by name."""
    ws = workspace or current_workspace()
    if ws.remote is not None:
        from conveyor.pipelines import remote

        return remote.list_schedules(ws)
    with ws.metadata.read() as conn:
        rows = conn.execute(
            sa.select(schedules)
            .where(schedules.c.project_id == ws.project.id)
            .order_by(schedules.c.name)
        ).all()
    return [_row(r) for r in rows]


def delete_schedule(name: str, *, workspace: Workspace | None = None) -> Schedule:
    """Delete the schedule ``name`` (runs it started are kept)."""
    ws = workspace or current_workspace()
    found = get_schedule(name, workspace=ws)
    with ws.metadata.transaction(project_id=ws.project.id) as uow:
        uow.conn.execute(schedules.delete().where(schedules.c.id == found.id))
        uow.audit("schedule.delete", ObjectRef("schedule", found.id), before={"name": name})
    return found


class Scheduler:
    """Starts the pipeline runs that are due, while it holds the project's lease."""

    def __init__(
        self,
        workspace: Workspace | None = None,
        *,
        holder: str | None = None,
        lease_ttl: timedelta = LEASE_TTL,
        on_start: Any = None,
    ) -> None:
        self.ws = workspace or current_workspace()
        self.holder = holder or new_holder()
        self.lease_ttl = lease_ttl
        self.on_start = on_start
        self.lease_name = f"scheduler:{self.ws.project.id}"
        #: Why due runs could not start in the last tick (schedule name -> error).
        self.errors: dict[str, str] = {}

    def acquire_lease(self, now: datetime | None = None) -> bool:
        """Take or renew the lease; True while this scheduler holds it."""
        return acquire(self.ws, self.lease_name, self.holder, self.lease_ttl, now)

    def release_lease(self) -> None:
        release(self.ws, self.lease_name, self.holder)

    def _claim(self, found: Schedule, now: datetime) -> int:
        """Move ``found``'s next due time past ``now`` if no one else did; return how many
        runs to start (0 when another scheduler claimed it)."""
        missed = fires_between(found.cron, found.next_run_at, now)
        with self.ws.metadata.transaction(project_id=self.ws.project.id) as uow:
            claimed = uow.conn.execute(
                schedules.update()
                .where(
                    schedules.c.id == found.id,
                    schedules.c.next_run_at == found.next_run_at,
                )
                .values(next_run_at=next_fire(found.cron, now), last_run_at=now)
            )
        if claimed.rowcount != 1:
            return 0
        # The due time itself is one run; each fire missed beyond it is a catch-up.
        return 1 + min(max(missed - 1, 0), found.catch_up) if found.catch_up else 1

    def tick(self, now: datetime | None = None) -> list[Any]:
        """Start every due run (if this scheduler holds the lease); return the runs started.

        A schedule whose pipeline cannot be imported is left due (its error is in
        :attr:`errors` and the log), so it starts once the module is fixed.
        """
        from conveyor.pipelines.engine import PipelineFailed
        from conveyor.pipelines.loader import load_pipeline

        now = now or utcnow()
        self.errors = {}
        if not self.acquire_lease(now):
            return []
        started = []
        for found in list_schedules(workspace=self.ws):
            if not found.enabled or found.next_run_at > now:
                continue
            try:
                pipeline = load_pipeline(found.entrypoint)
            except Exception as e:  # noqa: BLE001 - one bad schedule must not stop the others
                self.errors[found.name] = str(e)
                log.error("conveyor: schedule %s cannot start: %s", found.name, e)
                continue
            if not self.acquire_lease(utcnow()):  # renewed before each start; lost: stop
                break
            for _ in range(self._claim(found, now)):
                if self.on_start is not None:
                    self.on_start(found)
                try:
                    run = pipeline.run(executor=found.executor, workspace=self.ws, **found.params)
                except PipelineFailed as e:
                    run = e.run
                except Exception as e:  # noqa: BLE001 - recorded; the other schedules go on
                    self.errors[found.name] = str(e)
                    log.error("conveyor: schedule %s failed to run: %s", found.name, e)
                    continue
                started.append(run)
                with self.ws.metadata.transaction(project_id=self.ws.project.id) as uow:
                    uow.conn.execute(
                        schedules.update()
                        .where(schedules.c.id == found.id)
                        .values(last_run_id=run.id)
                    )
        started += self._monitors(now)
        return started

    def _monitors(self, now: datetime) -> list[Any]:
        """Run the scheduled monitors that are due (monitoring shares this scheduler)."""
        from conveyor.monitoring.service import monitoring_service

        try:
            return monitoring_service(self.ws).run_due(now)
        except Exception as e:  # noqa: BLE001 - recorded; pipelines keep their schedule
            self.errors["monitors"] = str(e)
            log.error("conveyor: scheduled monitors failed: %s", e)
            return []

    def run_forever(self, *, poll: float = 10.0, stop: Any = None) -> None:
        """Tick every ``poll`` seconds until ``stop()`` is true (or Ctrl-C)."""
        try:
            while stop is None or not stop():
                self.tick()
                time.sleep(poll)
        finally:
            self.release_lease()
