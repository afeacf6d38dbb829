"""``conveyor loop``: continuous-training policies and their controller."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.context import workspace_for
from conveyor.cli.output import console

loop_app = typer.Typer(
    help="The closed loop: policies that retrain, gate, approve and roll out models when a "
    "trigger fires (drift, a metric, new data, a schedule), and the controller that runs them.",
    no_args_is_help=True,
)

_COLOURS = {
    "promoted": "green",
    "rejected": "yellow",
    "rolled_back": "yellow",
    "failed": "red",
}


def _service(ctx: typer.Context) -> tuple[Any, Any]:
    from conveyor.loop.service import loop_service

    ws = workspace_for(ctx)
    return ws, loop_service(ws)


def _state(state: str) -> str:
    colour = _COLOURS.get(state)
    return f"[{colour}]{state}[/{colour}]" if colour else state


@loop_app.command("apply")
def apply(
    ctx: typer.Context,
    reference: Annotated[
        str,
        typer.Argument(help="MODULE:POLICY or FILE.py:POLICY: a conveyor.loop.Policy object."),
    ],
) -> None:
    """Create or update a policy defined in a Python module.

    Checked now: the deployment, monitors, datasets and pipeline it names must exist.
    """
    from conveyor.core.errors import InvalidArgumentError, NotFoundError
    from conveyor.core.modules import import_module_or_file
    from conveyor.loop.policy import Policy

    module_name, sep, attr = reference.rpartition(":")
    if not sep or not module_name:
        raise InvalidArgumentError(
            f"A policy reference is MODULE:POLICY or FILE.py:POLICY; got {reference!r}."
        )
    found = getattr(import_module_or_file(module_name), attr, None)
    if not isinstance(found, Policy):
        raise NotFoundError(f"{reference} is not a conveyor.loop.Policy.")
    ws, svc = _service(ctx)
    with ws:
        policy = svc.apply(found)
        where = " on the server's host" if ws.remote is not None else ""
    console.print(
        f"Policy {escape(policy['name'])} applied for deployment {escape(policy['deployment'])}. "
        f"Run the controller{where}: conveyor loop run"
    )


@loop_app.command("run")
def run(
    ctx: typer.Context,
    poll: Annotated[float, typer.Option(help="Seconds between passes.")] = 5.0,
) -> None:
    """Run the controller until Ctrl-C: fire triggers, move executions along, narrate."""
    from conveyor.loop.controller import LoopController

    ws = workspace_for(ctx)
    with ws:
        controller = LoopController(ws, say=lambda m: console.print(escape(m)))
        console.print(f"Loop controller {escape(controller.holder)}: a pass every {poll:g} s.")
        try:
            controller.run_forever(poll=poll)
        except KeyboardInterrupt:
            console.print("Stopped.")


@loop_app.command("tick")
def tick(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the executions moved.")] = False,
) -> None:
    """One pass of the controller (for cron or a Kubernetes CronJob)."""
    from conveyor.loop.controller import LoopController

    ws = workspace_for(ctx)
    with ws:
        say = (lambda m: None) if as_json else (lambda m: console.print(escape(m)))
        controller = LoopController(ws, say=say)
        try:
            moved = controller.tick()
        finally:
            controller.release()  # one pass: the next one (cron) need not wait for the lease
    if as_json:
        console.print_json(json.dumps([e.to_dict() for e in moved], default=str))
    elif not controller.holds_lease:
        console.print(
            "Another controller holds the loop's lease (a `conveyor loop run` somewhere?); "
            "this pass did nothing."
        )
    elif not moved:
        console.print("Nothing to do.")


@loop_app.command("status")
def status(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="A policy (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each policy's current state, last decision and next scheduled fire."""
    ws, svc = _service(ctx)
    with ws:
        names = [name] if name else [p["name"] for p in svc.list()]
        found = [svc.status(n) for n in names]
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    if not found:
        console.print("No policies yet: cv.loop.apply(Policy(...)) or conveyor loop apply")
        return
    table = Table("policy", "deployment", "state", "now", "last decision", "next schedule")
    for s in found:
        active, last = s["active"], s["last"]
        now = (
            f"{_state(active['state'])} ({escape(active['candidate'] or 'training')})"
            if active
            else ("paused" if s["paused"] else "idle")
        )
        decided = f"{_state(last['state'])}: {escape(last['reason'][:80])}" if last else "none yet"
        table.add_row(
            escape(s["name"]),
            escape(s["deployment"]),
            "paused" if s["paused"] else "active",
            now,
            decided,
            escape(s["next_schedule"] or ""),
        )
    console.print(table)


@loop_app.command("history")
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The policy.")],
    limit: Annotated[int, typer.Option(help="How many events.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A policy's events, oldest first, each with its reason.

    Triggers (also those ignored, and why), state changes and decisions.
    """
    ws, svc = _service(ctx)
    with ws:
        events = svc.events(name, limit=limit)
    if as_json:
        console.print_json(json.dumps(events, default=str))
        return
    table = Table("at (UTC)", "execution", "event", "why")
    for e in events:
        table.add_row(
            f"{e['at']:%Y-%m-%d %H:%M:%S}",
            escape((e["execution"] or "")[-6:].lower()),
            _state(e["kind"]),
            escape(e["message"]),
        )
    console.print(table)


@loop_app.command("pause")
def pause(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The policy.")]) -> None:
    """Stop acting on triggers (an execution in flight finishes)."""
    ws, svc = _service(ctx)
    with ws:
        svc.pause(name, True)
    console.print(f"Policy {escape(name)} paused.")


@loop_app.command("resume")
def resume(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The policy.")]) -> None:
    """Act on triggers again, from now on."""
    ws, svc = _service(ctx)
    with ws:
        svc.pause(name, False)
    console.print(f"Policy {escape(name)} resumed.")


@loop_app.command("trigger")
def trigger(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The policy.")],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
) -> None:
    """Start an execution now (the controller's next pass picks it up)."""
    ws, svc = _service(ctx)
    with ws:
        execution = svc.trigger(name, reason)
    console.print(
        f"Execution {escape(execution.id)} of {escape(name)} triggered; "
        "the next pass (conveyor loop tick, or a running conveyor loop run) takes it on."
    )
