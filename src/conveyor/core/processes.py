"""Whether a process that left something behind (a temporary folder, a lease) still runs."""

from __future__ import annotations

import os
import socket
import zlib

__all__ = ["alive", "host_tag"]


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's, or not a pid this system could have: leave it alone
    return True


def host_tag() -> str:
    """Eight hex digits naming this host, for names that must tell hosts apart (folders on
    a shared file system): a pid means something only on the host that gave it."""
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"
