"""What a team server checks before it runs a caller's pipeline, and the logs it keeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def _pipes_hold(size: int) -> bool:
    """Whether this process may grow a pipe to hold ``size`` bytes (Linux, within the
    user's allowance)."""
    fcntl = pytest.importorskip("fcntl")
    if not hasattr(fcntl, "F_SETPIPE_SZ"):
        return False
    read, write = os.pipe()
    try:
        return fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, size) >= size
    except OSError:
        return False
    finally:
        os.close(read)
        os.close(write)


def test_a_run_gets_its_whole_job_when_its_starter_dies_at_once(tmp_path: Path) -> None:
    # A scheduler stopped a moment after it started a run: the run must still read its
    # whole job. This one (about 300 KB of params) is larger than a pipe holds by default.
    path = "p" * 300_000
    if not _pipes_hold(len(path) + 1000):
        pytest.skip("pipes cannot grow to hold the job here (not Linux, or over the allowance)")
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    starter = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from conveyor.pipelines import launch\n"
        "launch.start(Path(sys.argv[1]), project='p', actor='a', acting_as=None,\n"
        "             job={'run_id': 'r1', 'describe': 'flows.py:gated',\n"
        "                  'params': {'path': sys.stdin.read()}}, cwd=Path(sys.argv[2]))\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", starter, str(tmp_path), str(fixtures)],
        input=path.encode(),
        timeout=60,
    )
    assert done.returncode == 0
    log = tmp_path / ".conveyor" / "launches" / "r1.log"
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = log.read_text()
        if text.endswith("\n"):
            break
        time.sleep(0.05)
    described = json.loads(text.splitlines()[-1])
    assert described["name"] == "gated"
    assert described["params"]["path"] == path
