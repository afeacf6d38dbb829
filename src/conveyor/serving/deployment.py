"""Deployments: what a fleet of model servers runs, changed one audited revision at a time.

A revision's policy lists routes (a model reference, its share of traffic, its role), the
A/B key and the canary's limits. A route may name an alias (``churn@champion``): servers
resolve it each time they check, so moving the alias moves the traffic. Every change is a
new revision with an audit event and lineage edges to the model versions it serves.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.errors import ConflictError, InvalidArgumentError, NotFoundError
from conveyor.models.registry import VERSION_KIND
from conveyor.models.service import model_service
from conveyor.serving.traffic import RouteSpec, TrafficSpec
from conveyor.store.metadata.schema import deployment_revisions, deployments
from conveyor.store.principal import require_role
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace, current_workspace

_list = list

__all__ = ["LIMIT_KEYS", "DeploymentService", "Revision", "deployment_service"]

REVISION_KIND = "deployment_revision"
LIMIT_KEYS = ("max_error_rate", "max_p99_ms")


@dataclass(frozen=True, slots=True)
class Revision:
    """One revision of a deployment: its policy and why it was made."""

    deployment: str
    revision: int
    routes: tuple[dict[str, Any], ...]
    key: str | None
    limits: dict[str, float]
    change: str
    reason: str
    created_at: datetime
    created_by: str
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deployment": self.deployment,
            "revision": self.revision,
            "routes": list(self.routes),
            "key": self.key,
            "limits": self.limits,
            "change": self.change,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }

    def describe(self) -> str:
        return ", ".join(
            f"{r['model']} shadow"
            if r["role"] == "shadow"
            else f"{r['model']} {r['role']} {r['weight']:g}%"
            for r in self.routes
        )


def deployment_service(ws: Workspace | None = None) -> DeploymentService:
    """The deployment service of ``ws`` (default: the workspace in use)."""
    ws = ws or current_workspace()
    if ws.remote is not None:
        from conveyor.serving.remote import RemoteDeploymentService

        return ws.service("deployments", RemoteDeploymentService)
    return ws.service("deployments", DeploymentService)


def _weight(weight: float) -> float:
    if not 0 < weight < 100:
        raise InvalidArgumentError(
            f"A weight is a percentage of traffic between 0 and 100 (exclusive); got {weight:g}.",
            hint="--weight 10 sends 10% of requests to the new version.",
        )
    return float(weight)


class DeploymentService:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    @property
    def project_id(self) -> str:
        return str(self.ws.project.id)

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> list[Revision]:
        """The current revision of every deployment of the project."""
        with self.ws.metadata.read() as conn:
            rows = conn.execute(
                sa.select(deployments.c.name, deployment_revisions)
                .join(
                    deployment_revisions,
                    (deployment_revisions.c.deployment_id == deployments.c.id)
                    & (deployment_revisions.c.revision == deployments.c.latest_revision),
                )
                .where(deployments.c.project_id == self.project_id)
                .order_by(deployments.c.name)
            ).all()
        return [_revision(row.name, row) for row in rows]

    def get(self, name: str, revision: int | None = None) -> Revision:
        """The current revision of ``name`` (or revision number ``revision``)."""
        with self.ws.metadata.read() as conn:
            dep = self._deployment(conn, name)
            number = revision if revision is not None else dep.latest_revision
            row = conn.execute(
                sa.select(deployment_revisions).where(
                    deployment_revisions.c.deployment_id == dep.id,
                    deployment_revisions.c.revision == number,
                )
            ).first()
        if row is None:
            raise NotFoundError(
                f"Deployment {name!r} has no revision {number}; it has 1 to {dep.latest_revision}.",
                hint=f"conveyor deploy status {name} lists them.",
            )
        return _revision(name, row)

    def history(self, name: str) -> _list[Revision]:
        """Every revision of ``name``, newest first."""
        with self.ws.metadata.read() as conn:
            dep = self._deployment(conn, name)
            rows = conn.execute(
                sa.select(deployment_revisions)
                .where(deployment_revisions.c.deployment_id == dep.id)
                .order_by(deployment_revisions.c.revision.desc())
            ).all()
        return [_revision(name, row) for row in rows]

    def _deployment(self, conn: sa.Connection, name: str) -> Any:
        row = conn.execute(
            sa.select(deployments).where(
                deployments.c.project_id == self.project_id, deployments.c.name == name
            )
        ).first()
        if row is None:
            known = conn.execute(
                sa.select(deployments.c.name).where(deployments.c.project_id == self.project_id)
            ).scalars()
            names = ", ".join(sorted(known)) or "none yet"
            raise NotFoundError(
                f"No deployment named {name!r} (deployments: {names}).",
                hint=f"Create it: conveyor deploy create {name} --model MODEL@ALIAS",
            )
        return row

    def spec(self, name: str) -> TrafficSpec:
        """What servers of ``name`` should run now, with every alias resolved to a version."""
        current = self.get(name)
        models = model_service(self.ws)
        routes = []
        for route in current.routes:
            try:
                version = models.get(route["model"])
            except NotFoundError:
                if "version" not in route:
                    raise
                # The alias is gone: what it named when the revision was written.
                version = models.get(route["version"])
            routes.append(
                RouteSpec(version.ref, version.id, route["weight"], route["role"], route["model"])
            )
        return TrafficSpec(
            name,
            current.revision,
            tuple(routes),
            current.key,
            tuple(sorted(current.limits.items())),
        )

    # -- changes ---------------------------------------------------------------------------

    def create(self, name: str, model: str, *, limits: dict[str, float] | None = None) -> Revision:
        """Create deployment ``name`` serving ``model`` (a version or an alias) to all traffic."""
        _check_name(name)
        routes = [{"model": model, "weight": 100.0, "role": "primary"}]
        return self._revise(name, routes, None, _limits(limits), "create", "", new=True)

    def canary(
        self,
        name: str,
        model: str,
        weight: float,
        *,
        limits: dict[str, float] | None = None,
    ) -> Revision:
        """Send ``weight`` % of traffic to ``model``; ``limits`` roll it back automatically."""
        current = self.get(name)
        share = _weight(weight)
        asked = _limits(limits)
        self._not_the_primary(current, model, "canary")
        routes = _with_candidate(current, model, share, "canary")
        # This canary's own limits; raising the same canary's weight keeps them; else the
        # deployment's standing ones (given at create): never what another canary was given.
        ramping = any(r["role"] == "canary" and r["model"] == model for r in current.routes)
        guard = asked or (current.limits if ramping else self._standing_limits(name))
        reason = f"{model} at {share:g}%"
        return self._revise(name, routes, None, guard, "canary", reason, base=current.revision)

    def _not_the_primary(self, current: Revision, model: str, role: str) -> None:
        """Refuse a canary, A/B challenger or shadow of the version the primary serves: it
        would be compared with itself (and promoting it would change nothing)."""
        models = model_service(self.ws)
        candidate = models.get(model)  # it must exist: the helpful NotFoundError if not
        primary = next((r for r in current.routes if r["role"] == "primary"), None)
        if primary is None:
            return  # _with_candidate says so (a shadow needs no primary)
        try:
            served = models.get(primary["model"])
        except NotFoundError:
            if "version" not in primary:
                return
            served = models.get(primary["version"])  # the alias is gone: what it named
        if served.id != candidate.id:
            return
        through = f" (through {primary['model']})" if primary["model"] != served.ref else ""
        command = {
            "canary": f"conveyor deploy canary {current.deployment} --model "
            f"{served.name}/VERSION --weight 10",
            "ab": f"conveyor deploy ab {current.deployment} --model {served.name}/VERSION "
            "--key FIELD",
            "shadow": f"conveyor deploy shadow {current.deployment} --model {served.name}/VERSION",
        }[role]
        label = {"canary": "canary", "ab": "A/B challenger", "shadow": "shadow"}[role]
        raise ConflictError(
            f"Deployment {current.deployment!r} already serves {served.ref} as its primary"
            f"{through}; {model} as its {label} would be compared with itself.",
            hint=f"Give another version of {served.name}: {command}",
        )

    def _shadows_besides(self, current: Revision, primary: str) -> _list[dict[str, Any]]:
        """The shadow routes of ``current`` to keep under the new ``primary``: not one of the
        version it serves, which would mirror each request to itself."""
        shadows = [dict(r) for r in current.routes if r["role"] == "shadow"]
        if not shadows:
            return []
        models = model_service(self.ws)
        try:
            served = models.get(primary).id
        except NotFoundError:
            return shadows
        kept = []
        for route in shadows:
            try:
                same = models.get(route["model"]).id == served
            except NotFoundError:  # a shadow whose model is gone: kept, as before
                same = False
            if not same:
                kept.append(route)
        return kept

    def _standing_limits(self, name: str) -> dict[str, float]:
        """The limits the deployment was created with (its first revision's)."""
        first = self.get(name, 1)
        return dict(first.limits)

    def ab(self, name: str, model: str, weight: float, *, key: str) -> Revision:
        """Split traffic ``100-weight`` / ``weight``, sticky by the request field ``key``."""
        if not key:
            raise InvalidArgumentError(
                "An A/B test needs --key: the field that keeps a user on one side."
            )
        current = self.get(name)
        share = _weight(weight)
        self._not_the_primary(current, model, "ab")
        routes = _with_candidate(current, model, share, "ab")
        reason = f"{model} at {share:g}% by {key}"
        return self._revise(name, routes, key, current.limits, "ab", reason, base=current.revision)

    def shadow(self, name: str, model: str) -> Revision:
        """Mirror every request to ``model``: its answers are logged, never returned."""
        current = self.get(name)
        self._not_the_primary(current, model, "shadow")
        routes = [dict(r) for r in current.routes if r["role"] != "shadow"]
        routes.append({"model": model, "weight": 0.0, "role": "shadow"})
        return self._revise(
            name, routes, current.key, current.limits, "shadow", model, base=current.revision
        )

    def promote(self, name: str) -> Revision:
        """Make the canary (or A/B challenger, or else the shadow) the primary at 100%."""
        current = self.get(name)
        candidate = next(
            (r for role in ("canary", "ab", "shadow") for r in current.routes if r["role"] == role),
            None,
        )
        if candidate is None:
            raise ConflictError(
                f"Deployment {name!r} has no canary, A/B challenger or shadow to promote "
                f"(revision {current.revision}: {current.describe()}).",
                hint=f"Start one: conveyor deploy canary {name} --model MODEL/VERSION --weight 10",
            )
        routes = [{"model": candidate["model"], "weight": 100.0, "role": "primary"}]
        if candidate["role"] != "shadow":  # a promoted canary leaves the shadow mirroring
            routes += self._shadows_besides(current, candidate["model"])
        return self._revise(
            name,
            routes,
            None,
            self._standing_limits(name),
            "promote",
            candidate["model"],
            base=current.revision,
        )

    def serve(
        self, name: str, model: str, *, reason: str = "", actor: str | None = None
    ) -> Revision:
        """Send all traffic to ``model`` (shadows stay): how the continuous-training loop
        finishes a rollout, naming the alias it just moved so the deployment follows it."""
        current = self.get(name)
        routes = [{"model": model, "weight": 100.0, "role": "primary"}]
        routes += self._shadows_besides(current, model)
        return self._revise(
            name,
            routes,
            None,
            current.limits,
            "promote",
            reason or model,
            actor=actor,
            base=current.revision,
        )

    def rollback(self, name: str, *, to: int | None = None, reason: str = "") -> Revision:
        """Serve what revision ``to`` served (default: the one before the current one)."""
        current = self.get(name)
        target = to if to is not None else current.revision - 1
        if current.revision == 1:
            raise InvalidArgumentError(
                f"Deployment {name!r} has only one revision; there is nothing to roll back to."
            )
        if target < 1 or target >= current.revision:
            raise InvalidArgumentError(
                f"Cannot roll {name!r} back to revision {target}: choose one of 1 to "
                f"{current.revision - 1}."
            )
        old = self.get(name, target)
        # What it served: an alias's route comes back as the version it named then (the
        # alias may have moved since, which made no revision).
        served = [
            {
                k: v
                for k, v in {**r, "model": r.get("version", r["model"])}.items()
                if k != "version"
            }
            for r in old.routes
        ]
        return self._revise(
            name,
            served,
            old.key,
            old.limits,
            "rollback",
            reason or f"to revision {target}",
            base=current.revision,
        )

    def rollback_canary(
        self, name: str, model: str, reason: str, *, actor: str = "conveyor-server"
    ) -> Revision | None:
        """Drop the canary ``model`` (the server's guard calls this); None if already gone.

        Made against the revision read: if someone changed the deployment meanwhile, it reads
        again, so a change made by hand is never undone by the guard's stale view.
        """
        for _ in range(5):
            current = self.get(name)
            canaries = [r for r in current.routes if r["role"] == "canary"]
            if not any(_same(r["model"], model, self.ws) for r in canaries):
                return None
            routes = [dict(r) for r in current.routes if r["role"] != "canary"]
            answering = [r for r in routes if r["role"] != "shadow"]
            for r in answering:
                r["weight"] = round(100.0 / len(answering), 6)
            try:
                return self._revise(
                    name,
                    routes,
                    current.key,
                    current.limits,
                    "auto-rollback",
                    f"{model}: {reason}",
                    actor=actor,
                    base=current.revision,
                )
            except ConflictError:
                continue
        raise ConflictError(f"Deployment {name!r} keeps changing; the canary was not rolled back.")

    def _revise(
        self,
        name: str,
        routes: _list[dict[str, Any]],
        key: str | None,
        limits: dict[str, float],
        change: str,
        reason: str,
        *,
        new: bool = False,
        actor: str | None = None,
        base: int | None = None,
    ) -> Revision:
        """Write the next revision; with ``base``, only if ``base`` is still the current one."""
        # On a team server, what a deployment serves changes only by an approver's hand.
        require_role(self.project_id, "approver", f"change what deployment {name!r} serves")
        models = model_service(self.ws)
        versions = [models.get(r["model"]) for r in routes]  # each must resolve now
        routes = [
            # A route naming an alias keeps the version it named at this revision: what a
            # rollback to it serves, and what servers fall back to if the alias is deleted.
            {**r, "version": v.ref}
            if "@" in r["model"]
            else {k: x for k, x in r.items() if k != "version"}
            for r, v in zip(routes, versions, strict=True)
        ]
        policy = {"routes": routes, "key": key, "limits": limits}
        with self.ws.metadata.transaction(project_id=self.project_id, actor=actor) as uow:
            conn = uow.conn
            row = conn.execute(
                sa.select(deployments).where(
                    deployments.c.project_id == self.project_id, deployments.c.name == name
                )
            ).first()
            if new and row is not None:
                raise ConflictError(
                    f"Deployment {name!r} already exists.",
                    hint=f"Change what it serves: conveyor deploy canary {name} ... or "
                    f"conveyor deploy rollback {name}.",
                )
            if row is None:
                if not new:
                    self._deployment(conn, name)  # raises the helpful NotFoundError
                dep_id, number = ids.new_id(), 1
                conn.execute(
                    deployments.insert(),
                    [
                        {
                            "id": dep_id,
                            "project_id": self.project_id,
                            "name": name,
                            "latest_revision": 1,
                            "created_at": uow.now,
                        }
                    ],
                )
            else:
                if base is not None and row.latest_revision != base:
                    raise ConflictError(
                        f"Deployment {name!r} changed while this change was made (it is at "
                        f"revision {row.latest_revision} now, not {base}); nothing was written.",
                        hint=f"Look at it again: conveyor deploy status {name}",
                    )
                dep_id, number = row.id, row.latest_revision + 1
                # Compare-and-set: two concurrent changes cannot both make revision N.
                updated = conn.execute(
                    deployments.update()
                    .where(
                        deployments.c.id == dep_id,
                        deployments.c.latest_revision == row.latest_revision,
                    )
                    .values(latest_revision=number)
                )
                if updated.rowcount != 1:
                    raise ConflictError(
                        f"Deployment {name!r} changed while this change was made; try again."
                    )
            revision_id = ids.new_id()
            conn.execute(
                deployment_revisions.insert(),
                [
                    {
                        "id": revision_id,
                        "deployment_id": dep_id,
                        "revision": number,
                        "policy": policy,
                        "change": change,
                        "reason": reason,
                        "created_at": uow.now,
                        "created_by": actor or uow.actor,  # the caller, on a server
                    }
                ],
            )
            ref = ObjectRef(REVISION_KIND, revision_id)
            uow.audit(
                f"deployment.{change}",
                ref,
                after={"deployment": name, "revision": number, **policy, "reason": reason},
            )
            for version in versions:
                uow.link(ObjectRef(VERSION_KIND, version.id), ref, "deployed_in")
        return self.get(name, number)


_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"The deployment name {name!r} is not valid: use 1 to 100 lowercase letters, "
            "digits, '.', '_' or '-', starting with a letter or digit (it names log folders "
            "and Kubernetes objects)."
        )


def _same(a: str, b: str, ws: Workspace) -> bool:
    if a == b:
        return True
    models = model_service(ws)
    try:
        return models.get(a).id == models.get(b).id
    except NotFoundError:
        return False


def _with_candidate(current: Revision, model: str, share: float, role: str) -> list[dict[str, Any]]:
    primary = next((r for r in current.routes if r["role"] == "primary"), None)
    if primary is None:
        raise ConflictError(f"Deployment {current.deployment!r} has no primary route.")
    shadows = [dict(r) for r in current.routes if r["role"] == "shadow"]
    return [
        {"model": primary["model"], "weight": round(100.0 - share, 6), "role": "primary"},
        {"model": model, "weight": share, "role": role},
        *shadows,
    ]


def _limits(limits: dict[str, float] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (limits or {}).items():
        if key not in LIMIT_KEYS:
            raise InvalidArgumentError(
                f"Unknown canary limit {key!r}; known: {', '.join(LIMIT_KEYS)}."
            )
        if value is None:
            continue
        number = float(value)
        if not math.isfinite(number) or number <= 0 or (key == "max_error_rate" and number > 1):
            bound = " and at most 1 (a fraction)" if key == "max_error_rate" else ""
            raise InvalidArgumentError(f"{key} must be positive{bound}; got {value!r}.")
        out[key] = number
    return out


def _revision(name: str, row: Any) -> Revision:
    policy = row.policy
    return Revision(
        deployment=name,
        revision=row.revision,
        routes=tuple(policy["routes"]),
        key=policy.get("key"),
        limits=dict(policy.get("limits") or {}),
        change=row.change,
        reason=row.reason,
        created_at=row.created_at,
        created_by=row.created_by,
        id=row.id,
    )
