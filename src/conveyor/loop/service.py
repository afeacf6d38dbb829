"""Policies, their executions and events, in the metadata store.

An execution moves through ``triggered -> training -> gating -> awaiting_approval ->
rolling_out -> promoted`` (or ends ``rejected``, ``rolled_back`` or ``failed``); every change
is written with the reason in one transaction, so a controller that dies anywhere picks up
from the last recorded state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.errors import ConflictError, InvalidArgumentError, NotFoundError
from conveyor.loop.policy import Policy, Schedule, trigger_kind
from conveyor.store.metadata.schema import loop_events, loop_executions, loop_policies
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace, current_workspace

__all__ = ["ACTIVE", "FINAL", "Execution", "LoopService", "StaleExecution", "loop_service"]

POLICY_KIND = "loop_policy"
EXECUTION_KIND = "loop_execution"
ACTIVE = ("triggered", "training", "gating", "awaiting_approval", "rolling_out")
FINAL = ("promoted", "rejected", "rolled_back", "failed")
_list = list


class StaleExecution(ConflictError):
    """An execution moved on since it was read (another controller acted first)."""


def loop_service(ws: Workspace | None = None) -> LoopService:
    ws = ws or current_workspace()
    if ws.remote is not None:
        from conveyor.loop.remote import RemoteLoopService

        return ws.service("loop", RemoteLoopService)
    return ws.service("loop", LoopService)


@dataclass(frozen=True, slots=True)
class Execution:
    """One run of a policy, from its trigger to its end."""

    id: str
    policy: str
    trigger_key: str
    trigger: dict[str, Any]
    state: str
    step: int
    version: int
    spec: dict[str, Any]
    pipeline_run_id: str | None
    previous_run_id: str | None
    candidate: str | None
    champion: str | None
    request_id: str | None
    revision: int | None
    gate: dict[str, Any] | None
    reason: str
    state_at: datetime
    created_at: datetime
    ended_at: datetime | None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "policy": self.policy,
            "trigger": self.trigger,
            "state": self.state,
            "step": self.step,
            "version": self.version,
            "pipeline_run_id": self.pipeline_run_id,
            "candidate": self.candidate,
            "champion": self.champion,
            "request_id": self.request_id,
            "revision": self.revision,
            "gate": self.gate,
            "reason": self.reason,
            "state_at": self.state_at.isoformat(),
            "created_at": self.created_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
        }


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class LoopService:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    @property
    def project_id(self) -> str:
        return str(self.ws.project.id)

    # -- policies --------------------------------------------------------------------------

    def apply(self, policy: Policy) -> dict[str, Any]:
        """Create policy ``policy.name`` or replace its spec (an execution in flight keeps the
        spec it started with)."""
        from conveyor.loop.triggers import initial_cursors

        if not isinstance(policy, Policy):
            raise InvalidArgumentError(f"apply() takes a Policy; got {type(policy).__name__}.")
        self._check_references(policy)
        spec = policy.to_dict()
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            row = uow.conn.execute(
                sa.select(loop_policies).where(
                    loop_policies.c.project_id == self.project_id,
                    loop_policies.c.name == policy.name,
                )
            ).first()
            cursors = initial_cursors(self.ws, policy, uow.now, row.cursors if row else None)
            if row is None:
                policy_id = ids.new_id()
                uow.conn.execute(
                    loop_policies.insert(),
                    [
                        {
                            "id": policy_id,
                            "project_id": self.project_id,
                            "name": policy.name,
                            "deployment": policy.deployment,
                            "spec": spec,
                            "cursors": cursors,
                            "paused": False,
                            "created_at": uow.now,
                            "updated_at": uow.now,
                            "created_by": uow.actor,
                        }
                    ],
                )
                action = "loop.policy.create"
            else:
                policy_id = row.id
                uow.conn.execute(
                    loop_policies.update()
                    .where(loop_policies.c.id == policy_id)
                    .values(
                        spec=spec, deployment=policy.deployment, cursors=cursors, updated_at=uow.now
                    )
                )
                action = "loop.policy.update"
            uow.audit(action, ObjectRef(POLICY_KIND, policy_id), after=spec)
            self._event(uow, policy_id, None, "applied", f"policy {policy.name} applied", {})
        return self.get(policy.name)

    def _check_references(self, policy: Policy) -> None:
        """Fail at apply, not at 3 a.m.: the deployment, monitors and datasets must exist and
        the pipeline must import."""
        from conveyor.data.service import data_service
        from conveyor.monitoring.service import monitoring_service
        from conveyor.pipelines.loader import load_pipeline
        from conveyor.serving.deployment import deployment_service

        deployments = deployment_service(self.ws)
        deployments.get(policy.deployment)
        load_pipeline(policy.pipeline, root=self.ws.settings.root)
        if policy.approval == "auto":
            from conveyor.models.service import model_service

            routes = deployments.spec(policy.deployment).routes
            primary = next((r for r in routes if r.role == "primary"), None)
            name = policy.model or (primary.ref.rsplit("/", 1)[0] if primary else "")
            if name and "champion" in model_service(self.ws).model(name).protected_aliases:
                raise InvalidArgumentError(
                    f"{name}@champion is protected, so policy {policy.name!r} cannot promote "
                    "on its own (approval='auto').",
                    hint="Use approval='required': a person approves each candidate.",
                )
        monitors = monitoring_service(self.ws)
        for trigger in policy.triggers:
            if hasattr(trigger, "monitor"):
                monitors.get(trigger.monitor)
            if hasattr(trigger, "dataset"):
                data_service(self.ws).versions(trigger.dataset)
        if policy.gate is not None:
            data_service(self.ws).get(policy.gate.data)

    def _row(self, conn: sa.Connection, name: str) -> Any:
        row = conn.execute(
            sa.select(loop_policies).where(
                loop_policies.c.project_id == self.project_id, loop_policies.c.name == name
            )
        ).first()
        if row is None:
            known = conn.execute(
                sa.select(loop_policies.c.name).where(loop_policies.c.project_id == self.project_id)
            ).scalars()
            raise NotFoundError(
                f"No loop policy named {name!r} (policies: {', '.join(sorted(known)) or 'none'}).",
                hint="Apply one: cv.loop.apply(Policy(...)) or conveyor loop apply MODULE:POLICY",
            )
        return row

    def get(self, name: str) -> dict[str, Any]:
        with self.ws.metadata.read() as conn:
            return _policy(self._row(conn, name))

    def list(self) -> _list[dict[str, Any]]:
        with self.ws.metadata.read() as conn:
            rows = conn.execute(
                sa.select(loop_policies)
                .where(loop_policies.c.project_id == self.project_id)
                .order_by(loop_policies.c.name)
            ).all()
        return [_policy(r) for r in rows]

    def pause(self, name: str, paused: bool = True) -> dict[str, Any]:
        """Stop (or, with ``paused=False``, restart) acting on triggers. Executions in flight
        finish; triggers seen while paused are not replayed when it resumes."""
        from conveyor.loop.triggers import initial_cursors

        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            row = self._row(uow.conn, name)
            values: dict[str, Any] = {"paused": paused, "updated_at": uow.now}
            if not paused:
                policy = Policy.from_dict(row.spec)
                values["cursors"] = initial_cursors(self.ws, policy, uow.now, None)
            uow.conn.execute(
                loop_policies.update().where(loop_policies.c.id == row.id).values(**values)
            )
            action = "loop.policy.pause" if paused else "loop.policy.resume"
            uow.audit(action, ObjectRef(POLICY_KIND, row.id), after={"paused": paused})
            self._event(uow, row.id, None, "paused" if paused else "resumed", action, {})
        return self.get(name)

    def trigger(self, name: str, reason: str = "") -> Execution:
        """Start an execution now (a manual trigger; the cooldown does not apply)."""
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            row = self._row(uow.conn, name)
            # Touch the policy first: on PostgreSQL this locks its row, so a controller
            # starting an execution for a fired trigger waits, then fails its compare-and-set.
            uow.conn.execute(
                loop_policies.update()
                .where(loop_policies.c.id == row.id)
                .values(updated_at=uow.now)
            )
            running = self._active(uow.conn, row.id)
            if running is not None:
                raise ConflictError(
                    f"Policy {name!r} has an execution in progress ({running.id}, "
                    f"{running.state}); one at a time.",
                    hint=f"conveyor loop status {name}",
                )
            key = f"manual:{ids.new_id()}"
            detail = {"kind": "manual", "reason": reason or "by hand", "by": uow.actor}
            execution_id = self.start_execution(uow, row.id, key, detail, row.spec)
        return self.execution(execution_id)

    # -- executions and events (the controller writes these) --------------------------------

    def start_execution(
        self, uow: Any, policy_id: str, key: str, trigger: dict[str, Any], spec: dict[str, Any]
    ) -> str:
        """Insert an execution of the policy as ``spec`` says now (a later apply does not
        change an execution in flight)."""
        execution_id = ids.new_id()
        uow.conn.execute(
            loop_executions.insert(),
            [
                {
                    "id": execution_id,
                    "policy_id": policy_id,
                    "trigger_key": key,
                    "trigger": trigger,
                    "state": "triggered",
                    "step": 0,
                    "version": 0,
                    "spec": spec,
                    "reason": "",
                    "state_at": uow.now,
                    "created_at": uow.now,
                }
            ],
        )
        ref = ObjectRef(EXECUTION_KIND, execution_id)
        uow.link(ObjectRef(POLICY_KIND, policy_id), ref, "started")
        source = trigger.get("source")
        if source:  # the alert / monitor result / dataset version that fired it
            uow.link(ObjectRef(source["kind"], source["id"]), ref, "triggered")
        uow.audit("loop.execution.start", ref, after={"trigger": trigger})
        self._event(uow, policy_id, execution_id, "triggered", _describe_trigger(trigger), trigger)
        return execution_id

    def _active(self, conn: sa.Connection, policy_id: str) -> Any:
        return conn.execute(
            sa.select(loop_executions).where(
                loop_executions.c.policy_id == policy_id, loop_executions.c.state.in_(ACTIVE)
            )
        ).first()

    def _event(
        self,
        uow: Any,
        policy_id: str,
        execution_id: str | None,
        kind: str,
        message: str,
        data: dict[str, Any],
    ) -> None:
        uow.conn.execute(
            loop_events.insert(),
            [
                {
                    "id": ids.new_id(),
                    "policy_id": policy_id,
                    "execution_id": execution_id,
                    "at": uow.now,
                    "kind": kind,
                    "message": message,
                    "data": data,
                }
            ],
        )

    def event(self, policy_id: str, execution_id: str | None, kind: str, message: str) -> None:
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            self._event(uow, policy_id, execution_id, kind, message, {})

    def move(
        self,
        execution: Execution,
        state: str,
        message: str,
        *,
        links: _list[tuple[ObjectRef, str]] = (),  # type: ignore[assignment]
        **values: Any,
    ) -> Execution:
        """Record ``execution``'s next state (and fields) with its reason, only if nothing
        moved it since it was read (its version): a second controller's stale view changes
        nothing and raises :class:`StaleExecution`."""
        with self.ws.metadata.transaction(project_id=self.project_id) as uow:
            row = {
                "state": state,
                "state_at": uow.now,
                "version": execution.version + 1,
                **values,
            }
            if state in FINAL:
                row["ended_at"] = uow.now
                row["reason"] = message
            done = uow.conn.execute(
                loop_executions.update()
                .where(
                    loop_executions.c.id == execution.id,
                    loop_executions.c.version == execution.version,
                )
                .values(**row)
            ).rowcount
            if done != 1:
                raise StaleExecution(f"Execution {execution.id} moved on under this controller.")
            ref = ObjectRef(EXECUTION_KIND, execution.id)
            for other, relation in links:
                uow.link(ref, other, relation)
            policy_id = uow.conn.execute(
                sa.select(loop_executions.c.policy_id).where(loop_executions.c.id == execution.id)
            ).scalar_one()
            uow.audit(f"loop.execution.{state}", ref, after={"reason": message, **values})
            self._event(uow, policy_id, execution.id, state, message, _jsonable(values))
        return self.execution(execution.id)

    def execution(self, execution_id: str) -> Execution:
        with self.ws.metadata.read() as conn:
            row = conn.execute(
                sa.select(loop_executions, loop_policies.c.name.label("policy"))
                .join(loop_policies, loop_policies.c.id == loop_executions.c.policy_id)
                .where(
                    loop_executions.c.id == execution_id,
                    loop_policies.c.project_id == self.project_id,
                )
            ).first()
        if row is None:
            raise NotFoundError(f"No loop execution {execution_id!r}.")
        return _execution(row)

    def executions(
        self, name: str | None = None, *, active: bool = False, limit: int = 50
    ) -> _list[Execution]:
        """Executions, newest first (of policy ``name``; only those in flight)."""
        query = (
            sa.select(loop_executions, loop_policies.c.name.label("policy"))
            .join(loop_policies, loop_policies.c.id == loop_executions.c.policy_id)
            .where(loop_policies.c.project_id == self.project_id)
            .order_by(loop_executions.c.created_at.desc(), loop_executions.c.id.desc())
            .limit(limit)
        )
        if name is not None:
            query = query.where(loop_policies.c.name == name)
        if active:
            query = query.where(loop_executions.c.state.in_(ACTIVE))
        with self.ws.metadata.read() as conn:
            if name is not None:
                self._row(conn, name)
            return [_execution(r) for r in conn.execute(query)]

    def events(self, name: str, *, limit: int = 100) -> _list[dict[str, Any]]:
        """A policy's events, oldest first (the last ``limit``)."""
        with self.ws.metadata.read() as conn:
            row = self._row(conn, name)
            rows = conn.execute(
                sa.select(loop_events)
                .where(loop_events.c.policy_id == row.id)
                .order_by(loop_events.c.at.desc(), loop_events.c.id.desc())
                .limit(limit)
            ).all()
        return [
            {
                "at": r.at,
                "execution": r.execution_id,
                "kind": r.kind,
                "message": r.message,
                "data": r.data,
            }
            for r in reversed(rows)
        ]

    def status(self, name: str) -> dict[str, Any]:
        """The policy, its execution in flight (if any), its last decision and next fire."""
        from conveyor.pipelines.schedules import next_fire

        policy = self.get(name)
        spec = Policy.from_dict(policy["spec"])
        recent = self.executions(name, limit=5)
        active = next((e for e in recent if e.active), None)
        finished = next((e for e in recent if not e.active), None)
        now = datetime.now(UTC)
        fires = [next_fire(t.cron, now) for t in spec.triggers if isinstance(t, Schedule)]
        return {
            **policy,
            "active": active.to_dict() if active else None,
            "last": finished.to_dict() if finished else None,
            "next_schedule": min(fires).isoformat() if fires else None,
            "triggers": [f"{trigger_kind(t)}: {t.describe()}" for t in spec.triggers],
        }


def _describe_trigger(trigger: dict[str, Any]) -> str:
    return f"triggered by {trigger.get('kind')}: {trigger.get('reason', '')}".rstrip(": ")


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in values.items()
        if k not in ("gate",)
    }


def _policy(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "deployment": row.deployment,
        "spec": row.spec,
        "cursors": row.cursors,
        "paused": bool(row.paused),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "created_by": row.created_by,
    }


def _execution(row: Any) -> Execution:
    return Execution(
        id=row.id,
        policy=row.policy,
        trigger_key=row.trigger_key,
        trigger=row.trigger,
        state=row.state,
        step=int(row.step),
        version=int(row.version),
        spec=row.spec,
        pipeline_run_id=row.pipeline_run_id,
        previous_run_id=row.previous_run_id,
        candidate=row.candidate,
        champion=row.champion,
        request_id=row.request_id,
        revision=row.revision,
        gate=row.gate,
        reason=row.reason,
        state_at=_utc(row.state_at),
        created_at=_utc(row.created_at),
        ended_at=_utc(row.ended_at) if row.ended_at else None,
    )
