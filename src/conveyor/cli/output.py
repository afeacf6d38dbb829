"""How the CLI prints: one console, human sizes, one-line errors."""

from __future__ import annotations

from rich.console import Console

__all__ = ["console", "err_console", "human_bytes"]

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
