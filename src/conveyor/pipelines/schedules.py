"""Cron schedules for pipelines, and the scheduler that starts the runs that are due.

``cv.schedule(churn, cron="0 3 * * *", params={...})`` stores a schedule; ``conveyor
scheduler run`` (a :class:`Scheduler`) starts the due runs, each in a process of its own
(:meth:`Scheduler.dispatch`), so that a long run holds up no other. Two schedulers may run
at once (for availability): the one holding the project's lease in the metadata store
starts runs, and each start also claims the schedule's due time with a compare-and-set, so
no due run is ever started twice.

A schedule made through a team server has an owner, the user who made it: its runs act as
that user, with the role they hold when the run is due (a disabled user's schedule, or one
whose owner is no longer an editor, starts nothing). Each goes in a process of its own, as
a run the server starts for a caller does (:mod:`conveyor.pipelines.launch`).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.clock import utcnow
from conveyor.core.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from conveyor.core.processes import alive as process_alive
from conveyor.pipelines.dsl import Pipeline
from conveyor.store.leases import acquire, new_holder, release
from conveyor.store.metadata.schema import schedules
from conveyor.store.principal import Principal
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace, current_workspace

__all__ = [
    "Schedule",
    "Scheduler",
    "check_cron",
    "delete_schedule",
    "get_schedule",
    "list_schedules",
    "schedule",
    "store_schedule",
]

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
    #: The user the schedule's runs act as (made through a team server), or None (the host's).
    owner_id: str | None = None


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
        owner_id=row.owner_id,
    )


def check_cron(cron: str) -> str:
    """Refuse what is not a five-field cron expression (or a macro such as ``@daily``) that
    fires at some time."""
    from croniter import croniter

    hint = (
        "Five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *' "
        "(03:00 every day) or '*/15 * * * *' (every 15 minutes); times are UTC."
    )
    fields = len(cron.split()) if isinstance(cron, str) else 0
    if not (fields == 5 or (fields == 1 and cron.startswith("@"))) or not croniter.is_valid(cron):
        raise InvalidArgumentError(f"{cron!r} is not a cron expression.", hint=hint)
    try:
        next_fire(cron, utcnow())
    except ValueError:  # croniter's: valid, but no such date (the 31st of February)
        raise InvalidArgumentError(f"{cron!r} never fires.", hint=hint) from None
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
    if target.entrypoint.startswith("__main__:"):
        raise InvalidArgumentError(
            f"Pipeline {target.name!r} is defined in a notebook or `python -c`, where a "
            "scheduler cannot import it from.",
            hint="Move it into a module or a .py file, and schedule that "
            "(cv.schedule('pipelines.churn:train', ...)).",
        )
    if ws.remote is not None:
        from conveyor.pipelines import remote

        return remote.create_schedule(
            ws,
            target,
            params or {},
            cron=check_cron(cron),
            name=name,
            executor=executor,
            catch_up=catch_up,
            replace=replace,
        )
    return store_schedule(
        ws,
        name=name or target.name,
        pipeline=target.name,
        entrypoint=target.entrypoint,
        params=bound,
        cron=cron,
        executor=executor,
        catch_up=catch_up,
        replace=replace,
    )


def store_schedule(
    ws: Workspace,
    *,
    name: str,
    pipeline: str,
    entrypoint: str,
    params: dict[str, Any],
    cron: str,
    executor: str,
    catch_up: int,
    replace: bool,
) -> Schedule:
    """Store a schedule of the pipeline at ``entrypoint`` with its bound ``params``. Made by
    a principal (through a team server), the schedule is theirs: its runs act as them."""
    from conveyor.store.principal import current_principal

    check_cron(cron)
    if not isinstance(catch_up, int) or catch_up < 0:
        raise InvalidArgumentError(f"catch_up must be a whole number >= 0; got {catch_up!r}.")
    if executor != "inline" and not executor.startswith(("local", "ray")):
        raise InvalidArgumentError(
            f"Unknown executor {executor!r}; use 'local', 'inline', 'ray' or 'ray://host:port'."
        )
    principal = current_principal()
    project_id = ws.project.id
    now = utcnow()
    row = {
        "id": ids.new_id(),
        "project_id": project_id,
        "name": name,
        "pipeline": pipeline,
        "entrypoint": entrypoint,
        "cron": cron,
        "params": params,
        "executor": executor,
        "enabled": True,
        "catch_up": catch_up,
        "next_run_at": next_fire(cron, now),
        "last_run_at": None,
        "last_run_id": None,
        "created_at": now,
        "owner_id": principal.user_id if principal is not None else None,
    }
    with ws.metadata.transaction(project_id=project_id) as uow:
        where = (schedules.c.project_id == project_id) & (schedules.c.name == name)
        existing = uow.conn.execute(sa.select(schedules.c.id).where(where)).scalar()
        if existing is not None:
            if not replace:
                raise AlreadyExistsError(
                    f"There is already a schedule called {name!r}.",
                    hint="Pass replace=True (--replace) to overwrite it, or another name.",
                )
            uow.conn.execute(schedules.delete().where(schedules.c.id == existing))
        uow.conn.execute(schedules.insert(), [{**row, "created_by": uow.actor}])
        uow.audit(
            "schedule.create",
            ObjectRef("schedule", str(row["id"])),
            after={"name": name, "cron": cron, "pipeline": pipeline},
        )
    return get_schedule(name, workspace=ws)


def get_schedule(name: str, *, workspace: Workspace | None = None) -> Schedule:
    ws = workspace or current_workspace()
    if ws.remote is not None:
        for found in list_schedules(workspace=ws):
            if found.name == name:
                return found
        raise NotFoundError(
            f"No schedule called {name!r}.", hint="List them with: conveyor schedule list"
        )
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
    if ws.remote is not None:
        from conveyor.pipelines import remote

        return remote.delete_schedule(ws, name)
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
        on_end: Any = None,
        on_error: Any = None,
        max_runs: int = 4,
    ) -> None:
        self.ws = workspace or current_workspace()
        self.holder = holder or new_holder()
        self.lease_ttl = lease_ttl
        self.on_start = on_start
        #: Called with (schedule, run or None) when a run :meth:`dispatch` started ends.
        self.on_end = on_end
        #: Called with (schedule name or "monitors", message) when due work cannot start;
        #: without it, the message is logged as an error.
        self.on_error = on_error
        self.lease_name = f"scheduler:{self.ws.project.id}"
        #: Why due runs could not start in the last tick (schedule name -> error).
        self.errors: dict[str, str] = {}
        if max_runs < 1:
            raise InvalidArgumentError(f"max_runs must be at least 1; got {max_runs}.")
        #: How many runs :meth:`dispatch` lets go at once.
        self.max_runs = max_runs
        self._running: dict[str, _Launched] = {}  # schedule id -> its run going now
        self._backlog: list[_Waiting] = []  # catch-ups claimed, not started yet
        self._failures: dict[str, int] = {}  # schedule id -> runs in a row that did not start
        self._held: dict[str, float] = {}  # schedule id -> left alone until (monotonic)
        #: Seconds between checks (run_forever's ``poll``): the first wait after a failure.
        self.poll = 10.0

    def _error(self, name: str, message: str) -> None:
        """Keep why ``name``'s due work did not start in :attr:`errors`, and report it once."""
        self.errors[name] = message
        if self.on_error is not None:
            self.on_error(name, message)
        else:
            log.error("conveyor: %s", message)

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

    def _due(
        self, now: datetime, skip: Collection[str] = (), room: Callable[[], bool] | None = None
    ) -> Iterator[tuple[Schedule, Any]]:
        """The enabled schedules due at ``now`` (but those in ``skip``), the longest due
        first, each with what starts its runs: the pipeline (no owner) or ``(owner,
        acting_as)``. One that cannot start is left due, its error in :attr:`errors` and
        the log. Stops once ``room()`` is false (checked before each is prepared)."""
        from conveyor.pipelines.loader import load_pipeline

        due = [
            s
            for s in list_schedules(workspace=self.ws)
            if s.enabled and s.next_run_at <= now and s.id not in skip
        ]
        for found in sorted(due, key=lambda s: (s.next_run_at, s.name)):
            if room is not None and not room():
                return
            try:
                if found.owner_id is None:
                    how: Any = load_pipeline(found.entrypoint, root=self.ws.settings.root)
                else:  # its runs go in processes of their own, acting as its owner
                    how = self._owner(found)
            except Exception as e:  # noqa: BLE001 - one bad schedule must not stop the others
                self._error(found.name, f"Schedule {found.name!r} cannot start: {e}")
                self._hold(found)  # tried again later, less often each time (not every poll)
                continue
            yield found, how

    def tick(self, now: datetime | None = None) -> list[Any]:
        """Start every due run (if this scheduler holds the lease), wait for each, and return
        the runs (and the results of the scheduled monitors that were due).

        A schedule whose pipeline cannot be imported is left due (its error is in
        :attr:`errors` and the log), so it starts once the module is fixed. Runs of
        schedules without an owner run in this process, one after the other;
        :meth:`dispatch` starts them side by side instead.
        """
        from conveyor.pipelines.engine import PipelineFailed

        now = now or utcnow()
        self.errors = {}
        if not self.acquire_lease(now):
            return []
        started = []
        held = {sid for sid, until in self._held.items() if until > time.monotonic()}
        for found, how in self._due(now, skip={*self._going(), *held}):  # one run at a time
            if not self.acquire_lease(utcnow()):  # renewed before each start; lost: stop
                break
            for _ in range(self._claim(found, now)):
                if self.on_start is not None:
                    self.on_start(found)
                try:
                    if found.owner_id is None:
                        params = found.params
                        run = how.run(executor=found.executor, workspace=self.ws, **params)
                    else:
                        run = self._run_as_owner(found, *how)
                except PipelineFailed as e:
                    run = e.run
                except Exception as e:  # noqa: BLE001 - recorded; the other schedules go on
                    self._error(found.name, f"Schedule {found.name!r} failed to run: {e}")
                    continue
                self._failures.pop(found.id, None)  # it started: the back-off starts over
                started.append(run)
                self._record_last_run(found, run.id)
        started += self._monitors(now)
        return started

    def dispatch(self, now: datetime | None = None) -> list[str]:
        """Start every due run in a process of its own and return at once: the ids of the
        runs started (the scheduled monitors that are due run here, before it returns).

        What :meth:`run_forever` calls: a long run no longer holds up the others, nor the
        monitors, nor the lease's renewal. A schedule's runs go one at a time, whichever
        scheduler started the one going (see :meth:`_going`): a due time that comes
        meanwhile waits, and counts as missed once the run ends, so ``catch_up`` applies.
        At most :attr:`max_runs` go at once; the schedules due beyond that wait for a free
        slot, the longest due first. Each call first records the runs that ended. A run
        that could not start (or whose process ended before recording it) gives its due
        time back, or its catch-up waits again, and the schedule is left alone for a while
        that doubles with each failure in a row (from ``poll`` seconds to 10 minutes); its
        error is in :attr:`errors`. Output goes to ``.conveyor/launches/RUN_ID.log``;
        stopping the scheduler does not stop the runs.
        """
        now = now or utcnow()
        self.errors = {}
        self._reap()
        if not self.acquire_lease(now):
            return []  # the catch-ups claimed wait in the backlog for the lease
        started: list[str] = []
        going = self._going()
        held = {sid for sid, until in self._held.items() if until > time.monotonic()}
        waiting, self._backlog = self._backlog, []
        for item in waiting:  # catch-ups claimed earlier, once their schedule is free
            current = self._current(item.schedule.id)
            if current is None or not current.enabled:
                log.warning(
                    "conveyor: dropping %d catch-up run(s) of a schedule deleted or "
                    "disabled meanwhile (%s)",
                    item.count,
                    item.schedule.name,
                )
                continue
            busy = current.id in going or current.id in self._running or current.id in held
            if busy or len(self._running) >= self.max_runs:
                self._backlog.append(item)
                continue
            run_id = self._launch(current, item.how, item.count, claimed_at=None)
            if run_id is not None:
                started.append(run_id)
        skip = {*self._running, *(item.schedule.id for item in self._backlog), *going, *held}
        room = lambda: len(self._running) < self.max_runs  # noqa: E731
        for found, how in self._due(now, skip=skip, room=room):
            if not self.acquire_lease(utcnow()):
                break  # the others stay due
            count = self._claim(found, now)
            if count:
                run_id = self._launch(found, how, count, claimed_at=now)
                if run_id is not None:
                    started.append(run_id)
        self._monitors(now)
        return started

    @property
    def running(self) -> dict[str, str]:
        """The runs :meth:`dispatch` started that have not ended: schedule name -> run id."""
        return {item.schedule.name: item.run_id for item in self._running.values()}

    def _current(self, schedule_id: str) -> Schedule | None:
        with self.ws.metadata.read() as conn:
            row = conn.execute(sa.select(schedules).where(schedules.c.id == schedule_id)).first()
        return _row(row) if row is not None else None

    def _going(self) -> set[str]:
        """The schedules whose last run has not ended and is still going, which another
        scheduler, or this one before a restart, may have started: its coordinator's
        process is alive (on this host), or it beat lately (on another host). A run named
        by its schedule but not recorded yet (its process starting) counts as going for
        as long as a heartbeat would (its id tells when it was made)."""
        from conveyor.pipelines.service import STALE_AFTER
        from conveyor.store.metadata.schema import pipeline_runs

        with self.ws.metadata.read() as conn:
            rows = conn.execute(
                sa.select(
                    schedules.c.id,
                    schedules.c.last_run_id,
                    pipeline_runs.c.id.label("run_id"),
                    pipeline_runs.c.coordinator,
                    pipeline_runs.c.heartbeat_at,
                )
                .outerjoin(pipeline_runs, pipeline_runs.c.id == schedules.c.last_run_id)
                .where(
                    schedules.c.project_id == self.ws.project.id,
                    schedules.c.last_run_id.is_not(None),
                    pipeline_runs.c.ended_at.is_(None),
                )
            ).all()
        fresh = utcnow() - STALE_AFTER
        here = socket.gethostname()
        going = set()
        for row in rows:
            if row.run_id is None:  # named at its start, not recorded (yet, or ever)
                if _started_since(row.last_run_id, fresh):
                    going.add(row.id)
                continue
            host, _, pid = row.coordinator.rpartition(":")
            if host == here and pid.isdigit():
                alive = process_alive(int(pid))
            else:
                alive = row.heartbeat_at is not None and row.heartbeat_at >= fresh
            if alive:
                going.add(row.id)
        return going

    def _launch(
        self, found: Schedule, how: Any, count: int, *, claimed_at: datetime | None
    ) -> str | None:
        """Start one run of ``found`` in a process of its own, ``count - 1`` more to follow
        it one after the other; return its id. ``claimed_at``: when its due time was
        claimed (None for a catch-up). On failure, None (see :meth:`_failed`)."""
        try:
            if self.on_start is not None:
                self.on_start(found)
            run_id, proc = self._start(found, how)
        except Exception as e:  # noqa: BLE001 - one schedule must not stop the others
            error = f"Schedule {found.name!r} could not start a run: {e}"
            self._failed(found, how, count, claimed_at, error)
            return None
        self._running[found.id] = _Launched(found, how, run_id, proc, count, claimed_at)
        try:
            self._record_last_run(found, run_id)  # the schedule names its run while it goes
        except Exception as e:  # noqa: BLE001 - the run goes on; recorded when it ends
            log.error("conveyor: naming the run of schedule %s: %s", found.name, e)
        return run_id

    def _failed(
        self, found: Schedule, how: Any, count: int, claimed_at: datetime | None, error: str
    ) -> None:
        """A run of ``found`` could not start: give its due time back (or queue its
        catch-up again), and leave the schedule alone for a while, longer each time."""
        self._error(found.name, error)
        self._hold(found)
        if claimed_at is not None:
            self._unclaim(found, claimed_at)  # due again; its catch-ups are counted anew
        else:
            self._backlog.insert(0, _Waiting(found, how, count))

    def _hold(self, found: Schedule) -> None:
        """Leave ``found`` alone for a while after it could not start: one poll, then twice
        as long each time in a row, at most 10 minutes."""
        failures = self._failures.get(found.id, 0) + 1
        self._failures[found.id] = failures
        self._held[found.id] = time.monotonic() + min(self.poll * 2 ** (failures - 1), 600.0)

    def _start(self, found: Schedule, how: Any) -> tuple[str, subprocess.Popen[bytes]]:
        """Start a run of ``found`` in a process of its own (acting as its owner, if it has
        one: ``how`` is then ``(owner, acting_as)``); return the run's id and the process.

        A run of a schedule without an owner imports its pipeline from this process's
        working folder, as the scheduler did; an owner's, from the project's root (the
        server's host). Either way it opens this workspace's stores (the settings travel
        with the job, not in the environment its steps inherit).
        """
        from pathlib import Path

        from conveyor.core.config import Settings
        from conveyor.pipelines import launch

        settings = self.ws.settings
        run_id = ids.new_id()
        job: dict[str, Any] = {
            "run_id": run_id,
            "reference": found.entrypoint,
            "executor": found.executor,
            "params": found.params,
            "cache": True,
            "root": str(settings.root),
            "settings": {k: getattr(settings, k) for k in Settings.settable_keys()},
        }
        if found.owner_id is None:
            actor, acting_as, cwd = settings.actor, None, Path.cwd()
        else:
            owner, acting_as = how
            actor, cwd = owner.name, settings.root
        job["settings"]["actor"] = actor  # whom the run's audit events name
        proc = launch.start(
            settings.root,
            project=self.ws.project.name,
            actor=actor,
            acting_as=acting_as,
            job=job,
            cwd=cwd,
        )
        return run_id, proc

    def _ended(self, found: Schedule, run_id: str, pid: int, status: int) -> Any:
        """The run that the process ``pid`` recorded, now that it ended with ``status`` (one
        left unfinished is marked KILLED). Raise InvalidArgumentError saying why when the
        process recorded no run."""
        from conveyor.pipelines import launch
        from conveyor.pipelines.store import PipelineStore

        store = PipelineStore(self.ws)
        launch.settle(store, run_id, pid, status)
        try:
            return store.get_run(run_id)
        except NotFoundError:  # it stopped before recording the run: say why
            reason = launch.last_words(self.ws.settings.root, run_id).removeprefix("error: ")
            raise InvalidArgumentError(
                f"Schedule {found.name!r} did not start its run: "
                f"{reason or f'exit status {status}'}"
            ) from None

    def _reap(self) -> None:
        """Record the runs started by :meth:`dispatch` that have ended, and queue the
        catch-up runs claimed with them. A run that could not be recorded (the store away)
        is tried again on the next call."""
        for key, item in list(self._running.items()):
            status = item.proc.poll()
            if status is None:
                continue
            found = item.schedule
            run: Any = None
            try:
                try:
                    run = self._ended(found, item.run_id, item.proc.pid, status)
                except InvalidArgumentError as e:  # no run recorded: as if it never started
                    self._record_last_run(found, found.last_run_id)
                    self._failed(found, item.how, item.count, item.claimed_at, str(e))
                else:
                    self._record_last_run(found, run.id)
                    self._failures.pop(found.id, None)
                    if item.count > 1:
                        self._backlog.append(_Waiting(found, item.how, item.count - 1))
            except Exception as e:  # noqa: BLE001 - the store away: the next call tries again
                log.error("conveyor: recording the run of schedule %s: %s", found.name, e)
                continue
            del self._running[key]
            if self.on_end is not None:
                try:
                    self.on_end(found, run)
                except Exception as e:  # noqa: BLE001 - a callback must not stop the scheduler
                    log.error("conveyor: on_end for schedule %s failed: %s", found.name, e)

    def _unclaim(self, found: Schedule, claimed_at: datetime) -> None:
        """Give back the due time :meth:`_claim` took at ``claimed_at`` (if no one moved it
        since): the schedule is due again."""
        with self.ws.metadata.transaction(project_id=self.ws.project.id) as uow:
            uow.conn.execute(
                schedules.update()
                .where(
                    schedules.c.id == found.id,
                    schedules.c.next_run_at == next_fire(found.cron, claimed_at),
                )
                .values(next_run_at=found.next_run_at, last_run_at=found.last_run_at)
            )

    def _record_last_run(self, found: Schedule, run_id: str | None) -> None:
        with self.ws.metadata.transaction(project_id=self.ws.project.id) as uow:
            uow.conn.execute(
                schedules.update().where(schedules.c.id == found.id).values(last_run_id=run_id)
            )

    def _owner(self, found: Schedule) -> tuple[Principal, str]:
        """The principal ``found``'s runs act as (its owner with the role they hold now, in
        this project alone) and the ``ACTING_ENV`` value that makes a process act as them.
        Refused when they may no longer write here, or when the pipeline does not import
        and bind its params as them (checked in a process of its own)."""
        from conveyor.core.errors import PermissionDeniedError
        from conveyor.pipelines import launch
        from conveyor.store.identity import IdentityStore
        from conveyor.store.principal import acting_env

        assert found.owner_id is not None
        project_id = self.ws.project.id
        hint = (
            "A project editor can make it again (conveyor schedule create ... --replace), "
            f"or delete it: conveyor schedule delete {found.name}"
        )
        try:
            owner = IdentityStore(self.ws.metadata).principal_for(found.owner_id, project_id)
        except PermissionDeniedError as e:
            raise PermissionDeniedError(
                f"Schedule {found.name!r} runs as the user who made it, and {e.message[:-1]}: "
                "it starts nothing.",
                hint=hint,
            ) from None
        if not owner.can(project_id, "editor"):
            raise PermissionDeniedError(
                f"Schedule {found.name!r} runs as {owner.name!r}, who no longer holds the "
                "editor role in this project: it starts nothing.",
                hint=hint,
            )
        # What a server would have refused (a row stored some other way).
        what = f"Schedule {found.name!r}'s"
        launch.check_reference(found.entrypoint, what=f"{what} pipeline")
        launch.check_executor(found.executor, what=f"{what} executor", launch=True)
        acting_as = acting_env(owner, source=f"schedule {found.name}")
        launch.describe(self.ws.settings.root, found.entrypoint, found.params, acting_as=acting_as)
        return owner, acting_as

    def _run_as_owner(self, found: Schedule, owner: Principal, acting_as: str) -> Any:
        """Run ``found`` in a process of its own acting as ``owner``; wait for it to end."""
        run_id, proc = self._start(found, (owner, acting_as))
        # Failed or not, the tick records it as the schedule's last run.
        return self._ended(found, run_id, proc.pid, proc.wait())

    def _monitors(self, now: datetime) -> list[Any]:
        """Run the scheduled monitors that are due (monitoring shares this scheduler)."""
        from conveyor.monitoring.service import monitoring_service

        def failed(name: str, error: Exception) -> None:
            self._error(f"monitor {name}", f"Scheduled monitor {name!r} failed: {error}")

        try:
            return monitoring_service(self.ws).run_due(now, on_error=failed)
        except Exception as e:  # noqa: BLE001 - recorded; pipelines keep their schedule
            self._error("monitors", f"The scheduled monitors failed: {e}")
            return []

    def run_forever(self, *, poll: float = 10.0, stop: Any = None) -> None:
        """Start due runs (:meth:`dispatch`) every ``poll`` seconds until ``stop()`` is true
        (or Ctrl-C). An error (the store away) is logged and the next check goes on. The
        runs it started keep going after it stops."""
        self.poll = poll
        try:
            while stop is None or not stop():
                try:
                    self.dispatch()
                except Exception as e:  # noqa: BLE001 - the next check tries again
                    log.error("conveyor: scheduler check failed: %s", e)
                time.sleep(poll)
        finally:
            self.release_lease()


@dataclass(slots=True)
class _Launched:
    """A run :meth:`Scheduler.dispatch` started, and how many it stands for."""

    schedule: Schedule  # as it was when started (before the claim, for a due run)
    how: Any
    run_id: str
    proc: subprocess.Popen[bytes]
    count: int  # this run and the catch-ups to follow it
    claimed_at: datetime | None  # when its due time was claimed (None: a catch-up)


@dataclass(slots=True)
class _Waiting:
    """Catch-up runs claimed and not started yet (their schedule's run goes on)."""

    schedule: Schedule
    how: Any
    count: int


def _started_since(run_id: str, since: datetime) -> bool:
    """Whether the run ``run_id`` was started (its id made) at ``since`` or later."""
    try:
        made = ids.made_at_ms(run_id)
    except ValueError:  # not an id this version makes: nothing to wait for
        return False
    return made >= since.timestamp() * 1000
