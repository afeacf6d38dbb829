"""Plain records the store hands back: references, projects, audit events, lineage edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conveyor.core.errors import InvalidArgumentError
from conveyor.core.names import validate_kind

__all__ = ["ArtifactLink", "AuditEvent", "LineageEdge", "LineageGraph", "ObjectRef", "Project"]


@dataclass(frozen=True, slots=True, order=True)
class ObjectRef:
    """A typed pointer to any object in the lineage graph, written ``kind:id``."""

    kind: str
    id: str

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not isinstance(self.id, str):
            raise InvalidArgumentError(
                "An object reference's kind and id are text; got "
                f"{type(self.kind).__name__} {self.kind!r} and {type(self.id).__name__} "
                f"{self.id!r}.",
                hint="Write the id as text: ObjectRef('run', '5').",
            )
        validate_kind(self.kind)
        if not self.id or len(self.id) > 200:
            raise InvalidArgumentError(
                f"The id of a {self.kind} reference must be 1 to 200 characters; got {self.id!r}."
            )

    @classmethod
    def parse(cls, text: str) -> ObjectRef:
        """Parse ``kind:id``, e.g. ``run:01J9...`` or ``dataset_version:customers@3``."""
        if not isinstance(text, str):
            raise InvalidArgumentError(
                f"Expected an object reference (KIND:ID text or an ObjectRef); got "
                f"{type(text).__name__} {text!r}."
            )
        kind, sep, ident = text.partition(":")
        if not sep or not kind or not ident:
            raise InvalidArgumentError(
                f"Expected an object reference like 'run:01J9ZQ...' (KIND:ID); got {text!r}."
            )
        return cls(kind.strip(), ident.strip())

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def of(cls, ref: ObjectRef | str) -> ObjectRef:
        """``ref`` as an ObjectRef: itself, or parsed from ``KIND:ID`` text."""
        return ref if isinstance(ref, ObjectRef) else cls.parse(ref)


@dataclass(frozen=True, slots=True)
class Project:
    """A project: the unit that owns every other object."""

    id: str
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One append-only audit record: who did what to which object, with before and after."""

    id: str
    at: datetime
    actor: str
    action: str
    object: ObjectRef
    project_id: str | None = None
    before: Any = None
    after: Any = None
    token_id: str | None = None  # the API token of a team-server request
    source: str | None = None  # the client address of a team-server request


@dataclass(frozen=True, slots=True)
class LineageEdge:
    """Data or control flowed from ``src`` to ``dst`` (``relation`` says how)."""

    src: ObjectRef
    dst: ObjectRef
    relation: str
    depth: int = 1


@dataclass(frozen=True, slots=True)
class LineageGraph:
    """The edges reached from ``root`` in one direction, each at its shortest depth."""

    root: ObjectRef
    direction: str
    edges: list[LineageEdge] = field(default_factory=list)

    def nodes(self) -> set[ObjectRef]:
        """Return every object reached, the root excluded."""
        side = (lambda e: e.src) if self.direction == "upstream" else (lambda e: e.dst)
        return {side(e) for e in self.edges} - {self.root}

    def children(self, ref: ObjectRef) -> list[LineageEdge]:
        """Return the edges that lead one step further away from the root starting at ``ref``."""
        if self.direction == "upstream":
            return sorted((e for e in self.edges if e.dst == ref), key=lambda e: e.src)
        return sorted((e for e in self.edges if e.src == ref), key=lambda e: e.dst)


@dataclass(frozen=True, slots=True)
class ArtifactLink:
    """A name an owner gives to stored content (a run's ``plots/roc.png``)."""

    owner: ObjectRef
    name: str
    digest: str
    size: int
    media_type: str
    created_at: datetime
