"""The command class every ``conveyor`` command is built with: its help's usage line and
argument names."""

from __future__ import annotations

from typing import Any

import typer
from typer._click.types import StringParamType  # the click Typer ships inside itself
from typer.core import TyperArgument, TyperCommand

__all__ = ["ConveyorCommand", "use_conveyor_commands"]


class _Text(StringParamType):
    """A text parameter whose help shows no ``<str>``: an argument is named by its metavar
    (NAME), an option's value is shown as TEXT."""

    def get_metavar(self, param: Any, ctx: Any) -> str:
        return "" if isinstance(param, TyperArgument) else "TEXT"


class ConveyorCommand(TyperCommand):
    """A Typer command whose usage line reads ``NAME PATH [DEST]``.

    Typer's own help wrote ``{name} {path}`` in the usage line and ``<str>`` beside every
    text argument and option.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument) and param.metavar is None and param.name:
                param.metavar = param.name.upper()
            if type(param.type) is StringParamType:
                param.type = _Text()

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


def use_conveyor_commands(typer_app: typer.Typer) -> None:
    """Build every command of ``typer_app`` (and of its groups) as a :class:`ConveyorCommand`,
    unless it names a class of its own."""
    for info in typer_app.registered_commands:
        if info.cls in (None, TyperCommand):  # (Typer's default, given by its decorator)
            info.cls = ConveyorCommand
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            use_conveyor_commands(group.typer_instance)
