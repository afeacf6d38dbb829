"""Plain records of the model registry: documents, versions, aliases, promotion requests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conveyor.core.errors import IntegrityError
from conveyor.models.signature import Signature

__all__ = [
    "AliasMove",
    "ModelDocument",
    "ModelVersion",
    "PromotionRequest",
    "RegisteredModel",
]

DOCUMENT_FORMAT = "conveyor.model/1"


@dataclass(frozen=True, slots=True)
class ModelDocument:
    """What a model version is: its flavor, its files (by digest) and how to call it.

    Stored as canonical JSON; the sha256 of those bytes is the version's digest, so checking
    the document and then each file against it proves nothing was changed since logging.
    """

    flavor: str
    files: dict[str, tuple[str, int]]  # name -> (sha256, size)
    info: dict[str, Any]
    requirements: dict[str, str]
    signature: dict[str, Any] | None = None
    input_example: tuple[str, int] | None = None  # Parquet, by (sha256, size)

    def encode(self) -> bytes:
        doc = {
            "format": DOCUMENT_FORMAT,
            "flavor": self.flavor,
            "files": {n: {"digest": d, "size": s} for n, (d, s) in sorted(self.files.items())},
            "info": self.info,
            "requirements": self.requirements,
            "signature": self.signature,
            "input_example": (
                {"digest": self.input_example[0], "size": self.input_example[1]}
                if self.input_example
                else None
            ),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()

    @classmethod
    def decode(cls, data: bytes) -> ModelDocument:
        try:
            doc = json.loads(data)
            if doc.get("format") != DOCUMENT_FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            example = doc.get("input_example")
            return cls(
                flavor=doc["flavor"],
                files={n: (f["digest"], int(f["size"])) for n, f in doc["files"].items()},
                info=doc["info"],
                requirements=doc["requirements"],
                signature=doc.get("signature"),
                input_example=(example["digest"], int(example["size"])) if example else None,
            )
        except (ValueError, KeyError, TypeError) as e:
            raise IntegrityError(f"A stored model document cannot be read: {e}.") from e


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A named model: its versions count up from 1."""

    id: str
    name: str
    description: str
    latest_version: int
    created_at: datetime
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> version number
    protected_aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "latest_version": self.latest_version,
            "aliases": dict(self.aliases),
            "protected_aliases": list(self.protected_aliases),
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version of a model."""

    id: str
    name: str
    version: int
    digest: str
    flavor: str
    signature: Signature | None
    requirements: dict[str, str]
    info: dict[str, Any]
    run_id: str | None
    status: str
    description: str
    created_at: datetime
    created_by: str
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """The reference that names this version: ``name/version``."""
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "flavor": self.flavor,
            "aliases": list(self.aliases),
            "run_id": self.run_id,
            "status": self.status,
            "description": self.description,
            "signature": self.signature.to_dict() if self.signature else None,
            "requirements": dict(self.requirements),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


@dataclass(frozen=True, slots=True)
class AliasMove:
    """One move of an alias: from ``previous`` to ``version`` (None: the alias was removed)."""

    model: str
    alias: str
    version: int | None
    previous: int | None
    at: datetime
    actor: str
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "alias": self.alias,
            "version": self.version,
            "previous": self.previous,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "request_id": self.request_id,
        }


@dataclass(frozen=True, slots=True)
class PromotionRequest:
    """A request to point a protected alias at a version, with its checks and decision."""

    id: str
    model: str
    version: int
    alias: str
    status: str  # pending, approved, rejected; applied (a deferred one, used), withdrawn
    checks: list[dict[str, Any]]
    requested_by: str
    requested_at: datetime
    comment: str
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_comment: str = ""
    deferred: bool = False  # approving does not move the alias; the requester moves it later

    @property
    def checks_passed(self) -> bool:
        """True when no automatic check failed (skipped checks do not count)."""
        return all(c["status"] != "failed" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "alias": self.alias,
            "status": self.status,
            "checks": self.checks,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at.isoformat(),
            "comment": self.comment,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "decision_comment": self.decision_comment,
            "deferred": self.deferred,
        }
