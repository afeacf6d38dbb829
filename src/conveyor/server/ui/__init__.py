"""The web UI of the team server: pages rendered on the server (Jinja2) over the same service
calls as the REST API, with charts drawn as inline SVG and a small script of our own for the
buttons that change things (they call the REST API with the session's CSRF token)."""

from __future__ import annotations

from conveyor.server.ui.pages import STATIC, router

__all__ = ["STATIC", "router"]
