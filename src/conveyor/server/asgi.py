"""The application ``conveyor server`` runs (uvicorn imports it in each worker process)."""

from __future__ import annotations

import os

from conveyor.core.config import load_settings
from conveyor.server.app import create_app

app = create_app(
    load_settings(os.environ.get("CONVEYOR_SERVER_ROOT") or None),
    auth=os.environ.get("CONVEYOR_SERVER_AUTH", "1") != "0",
)
