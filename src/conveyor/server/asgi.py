"""The application ``conveyor server`` runs (uvicorn imports it in each worker process)."""

from __future__ import annotations

import os

from conveyor.core.config import load_settings
from conveyor.server.app import create_app

# Without authentication the app itself answers only requests from this machine, however
# it was started (conveyor server --no-auth also binds only 127.0.0.1).
app = create_app(
    load_settings(os.environ.get("CONVEYOR_SERVER_ROOT") or None),
    auth=os.environ.get("CONVEYOR_SERVER_AUTH", "1") != "0",
    max_artifact_bytes=int(os.environ.get("CONVEYOR_SERVER_MAX_ARTIFACT_MB", "51200")) << 20,
    auth_attempts=int(os.environ.get("CONVEYOR_SERVER_AUTH_ATTEMPTS", "20")),
    pipelines=[p for p in os.environ.get("CONVEYOR_SERVER_PIPELINES", "").split(",") if p],
)
