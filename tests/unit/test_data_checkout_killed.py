"""A checkout killed halfway leaves no hidden folder behind for long: the next one removes it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import conveyor as cv

_KILLED_CHECKOUT = textwrap.dedent(
    """
    import os, signal, sys
    import conveyor as cv
    from conveyor.data.service import data_service

    class DiesHalfway:
        def start(self, description, files, size): pass
        def advance(self, files, size):
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or kill -9 would
        def stop(self): pass

    ws = cv.init(sys.argv[1])
    data_service(ws).checkout("d@1", sys.argv[2], progress=DiesHalfway())
    """
)


def _killed_checkout(root: Path, dest: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_CHECKOUT, str(root), str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -9, done.stderr


def test_the_next_checkout_removes_what_a_killed_one_left(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"f{i}.bin").write_bytes(os.urandom(4096))
    cv.init(tmp_path / "p")
    cv.data.add("d", data)
    into = tmp_path / "into"
    into.mkdir()  # an existing folder: the partial copy is written inside it
    _killed_checkout(tmp_path / "p", into)
    _killed_checkout(tmp_path / "p", tmp_path / "new")  # a new one: written beside it
    left = [p.name for p in (*into.iterdir(), *tmp_path.iterdir()) if p.name.endswith(".part")]
    assert len(left) == 2  # what a killed checkout leaves, hidden

    cv.data.checkout("d@1", into)  # not refused as "not empty": nothing else is there
    cv.data.checkout("d@1", tmp_path / "new")
    assert sorted(p.name for p in into.iterdir()) == ["f0.bin", "f1.bin", "f2.bin"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_a_checkout_still_running_is_left_alone(tmp_path: Path) -> None:
    from conveyor.core import ids
    from conveyor.core.processes import host_tag

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(b"a")
    cv.init(tmp_path / "p")
    cv.data.add("d", data)
    into = tmp_path / "into"
    running = into / f".into.{host_tag()}-{os.getpid()}-{ids.new_id()}.part"  # this process's
    running.mkdir(parents=True)
    other_host = into / f".into.00000000-{os.getpid()}-{ids.new_id()}.part"
    other_host.mkdir()
    cv.data.checkout("d@1", into, force=True)
    assert running.is_dir()
    assert other_host.is_dir()
    assert (into / "a.bin").read_bytes() == b"a"


def test_materializing_again_removes_what_a_killed_materialization_left(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(os.urandom(4096))
    ws = cv.init(tmp_path / "p")
    version = cv.data.add("d", data)
    script = _KILLED_CHECKOUT.replace(
        'data_service(ws).checkout("d@1", sys.argv[2], progress=DiesHalfway())',
        'data_service(ws).path("d@1", progress=DiesHalfway())',
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "p"), "-"], timeout=120)
    assert done.returncode == -9
    cache = ws.settings.state_dir / "cache" / "datasets"
    assert [p for p in cache.iterdir() if p.name.endswith(".part")]  # left by the killed one
    assert (cv.data.path("d@1") / "a.bin").read_bytes() == (data / "a.bin").read_bytes()
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [version.digest]
