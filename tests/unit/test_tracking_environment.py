"""A run records where it ran: git commit, branch, dirty diff, command, packages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import conveyor as cv
from conveyor.tracking import environment

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / "train.py").write_text("print('v1')\n")
    git(tmp_path, "add", "train.py")
    git(tmp_path, "commit", "-q", "-m", "v1")
    return tmp_path


def test_a_clean_checkout_records_commit_and_branch(repo: Path) -> None:
    state = environment.git_state(repo)
    assert state is not None
    assert (state.commit, state.branch, state.dirty) == (
        git(repo, "rev-parse", "HEAD"),
        "main",
        False,
    )


def test_a_dirty_checkout_stores_the_diff_with_the_run(repo: Path) -> None:
    (repo / "train.py").write_text("print('v2, not committed')\n")
    environment.capture.cache_clear()
    ws = cv.init(repo, project="git")
    try:
        with cv.start_run(experiment="e") as run:
            pass
        got = cv.get_run(run.id)
        assert got.git_dirty is True
        assert got.git_commit == git(repo, "rev-parse", "HEAD")
        with ws.open_artifact(run.ref, "environment/git.diff") as f:
            assert "v2, not committed" in f.read().decode()
    finally:
        ws.close()
        environment.capture.cache_clear()


def test_installed_packages_are_stored_once_per_distinct_set(tmp_path: Path) -> None:
    ws = cv.init(tmp_path, project="env")
    try:
        with cv.start_run(experiment="e") as a:
            pass
        with cv.start_run(experiment="e") as b:
            pass
        digest = cv.get_run(a.id).environment_digest
        assert digest is not None
        assert digest == cv.get_run(b.id).environment_digest
        env_ref = cv.ObjectRef("environment", digest)
        (link,) = ws.list_artifacts(env_ref)
        with ws.open_artifact(env_ref, link.name) as f:
            assert "sqlalchemy==" in f.read().decode()
    finally:
        ws.close()
