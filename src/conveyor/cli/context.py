"""What every command needs: the settings and workspace of the project it runs in."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

from conveyor.core.config import CONFIG_FILE, STATE_DIR, Settings, find_root, load_settings
from conveyor.core.errors import NotFoundError

if TYPE_CHECKING:
    from conveyor.store.workspace import Workspace

__all__ = ["settings_for", "workspace_for"]


def settings_for(ctx: typer.Context) -> Settings:
    """Resolve settings for the project this command runs in; refuse to invent one.

    Commands other than ``init`` need an existing project (conveyor.toml or .conveyor/ here
    or above) unless the store is named explicitly, so running one in the wrong folder does
    not leave a new .conveyor/ behind.
    """
    root = ctx.find_root().obj or find_root()
    given = ctx.find_root().obj is not None or bool(os.environ.get("CONVEYOR_ROOT"))
    explicit = os.environ.get("CONVEYOR_STORE_URI") or (root / CONFIG_FILE).is_file()
    if not explicit and not (root / STATE_DIR).is_dir():
        where = f"{root}" if given else f"{root} or the folders above it"
        raise NotFoundError(
            f"No Conveyor project in {where}.",
            hint="Run 'conveyor init' in your project folder, or pass --root PATH.",
        )
    return load_settings(root)


def workspace_for(ctx: typer.Context) -> Workspace:
    """Return the workspace of the project this command runs in (stores open on first use)."""
    from conveyor.store.workspace import Workspace

    ws = Workspace(settings_for(ctx))
    ws.on_new_project = _say_new_project
    return ws


def _say_new_project(name: str, others: list[str]) -> None:
    from rich.markup import escape

    from conveyor.cli.output import err_console

    shown = ", ".join(others[:10]) + (f" and {len(others) - 10} more" if len(others) > 10 else "")
    err_console.print(
        f"[yellow]note:[/yellow] created project {escape(repr(name))}; this store's other "
        f"projects: {escape(shown)}. If you meant one of them, set CONVEYOR_PROJECT or project "
        "in conveyor.toml."
    )
