"""`conveyor ui` opens the project's own stores in the web UI on 127.0.0.1, no login."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import conveyor as cv

pytest.importorskip("jinja2", reason="the web UI needs jinja2 (conveyor-mlops[server])")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_conveyor_ui_serves_the_project_without_a_login(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text('project = "local"\n')
    ws = cv.init(tmp_path)
    with cv.start_run(experiment="first", name="hello"):
        cv.log_metric("auc", 0.8)
    ws.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        page = None
        while time.monotonic() < deadline:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/ui/p/local/runs", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.1)
        assert page is not None, "conveyor ui did not answer within 60 s"
        assert page.status_code == 200
        assert ">hello</a>" in page.text
        foreign = httpx.get(
            f"http://127.0.0.1:{port}/ui/p/local", headers={"Host": "evil.example"}, timeout=5
        )
        assert foreign.status_code == 403  # DNS rebinding: a page elsewhere cannot read it
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/ui/p/local" in err.decode()
