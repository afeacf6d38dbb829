"""Registry records as JSON and back, whole (ids and info included), for the team server and
remote mode."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from conveyor.models.records import AliasMove, ModelVersion, PromotionRequest, RegisteredModel
from conveyor.models.signature import Signature

if TYPE_CHECKING:
    from conveyor.models.evaluation import Evaluation  # numpy and pandas: loaded when used

__all__ = [
    "evaluation_from_json",
    "model_from_json",
    "model_to_json",
    "move_from_json",
    "request_from_json",
    "version_from_json",
    "version_to_json",
]


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def version_to_json(v: ModelVersion) -> dict[str, Any]:
    return {
        "id": v.id,
        "name": v.name,
        "version": v.version,
        "ref": v.ref,
        "digest": v.digest,
        "flavor": v.flavor,
        "signature": v.signature.to_dict() if v.signature else None,
        "requirements": dict(v.requirements),
        "info": v.info,
        "run_id": v.run_id,
        "status": v.status,
        "description": v.description,
        "created_at": v.created_at.isoformat(),
        "created_by": v.created_by,
        "aliases": list(v.aliases),
    }


def version_from_json(d: dict[str, Any]) -> ModelVersion:
    return ModelVersion(
        id=d["id"],
        name=d["name"],
        version=int(d["version"]),
        digest=d["digest"],
        flavor=d["flavor"],
        signature=Signature.from_dict(d["signature"]) if d.get("signature") else None,
        requirements=dict(d.get("requirements") or {}),
        info=dict(d.get("info") or {}),
        run_id=d.get("run_id"),
        status=d["status"],
        description=d.get("description", ""),
        created_at=datetime.fromisoformat(d["created_at"]),
        created_by=d["created_by"],
        aliases=tuple(d.get("aliases") or ()),
    )


def model_to_json(m: RegisteredModel) -> dict[str, Any]:
    return {"id": m.id, **m.to_dict()}


def model_from_json(d: dict[str, Any]) -> RegisteredModel:
    return RegisteredModel(
        id=d["id"],
        name=d["name"],
        description=d.get("description", ""),
        latest_version=int(d["latest_version"]),
        created_at=datetime.fromisoformat(d["created_at"]),
        aliases={k: int(v) for k, v in (d.get("aliases") or {}).items()},
        protected_aliases=tuple(d.get("protected_aliases") or ()),
    )


def move_from_json(d: dict[str, Any]) -> AliasMove:
    at = _time(d["at"])
    assert at is not None
    return AliasMove(
        model=d["model"],
        alias=d["alias"],
        version=d.get("version"),
        previous=d.get("previous"),
        at=at,
        actor=d["actor"],
        request_id=d.get("request_id"),
    )


def evaluation_from_json(d: dict[str, Any]) -> Evaluation:
    from conveyor.models.evaluation import Evaluation

    return Evaluation(**{**d, "created_at": _time(d.get("created_at"))})


def request_from_json(d: dict[str, Any]) -> PromotionRequest:
    requested = _time(d["requested_at"])
    assert requested is not None
    return PromotionRequest(
        id=d["id"],
        model=d["model"],
        version=int(d["version"]),
        alias=d["alias"],
        status=d["status"],
        checks=list(d.get("checks") or []),
        requested_by=d["requested_by"],
        requested_at=requested,
        comment=d.get("comment", ""),
        decided_by=d.get("decided_by"),
        decided_at=_time(d.get("decided_at")),
        decision_comment=d.get("decision_comment", ""),
        deferred=bool(d.get("deferred")),
    )
