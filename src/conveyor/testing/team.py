"""A team server in a child process, for tests of remote mode (yours and Conveyor's own).

>>> # with TeamServer(tmp_path) as server:
>>> #     token = server.token_for("ana", project="churn", role="editor")
>>> #     env = server.client_env(token, project="churn")   # CONVEYOR_STORE_URI, ...
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["TeamServer"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TeamServer:
    """``conveyor server`` on 127.0.0.1 and a free port, over the stores of ``root``.

    ``env`` adds settings (``CONVEYOR_STORE_URI`` of a PostgreSQL database, ...). Starting
    waits (polling /healthz, up to ``timeout`` seconds) and reads the first administrator's
    token; leaving the block stops the process.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        env: dict[str, str] | None = None,
        workers: int = 1,
        timeout: float = 60.0,
        auth_attempts: int = 20,
        pipelines: str = "",
    ) -> None:
        self.root = Path(root)
        self.env = env or {}
        self.workers = workers
        self.timeout = timeout
        self.auth_attempts = auth_attempts  # token creations per minute, among others
        self.pipelines = pipelines  # packages of loop pipelines clients may name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.root / "server.log"

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env = {**base, **self.env}
        if not (self.root / "conveyor.toml").exists():
            subprocess.run(
                [sys.executable, "-m", "conveyor", "init", "--project", "default"],
                cwd=self.root,
                env=env,
                check=True,
                capture_output=True,
            )
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
                [
                    sys.executable,
                    "-m",
                    "conveyor",
                    "server",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                    "--log-level",
                    "warning",
                    "--auth-attempts",
                    str(self.auth_attempts),
                    "--pipelines",
                    self.pipelines,
                ],
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()
        for line in self._log.read_text().splitlines():
            if line.startswith("cvt_"):
                self.admin_token = line.strip()
        return self

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self._log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the server was not ready in {self.timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self._log.read_text() if self._log.exists() else ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- setting up users ------------------------------------------------------------------

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        """Call the API (as the administrator unless ``token``); return the JSON answer."""
        import httpx

        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        response = httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def token_for(self, user: str, *, project: str, role: str = "editor") -> str:
        """Create ``project`` and ``user`` if missing, grant the role, return a new token."""
        import httpx

        for path, body in (
            ("/api/v1/projects", {"name": project}),
            ("/api/v1/users", {"name": user}),
        ):
            try:
                self.api("POST", path, json=body)
            except httpx.HTTPStatusError as e:
                if e.response.status_code != 409:
                    raise
        self.api("PUT", f"/api/v1/projects/{project}/members/{user}", json={"role": role})
        return str(self.api("POST", "/api/v1/tokens", json={"user": user, "name": "test"})["token"])

    def client_env(self, token: str, *, project: str) -> dict[str, str]:
        """The settings that make the SDK and CLI work through this server."""
        return {
            "CONVEYOR_STORE_URI": self.url,
            "CONVEYOR_TOKEN": token,
            "CONVEYOR_PROJECT": project,
        }
