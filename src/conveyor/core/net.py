"""Checks on the addresses servers listen on."""

from __future__ import annotations

import socket

from conveyor.core.errors import InvalidArgumentError

__all__ = ["check_port_free"]


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on, before a server loads or creates anything
    (uvicorn would start, then exit with its own message)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise InvalidArgumentError(
                f"Cannot listen on {host}:{port}: {e.strerror or e}.",
                hint="Another process is using the port: stop it, or pass --port with another.",
            ) from None
