"""Shared fixtures: real services when they can be reached, skipped (or failed) otherwise."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

# The contract suites live in the package; let pytest explain their failed asserts.
pytest.register_assert_rewrite("conveyor.testing", "tests.suites")

REQUIRE_SERVICES = os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1"
POSTGRES_URI = os.environ.get(
    "CONVEYOR_TEST_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/test"
)


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when CONVEYOR_REQUIRE_SERVICES=1."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (CONVEYOR_REQUIRE_SERVICES=1, so this fails instead of skipping)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the developer's CONVEYOR_* settings and working directory out of every test."""
    for key in list(os.environ):
        if key.startswith("CONVEYOR_") and key not in (
            "CONVEYOR_REQUIRE_SERVICES",
            "CONVEYOR_TEST_POSTGRES_URI",
        ):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


# -- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """Ctrl-C handled as in a fresh interpreter (KeyboardInterrupt), for this process and
    the processes it starts, whatever the test runner inherited or another test's native
    code left (a SIGINT ignored at the OS level is inherited by children and survives
    exec); the previous handler is put back after."""
    import signal

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def postgres_admin_uri() -> str:
    """The PostgreSQL server for tests, checked once per session."""
    try:
        import psycopg
    except ImportError:
        unavailable("psycopg is not installed (pip install 'conveyor-mlops[postgres]')")
    plain = POSTGRES_URI.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(plain, connect_timeout=3):
            pass
    except psycopg.OperationalError as e:
        unavailable(f"PostgreSQL at {POSTGRES_URI} cannot be reached: {e}")
    return plain


@pytest.fixture
def postgres_uri(postgres_admin_uri: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"conveyor_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(postgres_admin_uri)  # the URI may name no database at all
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(postgres_admin_uri, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# -- S3 (moto's server mode, a real HTTP server on 127.0.0.1) --------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Start moto's S3 server on 127.0.0.1 for the session and stop it afterwards."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as e:
        unavailable(f"the S3 test server needs moto[server], boto3 and s3fs ({e.name})")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    unavailable(f"moto's S3 server did not start on {endpoint}")
                time.sleep(0.05)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on the test S3 server; credentials and endpoint set in the env."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    name = f"conveyor-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


# -- Ray (a local cluster of its own, in a temp dir of its own; never `ray stop`) -----------


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    try:
        import ray
    except ImportError:
        unavailable("Ray is not installed (pip install 'conveyor-mlops[ray]')")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            _temp_dir=temp,
            num_cpus=2,
            log_to_driver=False,
            configure_logging=False,
        )
        try:
            yield ray
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that takes a PostgreSQL database is marked ``postgres``, so that ``-m postgres``
    selects it and ``-m "not postgres"`` leaves it out, whether or not its file says so."""
    for item in items:
        if {"postgres_uri", "postgres_admin_uri"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)
