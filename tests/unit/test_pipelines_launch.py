"""What a team server checks before it runs a caller's pipeline, and the logs it keeps."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conveyor.core.errors import InvalidArgumentError
from conveyor.pipelines import launch


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("/srv/flows.py:train", "not a file"),
        ("acme.py:train", "not a file"),
        ("acme.__main__:train", "no private module"),
        ("acme._private:train", "no private module"),
        ("acme.flows", "package.module:name"),
        ("other.flows:train", "not in a package this server runs pipelines from"),
        ("acmex.flows:train", "not in a package this server runs pipelines from"),
    ],
)
def test_only_installed_pipelines_of_allowed_packages_are_taken(
    reference: str, reason: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=reason):
        launch.check_installed(reference, ("acme",))


def test_an_allowed_package_and_its_modules_are_taken() -> None:
    launch.check_installed("acme:train", ("acme",))
    launch.check_installed("acme.flows.churn:train", ("acme",))


@pytest.mark.parametrize("executor", ["ray", "ray://203.0.113.9:10001", "local:17", "local:0"])
def test_a_launched_run_uses_only_the_hosts_processes(executor: str) -> None:
    with pytest.raises(InvalidArgumentError, match="inline, local or local:N"):
        launch.check_executor(executor, launch=True)
    for allowed in ("inline", "local", "local:16"):
        launch.check_executor(allowed, launch=True)


def test_launch_logs_older_than_the_retention_are_removed(tmp_path: Path) -> None:
    old, new = tmp_path / "old.log", tmp_path / "new.log"
    old.write_text("x")
    new.write_text("y")
    past = time.time() - (launch.LOG_DAYS + 1) * 86400
    os.utime(old, (past, past))
    launch._prune(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["new.log"]
