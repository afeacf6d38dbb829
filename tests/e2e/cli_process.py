"""Running the `conveyor` command as a user does: a new process, no CONVEYOR_* settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def conveyor(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``env``: CONVEYOR_* settings to run with (a team server's, for remote mode)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
