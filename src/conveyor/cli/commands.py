"""The command class every ``conveyor`` command is built with: its help's usage line and
argument names, and what Ctrl-C prints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand

from conveyor.cli.output import err_console

__all__ = [
    "INTERRUPTED_EXIT",
    "ConveyorCommand",
    "RunsUntilStopped",
    "interrupted_leaves",
    "use_conveyor_commands",
]

#: The exit status of a command stopped by Ctrl-C: 128 + SIGINT, as shells report it.
INTERRUPTED_EXIT = 130


def _text_metavar(self: Any, param: Any, ctx: Any = None) -> str:
    # (ctx: passed since click 8.2, not before)
    return "" if isinstance(param, TyperArgument) else "TEXT"


_PLAIN: dict[type, type] = {}


def _plain_text(text_type: type) -> type:
    """``text_type`` (the class of Typer's text parameters) with help that shows no
    ``<str>``: an argument is named by its metavar (NAME), an option's value is TEXT.

    Made from the class a parameter has, not imported: that class lives in a private module
    that differs between the Typer versions allowed (click's own, or the click inside Typer).
    """
    if getattr(text_type, "get_metavar", None) is _text_metavar:
        return text_type
    if text_type not in _PLAIN:
        _PLAIN[text_type] = type("PlainText", (text_type,), {"get_metavar": _text_metavar})
    return _PLAIN[text_type]


class ConveyorCommand(TyperCommand):
    """A Typer command whose usage line reads ``NAME PATH [DEST]`` and which says so when
    Ctrl-C stops it (exit status 130).

    Typer's own help wrote ``{name} {path}`` in the usage line and ``<str>`` beside every
    text argument and option.
    """

    #: Whether Ctrl-C prints 'Interrupted.' (see :class:`RunsUntilStopped`).
    says_interrupted = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument) and param.metavar is None and param.name:
                param.metavar = param.name.upper()
            if getattr(param.type, "name", None) in ("str", "text"):  # Typer's click; click
                param.type = _plain_text(type(param.type))()

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                piece = (param.metavar or param.name or "").upper()
                piece += "..." if param.nargs != 1 else ""
                pieces.append(piece if param.required else f"[{piece}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            if not self.says_interrupted:
                raise typer.Exit(INTERRUPTED_EXIT) from e
            # Typer turns it into exit 130 and prints nothing: the user is left to guess
            # whether the command stopped and what it left behind.
            note = f": {e.args[0]}" if e.args else ""
            err_console.print(f"Interrupted{note}.", markup=False)
            raise typer.Exit(INTERRUPTED_EXIT) from e


class RunsUntilStopped(ConveyorCommand):
    """A command that runs until Ctrl-C (a server, the scheduler): that is how it is meant to
    end, so it ends with exit status 130 and no 'Interrupted.' after its own 'Ctrl+C stops'."""

    says_interrupted = False


@contextmanager
def interrupted_leaves(state: str) -> Iterator[None]:
    """Tell the user, should Ctrl-C stop the block, what ``state`` it leaves (e.g. "no
    version was added"), in the line that says the command was interrupted."""
    try:
        yield
    except KeyboardInterrupt as e:
        raise KeyboardInterrupt(state) from e


def use_conveyor_commands(typer_app: typer.Typer) -> None:
    """Build every command of ``typer_app`` (and of its groups) as a :class:`ConveyorCommand`,
    unless it names a class of its own."""
    for info in typer_app.registered_commands:
        if info.cls in (None, TyperCommand):  # (Typer's default, given by its decorator)
            info.cls = ConveyorCommand
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            use_conveyor_commands(group.typer_instance)
