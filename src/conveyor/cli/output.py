"""How the CLI prints: one console, human sizes, one-line errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

from conveyor.core.errors import ConveyorError

__all__ = ["console", "debugging", "err_console", "errors_exit", "human_bytes", "print_error"]

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def human_bytes(n: int) -> str:
    """Format a byte count: ``1536`` -> ``'1.5 KiB'``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def debugging() -> bool:
    """Whether the user asked for tracebacks (``--debug`` or ``CONVEYOR_DEBUG=1``)."""
    return "--debug" in sys.argv[1:] or os.environ.get("CONVEYOR_DEBUG") == "1"


def print_error(e: Exception) -> None:
    """Print ``e`` as one line on stderr: a Conveyor error as its message (and hint),
    anything else as an internal error to report."""
    if isinstance(e, ConveyorError):
        err_console.print(f"[red]error:[/red] {escape(str(e))}")
    else:
        err_console.print(
            f"[red]internal error:[/red] {escape(type(e).__name__)}: {escape(str(e))} "
            "(run again with --debug for the traceback, and please report it)"
        )


@contextmanager
def errors_exit(code: int) -> Iterator[None]:
    """End the command with exit status ``code`` when an error escapes the block, printed as
    the error boundary prints it (which exits 1).

    For commands whose exit status 1 has a meaning of its own, such as ``data validate``'s
    "a check failed": there an error (no such version, a bad schema file) must not pass for
    bad data. Usage errors already exit 2 (click's convention), before the command runs.
    """
    import click
    import typer

    try:
        yield
    except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException):
        raise  # exits the command chose, and usage errors, keep their status
    except Exception as e:
        if debugging():  # the traceback, and still the status that says "could not check"
            import traceback

            traceback.print_exc()
        else:
            print_error(e)
        raise typer.Exit(code) from e
