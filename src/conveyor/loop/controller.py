"""The controller: turns fired triggers into executions and moves each one along.

Each pass (``tick``) takes the project's loop lease (two controllers may run; one acts),
evaluates every policy's triggers, and advances every execution in flight as far as it can
go without waiting: start the pipeline (recorded under a run id chosen first, so a restarted
controller finds the run instead of training again), register the candidate as
``challenger``, run the gate, grant or wait for approval, then step the canary through the
deployment's traffic split, holding each step and reading the candidate's live predictions,
and finally promote (the deployment and ``champion`` follow the candidate) or roll back.
Every move is a compare-and-set on the recorded state, so a stale controller changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.errors import ConflictError, ConveyorError, NotFoundError
from conveyor.loop.policy import Policy
from conveyor.loop.service import ACTIVE, Execution, LoopService, StaleExecution, loop_service
from conveyor.store import leases
from conveyor.store.metadata.schema import loop_executions, loop_policies
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace, current_workspace

__all__ = ["LoopController"]

log = logging.getLogger("conveyor.loop")

LEASE_TTL = timedelta(seconds=60)  # renewed before every step
APPROVAL_ALIAS = "champion"  # asked for with a deferred request: it moves after the canary


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class LoopController:
    """Runs the project's continuous-training policies (see the module docs)."""

    def __init__(
        self,
        workspace: Workspace | None = None,
        *,
        holder: str | None = None,
        lease_ttl: timedelta = LEASE_TTL,
        say: Any = None,
    ) -> None:
        self.ws = workspace or current_workspace()
        if self.ws.remote is not None:
            from conveyor.loop.remote import controller_needs_the_stores

            raise controller_needs_the_stores(self.ws)
        self.holder = holder or leases.new_holder()
        self.lease_ttl = lease_ttl
        self.lease_name = f"loop:{self.ws.project.id}"
        self.say = say or (lambda message: log.info("%s", message))
        self.service: LoopService = loop_service(self.ws)
        self.holds_lease = False

    # -- the pass ------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[Execution]:
        """One pass over every policy; returns the executions it moved (none, and
        :attr:`holds_lease` False, while another controller holds the lease)."""
        moved: dict[str, Execution] = {}
        self.holds_lease = False
        for found in self.service.list():
            if not self._lease():
                break  # another controller acts (or took over mid-pass): stop here
            self.holds_lease = True
            try:
                if not found["paused"]:
                    policy = Policy.from_dict(found["spec"])
                    started = self._triggers(found, policy, _utc(now or datetime.now(UTC)))
                    if started is not None:
                        moved[started.id] = started
                for execution in self.service.executions(found["name"], active=True):
                    for step in self._advance(execution):
                        moved[step.id] = step
            except Exception as e:
                log.exception("conveyor loop: policy %s: %s", found["name"], e)
                self.service.event(found["id"], None, "error", f"{type(e).__name__}: {e}")
        else:
            self.holds_lease = self._lease()
        return list(moved.values())

    def _lease(self) -> bool:
        return leases.acquire(self.ws, self.lease_name, self.holder, self.lease_ttl)

    def release(self) -> None:
        """Give the lease up (a one-shot ``tick`` does, so the next one need not wait)."""
        leases.release(self.ws, self.lease_name, self.holder)

    def run_forever(self, *, poll: float = 5.0, stop: Any = None) -> None:
        """Tick every ``poll`` seconds until ``stop()`` is true (or Ctrl-C)."""
        try:
            while stop is None or not stop():
                try:
                    self.tick()
                except Exception as e:  # noqa: BLE001 - the store may be down for a moment
                    log.error("conveyor loop: %s", e)
                time.sleep(poll)
        finally:
            self.release()

    def _triggers(self, found: dict[str, Any], policy: Policy, now: datetime) -> Execution | None:
        """Start an execution for the first trigger that fired, or record why none starts."""
        from conveyor.loop.triggers import fired

        hits, cursors = fired(self.ws, policy, found["cursors"] or {}, now)
        if not hits and cursors == found["cursors"]:
            return None
        started: str | None = None
        with self.ws.metadata.transaction(project_id=self.ws.project.id) as uow:
            done = uow.conn.execute(
                loop_policies.update()
                .where(
                    loop_policies.c.id == found["id"],
                    loop_policies.c.updated_at == found["updated_at"],
                )
                .values(cursors=cursors, updated_at=uow.now)
            ).rowcount
            if done != 1 or not hits:
                return None  # changed under us (re-applied, paused): next pass reads afresh
            running = uow.conn.execute(
                sa.select(loop_executions.c.id, loop_executions.c.state).where(
                    loop_executions.c.policy_id == found["id"],
                    loop_executions.c.state.in_(ACTIVE),
                )
            ).first()
            last = uow.conn.execute(
                sa.select(sa.func.max(loop_executions.c.created_at)).where(
                    loop_executions.c.policy_id == found["id"]
                )
            ).scalar()
            until = (
                _utc(last) + timedelta(seconds=policy.cooldown_seconds)
                if last is not None
                else None
            )
            for hit in hits:
                why = ""
                if started is not None:
                    why = f"folded into the execution it started with ({started})"
                elif running is not None:
                    why = f"execution {running.id} is {running.state}"
                elif until is not None and now < until:
                    why = f"cooling down until {until:%Y-%m-%d %H:%M:%S} UTC"
                if why:
                    self.service._event(
                        uow,
                        found["id"],
                        started,
                        "ignored",
                        f"trigger ignored ({hit.detail.get('reason', hit.key)}): {why}",
                        hit.detail,
                    )
                    continue
                started = self.service.start_execution(
                    uow, found["id"], hit.key, hit.detail, found["spec"]
                )
        if started is None:
            return None
        execution = self.service.execution(started)
        self.say(f"{policy.name}: {execution.trigger.get('reason', 'triggered')}")
        return execution

    def _advance(self, execution: Execution) -> list[Execution]:
        """Move ``execution`` through every state it can reach now, under the spec it
        started with."""
        policy = Policy.from_dict(execution.spec)
        handlers = {
            "triggered": self._triggered,
            "training": self._training,
            "gating": self._gating,
            "awaiting_approval": self._approval,
            "rolling_out": self._rolling_out,
        }
        moved: list[Execution] = []
        while execution.active:
            if not self._lease():
                break  # another controller took over: stop acting
            try:
                after = handlers[execution.state](execution, policy)
            except StaleExecution as e:
                log.info("conveyor loop: %s", e)  # another controller moved it first
                break
            except ConveyorError as e:
                after = self._fail(execution, policy, f"{execution.state} failed: {e}")
            except (sa.exc.SQLAlchemyError, OSError):
                raise  # the store or the network: the next pass tries again
            except Exception as e:
                log.exception("conveyor loop: %s failed", execution.state)
                message = f"{execution.state} failed: {type(e).__name__}: {e}"
                after = self._fail(execution, policy, message)
            if after is None:
                break
            moved.append(after)
            execution = after
        return moved

    def _fail(self, execution: Execution, policy: Policy, message: str) -> Execution:
        """End ``execution`` failed; a canary it put out is taken back out first."""
        if execution.state == "rolling_out" and execution.candidate:
            from conveyor.serving.deployment import deployment_service

            try:
                deployment_service(self.ws).rollback_canary(
                    policy.deployment, execution.candidate, message, actor=self._actor(policy)
                )
            except ConveyorError as e:
                message += f" (and taking the canary out failed: {e})"
        return self._move(execution, "failed", message)

    def _actor(self, policy: Policy) -> str:
        return f"{self.ws.settings.actor} (loop {policy.name})"

    def _move(self, execution: Execution, state: str, message: str, **values: Any) -> Execution:
        after = self.service.move(execution, state, message, **values)
        self.say(f"{execution.policy}: {state}: {message}")
        if state in ("rejected", "rolled_back", "failed") and after.request_id:
            from conveyor.models.service import model_service

            try:  # an approval for a candidate that did not make it must not be used later
                model_service(self.ws).withdraw(after.request_id, comment=f"{state}: {message}")
            except ConflictError:  # decided already (rejected, or approved and used): it stays
                pass
            except ConveyorError as e:
                log.warning("conveyor loop: could not withdraw %s: %s", after.request_id, e)
        return after

    # -- states --------------------------------------------------------------------------

    def _triggered(self, execution: Execution, policy: Policy) -> Execution:
        run_id = ids.new_id()
        return self._move(
            execution,
            "training",
            f"pipeline {policy.pipeline} started (run {run_id})",
            pipeline_run_id=run_id,
            links=[(ObjectRef("pipeline_run", run_id), "started")],
        )

    def _training(self, execution: Execution, policy: Policy) -> Execution | None:
        from conveyor.pipelines.engine import PipelineFailed, run_pipeline
        from conveyor.pipelines.loader import load_pipeline
        from conveyor.pipelines.records import PipelineStatus
        from conveyor.pipelines.service import abandoned, get_run, resume

        run_id = execution.pipeline_run_id
        assert run_id is not None
        try:
            run = get_run(run_id, workspace=self.ws)
        except NotFoundError:
            run = None
        if run is None and execution.previous_run_id:  # died before the resume started
            with contextlib.suppress(PipelineFailed), self._leased():
                resume(
                    execution.previous_run_id,
                    workspace=self.ws,
                    new_run_id=run_id,
                    cache=policy.cache,  # a model trained for this execution, not one cached
                )
            run = get_run(run_id, workspace=self.ws)
        if run is None:  # not started yet (or the controller died before it was recorded)
            try:
                with self._leased():
                    run = run_pipeline(
                        load_pipeline(policy.pipeline, root=self.ws.settings.root),
                        dict(policy.params),
                        executor=policy.executor,
                        cache=policy.cache,
                        ws=self.ws,
                        run_id=run_id,
                    )
            except PipelineFailed as e:
                run = e.run
        elif run.status is PipelineStatus.RUNNING:
            gone = abandoned(run)
            if gone is None:
                return None  # still training, under another process: look again next pass
            new_id = ids.new_id()
            execution = self._move(
                execution,
                "training",
                f"resuming pipeline run {run.id} ({gone}) as {new_id}",
                pipeline_run_id=new_id,
                previous_run_id=run.id,
                links=[(ObjectRef("pipeline_run", new_id), "started")],
            )
            with contextlib.suppress(PipelineFailed), self._leased():
                resume(run.id, workspace=self.ws, new_run_id=new_id, cache=policy.cache)
            return execution
        if run.status is not PipelineStatus.SUCCEEDED:
            return self._move(
                execution, "failed", f"pipeline run {run.id} {run.status}: {run.error[:500]}"
            )
        name = self._model_name(policy)
        candidate = registered_by(self.ws, run, name)
        if candidate is None:
            return self._move(
                execution,
                "failed",
                f"pipeline run {run.id} registered no version of model {name!r}",
            )
        from conveyor.models.service import model_service

        models = model_service(self.ws)
        version = models.get(candidate)
        try:
            models.set_alias(version.name, "challenger", version.version)
        except ConveyorError as e:
            self.service.event(self._policy_id(policy), execution.id, "note", f"challenger: {e}")
        champion = self._serving(policy)
        return self._move(
            execution,
            "gating",
            f"{candidate} registered by pipeline run {run.id} as {version.name}@challenger; "
            f"champion {champion or 'none'}",
            candidate=candidate,
            champion=champion,
            links=[(ObjectRef("model_version", version.id), "candidate")],
        )

    @contextlib.contextmanager
    def _leased(self) -> Iterator[None]:
        """Keep renewing the lease while a long step (training) runs in this thread."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.lease_ttl.total_seconds() / 3):
                try:
                    self._lease()
                except Exception as e:  # noqa: BLE001 - retried at the next beat
                    log.debug("conveyor loop: lease renewal failed: %s", e)

        beat = threading.Thread(target=renew, name="conveyor-loop-lease", daemon=True)
        beat.start()
        try:
            yield
        finally:
            done.set()
            beat.join(5)

    def _gating(self, execution: Execution, policy: Policy) -> Execution:
        from conveyor.loop.gate import run_gate

        assert execution.candidate is not None
        if policy.gate is None:
            result: dict[str, Any] = {"passed": True, "reasons": [], "checks": []}
            message = "no gate: passed"
        else:
            result = run_gate(self.ws, policy.gate, execution.candidate, execution.champion)
            message = _gate_message(result)
        links = [
            (ObjectRef("model_evaluation", e), "gated_by") for e in result.get("evaluations", [])
        ]
        if not result["passed"]:
            return self._move(execution, "rejected", message, gate=result, links=links)
        return self._move(execution, "awaiting_approval", message, gate=result, links=links)

    def _approval(self, execution: Execution, policy: Policy) -> Execution | None:
        from conveyor.models.service import model_service

        assert execution.candidate is not None
        if policy.approval == "auto":
            return self._move(
                execution, "rolling_out", "approved automatically: the gate passed", step=0
            )
        models = model_service(self.ws)
        version = models.get(execution.candidate)
        request_id = execution.request_id
        if request_id is None:
            found = [
                r
                for r in models.requests(version.name)
                if r.version == version.version
                and r.alias == APPROVAL_ALIAS
                and r.deferred
                and _utc(r.requested_at) >= execution.created_at
            ]
            if found:  # made by a controller that died before recording it
                request_id = found[0].id
            else:
                request = models.request_promotion(
                    version.ref,
                    APPROVAL_ALIAS,
                    comment=f"loop policy {policy.name}, execution {execution.id}: "
                    f"{_gate_message(execution.gate or {'passed': True})}; the alias moves "
                    "after the canary",
                    deferred=True,
                )
                request_id = request.id
            checks_failed = not models.request(request_id).checks_passed
            return self._move(
                execution,
                "awaiting_approval",
                f"awaiting approval: conveyor models approve {request_id}"
                + (" --override-checks -m WHY (it failed a check)" if checks_failed else ""),
                request_id=request_id,
                links=[(ObjectRef("promotion_request", request_id), "approval")],
            )
        request = models.request(request_id)
        if request.status == "pending":
            return None
        if request.status != "approved":
            who = request.decided_by or request.requested_by
            return self._move(
                execution,
                "rejected",
                f"request {request.status} by {who}: {request.decision_comment or 'no comment'}",
            )
        return self._move(
            execution,
            "rolling_out",
            f"approved by {request.decided_by}"
            + (f": {request.decision_comment}" if request.decision_comment else ""),
            step=0,
        )

    def _rolling_out(self, execution: Execution, policy: Policy) -> Execution | None:
        from conveyor.serving.deployment import deployment_service

        assert execution.candidate is not None
        canary = policy.rollout
        if (
            canary is None
            or execution.step >= len(canary.steps)
            or (canary.steps[execution.step] >= 100)
        ):
            return self._promote(execution, policy)
        deployments = deployment_service(self.ws)
        weight = canary.steps[execution.step]
        current = deployments.get(policy.deployment)
        route = next(
            (
                r
                for r in current.routes
                if r["role"] == "canary" and r["model"] == execution.candidate
            ),
            None,
        )
        primary = next((r for r in current.routes if r["role"] == "primary"), None)
        if route is None and primary is not None and self._is(primary["model"], execution):
            return self._promote(execution, policy)  # a person promoted it by hand
        removed = self._guard_rollback(execution, policy)
        if route is None and removed is not None:
            return self._move(
                execution,
                "rolled_back",
                f"the canary was taken out of {policy.deployment} (revision {removed.revision} "
                f"by {removed.created_by}: {removed.reason or removed.change})",
                revision=removed.revision,
            )
        if route is None and execution.step > 0:  # a person took the canary out between steps
            return self._move(
                execution,
                "rolled_back",
                f"the canary was removed from {policy.deployment} by hand (revision "
                f"{current.revision} by {current.created_by}: {current.change})",
                revision=current.revision,
            )
        if execution.revision is None:  # this step's split is not written yet
            if route is not None and float(route["weight"]) == weight:
                revision = current  # written by a controller that died before recording it
            else:
                revision = deployments.canary(
                    policy.deployment, execution.candidate, weight, limits=canary.limits
                )
            return self._move(
                execution,
                "rolling_out",
                f"canary {execution.candidate} at {weight:g}% of {policy.deployment} "
                f"(revision {revision.revision}); holding {canary.hold}",
                revision=revision.revision,
                links=[(ObjectRef("deployment_revision", revision.id), "deployed")],
            )
        if route is None:  # the server's guard (or a person) took the canary out
            last = deployments.get(policy.deployment)
            return self._move(
                execution,
                "rolled_back",
                f"the canary was removed from {policy.deployment} (revision {last.revision}, "
                f"{last.change}: {last.reason or 'no reason given'})",
                revision=last.revision,
            )
        now = datetime.now(UTC)
        if (now - execution.state_at).total_seconds() < canary.hold_seconds:
            return None
        verdict, detail = self._live_check(execution, policy, now)
        if verdict == "wait":
            return None
        if verdict == "breach":
            removed = deployments.rollback_canary(
                policy.deployment, execution.candidate, detail, actor=self._actor(policy)
            )
            return self._move(
                execution,
                "rolled_back",
                f"rolled back at {weight:g}%: {detail}",
                revision=removed.revision if removed else execution.revision,
            )
        nxt = execution.step + 1
        return self._move(
            execution,
            "rolling_out",
            f"{weight:g}% held for {canary.hold}: {detail}",
            step=nxt,
            revision=None,
        )

    def _is(self, named: str, execution: Execution) -> bool:
        """Whether the route model ``named`` (a version or an alias) is the candidate."""
        from conveyor.models.service import model_service

        if named == execution.candidate:
            return True
        try:
            return model_service(self.ws).get(named).ref == execution.candidate
        except NotFoundError:
            return False

    def _guard_rollback(self, execution: Execution, policy: Policy) -> Any:
        """The revision that took this execution's canary out since it started, if any."""
        from conveyor.serving.deployment import deployment_service

        for revision in deployment_service(self.ws).history(policy.deployment):
            if _utc(revision.created_at) < execution.created_at:
                break
            if revision.change == "auto-rollback" and revision.reason.startswith(
                f"{execution.candidate}:"
            ):
                return revision
        return None

    def _live_check(self, execution: Execution, policy: Policy, now: datetime) -> tuple[str, str]:
        """("ok" | "breach" | "wait", why) from the candidate's logged predictions."""
        import numpy as np

        from conveyor.monitoring import checks
        from conveyor.store.logs import read_log

        canary = policy.rollout
        assert canary is not None
        assert execution.candidate is not None
        name, number = execution.candidate.rsplit("/", 1)
        window = read_log(
            self.ws.log_uri,
            "predictions",
            deployment=policy.deployment,
            start=execution.state_at,
            end=now,
        )
        if not window.empty:
            window = window[
                (window["model"] == name)
                & (window["model_version"] == int(number))
                & (window.get("role", "canary") != "shadow")
            ]
        rows = len(window)
        waited = (now - execution.state_at).total_seconds()
        judged = canary.min_metric is not None or canary.max_p99_ms is not None
        if rows < canary.min_rows or (rows == 0 and judged):
            if waited < canary.deadline_seconds:
                return "wait", f"{rows} predictions so far (waiting for {canary.min_rows})"
            # fail closed: a canary no traffic reached cannot be judged, so it is not promoted
            return "breach", f"only {rows} predictions of the candidate in {waited:.0f} s"
        parts = [f"{rows} predictions"]
        if rows == 0:
            return "ok", "no predictions of the candidate (none required: min_rows=0)"
        p99 = float(np.percentile(window["latency_ms"].to_numpy(float), 99))
        parts.append(f"p99 {p99:.1f} ms")
        if canary.max_p99_ms is not None and p99 > canary.max_p99_ms:
            return "breach", f"p99 latency {p99:.1f} ms over {canary.max_p99_ms:g} ms"
        if canary.min_metric is not None:
            metric, op, limit = canary.min_metric
            labels = read_log(
                self.ws.log_uri,
                "feedback",
                deployment=policy.deployment,
                start=execution.state_at,
                end=now + timedelta(minutes=1),
            )
            found = checks.performance(window, labels, min_labels=canary.min_labels)
            value = found.get(metric)
            if found.get("status") != "ok" or value is None:
                if waited < canary.deadline_seconds:
                    return "wait", f"{metric}: {found.get('status')}"
                # fail closed: a canary that cannot be judged is not promoted
                return "breach", f"{metric} could not be judged: {found.get('status')}"
            else:
                from conveyor.loop.triggers import _OPS

                parts.append(f"{metric} {value:.4f} on {found['labelled_rows']} labels")
                if not _OPS[op](float(value), float(limit)):
                    return "breach", f"{metric} {value:.4f} not {op} {limit:g}"
        return "ok", ", ".join(parts)

    def _promote(self, execution: Execution, policy: Policy) -> Execution:
        from conveyor.models.service import model_service
        from conveyor.serving.deployment import deployment_service

        assert execution.candidate is not None
        models = model_service(self.ws)
        deployments = deployment_service(self.ws)
        version = models.get(execution.candidate)
        current = deployments.get(policy.deployment)
        primary = next((r for r in current.routes if r["role"] == "primary"), None)
        follows = f"{version.name}@champion"
        model = models.model(version.name)
        if model.aliases.get("champion") != version.version:
            models.set_alias(
                version.name, "champion", version.version, request_id=execution.request_id
            )
        named = primary["model"] if primary is not None else ""
        canaries = [r for r in current.routes if r["role"] in ("canary", "ab")]
        if (
            named in (follows, version.ref)
            and not canaries
            and models.get(named).ref == version.ref
        ):
            revision = current  # done before a crash
        else:
            target = follows if "@" in named else version.ref
            revision = deployments.serve(
                policy.deployment, target, reason=f"loop {policy.name}: {version.ref}"
            )
        return self._move(
            execution,
            "promoted",
            f"{version.ref} serves all of {policy.deployment} (revision {revision.revision}); "
            f"{version.name}@champion points at it",
            revision=revision.revision,
            links=[(ObjectRef("deployment_revision", revision.id), "deployed")],
        )

    # -- helpers -------------------------------------------------------------------------

    def _policy_id(self, policy: Policy) -> str:
        return str(self.service.get(policy.name)["id"])

    def _serving(self, policy: Policy) -> str | None:
        """The version the deployment's primary route serves now (e.g. ``churn/3``)."""
        from conveyor.serving.deployment import deployment_service

        spec = deployment_service(self.ws).spec(policy.deployment)
        primary = next((r for r in spec.routes if r.role == "primary"), None)
        return primary.ref if primary else None

    def _model_name(self, policy: Policy) -> str:
        if policy.model:
            return policy.model
        serving = self._serving(policy)
        if serving is None:
            raise NotFoundError(f"Deployment {policy.deployment!r} has no primary model.")
        return serving.rsplit("/", 1)[0]


def registered_by(ws: Workspace, run: Any, name: str) -> str | None:
    """The newest version of model ``name`` registered by a step of pipeline run ``run`` (or
    by a step an earlier run finished and this one reused), as ``name/N``."""
    from conveyor.pipelines.service import get_run
    from conveyor.store.metadata.schema import model_versions, models

    run_ids: list[str] = []
    seen: Any = run
    while seen is not None:  # a resumed run reuses steps its earlier runs finished
        run_ids += [seen.id, *(s.id for s in seen.steps)]
        run_ids += [s.cached_from for s in seen.steps if s.cached_from]
        seen = get_run(seen.resumed_from, workspace=ws) if seen.resumed_from else None
    with ws.metadata.read() as conn:
        number = conn.execute(
            sa.select(sa.func.max(model_versions.c.version))
            .join(models, models.c.id == model_versions.c.model_id)
            .where(
                models.c.project_id == str(ws.project.id),
                models.c.name == name,
                model_versions.c.run_id.in_(run_ids),
            )
        ).scalar()
    return f"{name}/{number}" if number is not None else None


def _gate_message(result: dict[str, Any]) -> str:
    if not result["passed"]:
        return "gate rejected: " + "; ".join(result["reasons"])
    metric = result.get("metric")
    champion = result.get("champion") or {}
    mine = (result.get("candidate") or {}).get("value")
    theirs = champion.get("value")
    parts = []
    if mine is not None:
        against = f" vs {theirs:.4f} for {champion['ref']}" if theirs is not None else ""
        parts.append(f"{metric} {mine:.4f}{against} on {result.get('data')}")
    passed = [c["name"] for c in result.get("checks", []) if c["status"] == "passed"]
    if passed:
        parts.append("checks passed: " + ", ".join(passed))
    skipped = [c["name"] for c in result.get("checks", []) if c["status"] == "skipped"]
    if skipped:
        parts.append("skipped: " + ", ".join(skipped))
    return "gate passed: " + "; ".join(parts) if parts else "gate passed"
