"""Traffic plans: which model versions a server runs, and which one answers each request.

A plan is plain data (``TrafficSpec``), resolved from a model reference or a deployment
revision; the server compares the spec it runs with the current one and reloads when they
differ. ``pick`` chooses the answering route: by weight at random, or, when the plan has a
``key`` (A/B tests), by a stable hash of that field's value, so one customer always sees the
same model. Shadow routes never answer; they get a copy of each request.

>>> spec = TrafficSpec("prod", 2, (RouteSpec("churn/3", "a", 90.0, "primary"),
...                                 RouteSpec("churn/4", "b", 10.0, "canary")))
>>> [r.ref for r in spec.answering], spec.shadows
(['churn/3', 'churn/4'], ())
>>> bucket("customer-42") == bucket("customer-42")
True
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ROLES", "RouteSpec", "TrafficSpec", "bucket", "pick"]

ROLES = ("primary", "canary", "ab", "shadow")


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One model version in a plan: its share of traffic (percent) and its role."""

    ref: str  # the version, "churn/3"
    version_id: str
    weight: float
    role: str = "primary"
    source: str = ""  # what the deployment named (e.g. "churn@champion"), for status

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "weight": self.weight,
            "role": self.role,
            "source": self.source or self.ref,
        }


@dataclass(frozen=True, slots=True)
class TrafficSpec:
    """What a server should run: routes, the A/B key, canary limits, the revision."""

    deployment: str
    revision: int | None
    routes: tuple[RouteSpec, ...]
    key: str | None = None
    limits: tuple[tuple[str, float], ...] = field(default=())

    @property
    def answering(self) -> list[RouteSpec]:
        return [r for r in self.routes if r.role != "shadow"]

    @property
    def shadows(self) -> tuple[RouteSpec, ...]:
        return tuple(r for r in self.routes if r.role == "shadow")

    @property
    def identity(self) -> tuple[Any, ...]:
        """Equal for two specs that need no reload between them."""
        return (
            self.revision,
            tuple((r.version_id, r.weight, r.role) for r in self.routes),
            self.key,
            self.limits,
        )

    @property
    def limit_map(self) -> dict[str, float]:
        return dict(self.limits)


def bucket(value: Any) -> float:
    """A stable number in [0, 100) for ``value``: the same value always lands in one bucket."""
    digest = hashlib.blake2b(str(value).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100


def pick(weights: list[float], key_value: Any = None) -> int:
    """Return the index of the route that answers: sticky by ``key_value`` when given."""
    if len(weights) == 1:
        return 0
    total = sum(weights)
    point = (bucket(key_value) if key_value is not None else random.random() * 100) * total / 100  # noqa: S311
    for i, weight in enumerate(weights):
        if point < weight:
            return i
        point -= weight
    return len(weights) - 1
