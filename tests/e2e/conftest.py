"""What the end-to-end tests share: a team server per module, and the two modes a user works
in, embedded (``./.conveyor``) and remote (a team server), so the same tests run in both."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from conveyor.testing.team import TeamServer


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    pytest.importorskip("fastapi", reason="the team server needs conveyor-mlops[server]")
    # The tests of a module make a user and a token or two each: more than the default
    # 20 a minute from one address.
    with TeamServer(tmp_path_factory.mktemp("server"), auth_attempts=1000) as server:
        yield server


def remote_users(
    server: TeamServer, project: str, roles: dict[str, str]
) -> dict[str, dict[str, str]]:
    """The settings of each user (name -> role) of a new ``project`` on ``server``: what makes
    the SDK and CLI work through it as that user."""
    project = f"{project}-{uuid.uuid4().hex[:8]}"
    return {
        user: server.client_env(server.token_for(user, project=project, role=role), project=project)
        for user, role in roles.items()
    }


def act_remotely(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    project: str,
    roles: dict[str, str],
) -> dict[str, dict[str, str]]:
    """Make this test's processes work through the module's team server, as the first user
    of ``roles`` (name -> role) in a new ``project``; returns every user's settings."""
    users = remote_users(request.getfixturevalue("team_server"), project, roles)
    for key, value in users[next(iter(roles))].items():
        monkeypatch.setenv(key, value)
    return users
