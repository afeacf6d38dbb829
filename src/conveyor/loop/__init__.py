"""The closed loop: continuous-training policies (triggers, gate, approval, canary rollout).

>>> import conveyor as cv
>>> from conveyor.loop import Policy, OnDrift, Gate, Canary
>>> cv.loop.apply(Policy(name="churn-ct", deployment="prod",           # doctest: +SKIP
...     pipeline="examples.churn.pipeline:train", triggers=[OnDrift("prod-watch")],
...     gate=Gate(data="customers@latest"), rollout=Canary(steps=[10, 50, 100], hold="10m")))
>>> cv.loop.tick()                                                     # doctest: +SKIP

See docs/loop.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.loop.policy import (
    Canary,
    Gate,
    OnAlert,
    OnDrift,
    OnMetric,
    OnNewData,
    Policy,
    Schedule,
)

if TYPE_CHECKING:
    from conveyor.loop.service import Execution, LoopService
    from conveyor.store.workspace import Workspace

__all__ = [
    "Canary",
    "Gate",
    "OnAlert",
    "OnDrift",
    "OnMetric",
    "OnNewData",
    "Policy",
    "Schedule",
    "apply",
    "events",
    "executions",
    "get",
    "list",
    "pause",
    "resume",
    "run",
    "status",
    "tick",
    "trigger",
]

_list = list


def _svc(workspace: Workspace | None) -> LoopService:
    from conveyor.loop.service import loop_service

    return loop_service(workspace)


def apply(policy: Policy, *, workspace: Workspace | None = None) -> dict[str, Any]:
    """Create or update a policy (checked now: deployment, monitors, datasets, pipeline)."""
    return _svc(workspace).apply(policy)


def get(name: str, *, workspace: Workspace | None = None) -> dict[str, Any]:
    """The stored policy ``name``."""
    return _svc(workspace).get(name)


def list(*, workspace: Workspace | None = None) -> _list[dict[str, Any]]:
    """Every policy of the project."""
    return _svc(workspace).list()


def status(name: str, *, workspace: Workspace | None = None) -> dict[str, Any]:
    """The policy with its execution in flight, its last decision and its next schedule."""
    return _svc(workspace).status(name)


def executions(
    name: str | None = None, *, limit: int = 50, workspace: Workspace | None = None
) -> _list[Execution]:
    """Executions (of policy ``name``), newest first."""
    return _svc(workspace).executions(name, limit=limit)


def events(name: str, *, limit: int = 100, workspace: Workspace | None = None) -> _list[Any]:
    """A policy's events (triggers, decisions with reasons), oldest first."""
    return _svc(workspace).events(name, limit=limit)


def pause(name: str, *, workspace: Workspace | None = None) -> dict[str, Any]:
    """Stop acting on triggers (an execution in flight finishes)."""
    return _svc(workspace).pause(name, True)


def resume(name: str, *, workspace: Workspace | None = None) -> dict[str, Any]:
    """Act on triggers again (from now on)."""
    return _svc(workspace).pause(name, False)


def trigger(name: str, reason: str = "", *, workspace: Workspace | None = None) -> Execution:
    """Start an execution now, whatever the triggers and the cooldown say."""
    return _svc(workspace).trigger(name, reason)


def tick(*, workspace: Workspace | None = None, say: Any = None) -> _list[Execution]:
    """One pass of the controller: fire triggers, advance every execution in flight."""
    from conveyor.loop.controller import LoopController

    controller = LoopController(workspace, say=say)
    try:
        return controller.tick()
    finally:
        controller.release()


def run(*, poll: float = 5.0, workspace: Workspace | None = None, say: Any = None) -> None:
    """Run the controller until interrupted, one pass every ``poll`` seconds."""
    from conveyor.loop.controller import LoopController

    LoopController(workspace, say=say).run_forever(poll=poll)
