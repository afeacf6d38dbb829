"""The command line as a user runs it, in a fresh folder, one process per command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.store.metadata.migrate import HEAD, REVISIONS
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace

FIXTURE = Path(__file__).parents[1] / "fixtures" / "store_rev0001.db"


def conveyor(cwd: Path, *args: str, env: dict[str, str] | None = None, ok: bool = True):  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    conveyor(tmp_path, "init", "--project", "churn")
    return tmp_path


def test_init_creates_the_project_and_is_idempotent(tmp_path: Path) -> None:
    first = conveyor(tmp_path, "init", "--project", "churn")
    assert "created" in first.stdout
    assert (tmp_path / "conveyor.toml").read_text().count('project = "churn"') == 1
    assert (tmp_path / ".conveyor" / "conveyor.db").is_file()
    again = conveyor(tmp_path, "init")
    assert "already initialized" in again.stdout


def test_init_with_a_bad_name_writes_nothing_and_a_folder_name_is_made_valid(
    tmp_path: Path,
) -> None:
    bad = conveyor(tmp_path, "init", "--project", "bad name", "--ci", "gitlab", ok=False)
    assert bad.returncode == 1
    assert "The project name 'bad name' is not valid" in bad.stderr
    assert list(tmp_path.iterdir()) == []  # no conveyor.toml, no .conveyor, no workflow
    cafe = tmp_path / "café"
    cafe.mkdir()
    made = conveyor(cafe, "init")
    assert made.returncode == 0, made.stderr
    assert 'project = "cafe"' in (cafe / "conveyor.toml").read_text()
    assert conveyor(cafe, "info").returncode == 0


def test_version_prints_the_version_and_help_still_lists_the_commands(
    tmp_path: Path,
) -> None:
    from conveyor import __version__

    version = conveyor(tmp_path, "--version")
    assert version.stdout.strip() == f"conveyor {__version__}"
    listed = conveyor(tmp_path, "--help").stdout
    assert all(f" {name} " in listed for name in ("data", "models", "deploy", "monitor"))


def test_info_reports_config_revision_and_counts(project: Path) -> None:
    sub = project / "src"
    sub.mkdir()
    info = json.loads(conveyor(sub, "info", "--json").stdout)
    assert info["remote_uri"] is None
    assert "remote_uri" in conveyor(sub, "info").stdout
    info = json.loads(
        conveyor(sub, "info", "--json", env={"CONVEYOR_REMOTE_URI": "s3://team/data"}).stdout
    )
    assert info["remote_uri"] == "s3://team/data"
    assert info["project"] == "churn"
    assert info["root"] == str(project.resolve())
    assert info["revision"] == info["head"] == HEAD
    assert info["counts"]["projects"] == 1
    hooked = conveyor(
        sub, "info", "--json", env={"CONVEYOR_WEBHOOKS": "https://hooks.example:8443/T0/s3cret"}
    )
    settings = json.loads(hooked.stdout)
    assert settings["webhooks"] == "https://hooks.example:8443"  # not the secret in its path
    assert settings["trust_pickled_models"] is False
    assert settings["online_uri"].endswith("online.db")


def test_lineage_is_drawn_as_a_tree(project: Path) -> None:
    with Workspace.from_settings(project) as ws, ws.metadata.transaction() as uow:
        uow.link(ObjectRef("dataset_version", "customers@3"), ObjectRef("run", "r1"), "used_by")
        uow.link(ObjectRef("run", "r1"), ObjectRef("model_version", "churn@1"), "produced")
    up = conveyor(project, "lineage", "model_version:churn@1").stdout
    assert "model_version:churn@1" in up
    assert up.index("run:r1") < up.index("dataset_version:customers@3")
    down = json.loads(
        conveyor(project, "lineage", "dataset_version:customers@3", "--downstream", "--json").stdout
    )
    assert [(e["dst"], e["depth"]) for e in down["downstream"]] == [
        ("run:r1", 1),
        ("model_version:churn@1", 2),
    ]
    shallow = conveyor(project, "lineage", "model_version:churn@1", "--depth", "1").stdout
    assert "dataset_version" not in shallow


def test_the_lineage_tree_stops_at_the_depth_asked_on_every_path(project: Path) -> None:
    top, b, a, c = (ObjectRef("d", n) for n in ("top", "b", "a", "c"))
    with Workspace.from_settings(project) as ws, ws.metadata.transaction() as uow:
        uow.link(b, top, "x")  # top <- b <- a <- c, and a diamond: top <- a directly
        uow.link(a, b, "x")
        uow.link(a, top, "x")
        uow.link(c, a, "x")
    tree = conveyor(project, "lineage", "d:top", "--depth", "2").stdout
    assert tree.count("d:a") == 2  # under top, and under b
    assert tree.count("d:c") == 1  # two steps from top only under a, not three under b


def test_gc_reports_and_frees_unreferenced_bytes(project: Path) -> None:
    with Workspace.from_settings(project) as ws:
        ws.artifacts.put(b"x" * 2048)
        ws.log_artifact(b"kept", ObjectRef("run", "r1"), "kept.txt")
    dry = conveyor(project, "gc", "--dry-run", "--grace", "0s").stdout
    assert "Would delete 1 of 2 objects, 2.0 KiB" in dry
    real = conveyor(project, "gc", "--grace", "0s").stdout
    assert "Deleted 1 of 2 objects, 2.0 KiB" in real
    assert "Deleted 0 of 1 objects" in conveyor(project, "gc", "--grace", "0s").stdout


def test_db_current_and_upgrade_on_an_old_store(tmp_path: Path) -> None:
    (tmp_path / ".conveyor").mkdir()
    shutil.copyfile(FIXTURE, tmp_path / ".conveyor" / "conveyor.db")
    assert "0001 (head is" in conveyor(tmp_path, "db", "current").stdout
    applied = ", ".join(REVISIONS[1:])
    assert f"Applied {applied} to" in conveyor(tmp_path, "db", "upgrade").stdout
    assert conveyor(tmp_path, "db", "current").stdout.strip() == f"{HEAD} (head)"
    assert "up to date" in conveyor(tmp_path, "db", "upgrade").stdout


def test_audit_lists_who_did_what(project: Path) -> None:
    out = conveyor(project, "audit").stdout
    assert "project.create" in out


def test_bad_input_prints_one_line_and_exits_non_zero(project: Path) -> None:
    result = conveyor(project, "lineage", "no-colon-here", ok=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: Expected an object reference")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(project: Path) -> None:
    result = conveyor(project, "--debug", "lineage", "no-colon-here", ok=False)
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_a_bad_duration_says_what_form_is_expected(project: Path) -> None:
    result = conveyor(project, "gc", "--grace", "1 hour", ok=False)
    assert "must be a number and a unit" in result.stderr


def test_an_unknown_store_scheme_lists_the_supported_ones(tmp_path: Path) -> None:
    result = conveyor(tmp_path, "info", env={"CONVEYOR_STORE_URI": "mysql://db/x"}, ok=False)
    assert result.returncode == 1
    assert "Supported schemes: postgres://, postgresql://, sqlite://" in result.stderr


def test_an_unreachable_database_names_the_host(tmp_path: Path) -> None:
    result = conveyor(
        tmp_path,
        "info",
        env={"CONVEYOR_STORE_URI": "postgresql://u:hunter2secret@127.0.0.1:1/x?connect_timeout=2"},
        ok=False,
    )
    assert "Cannot reach PostgreSQL at 127.0.0.1:1" in result.stderr
    assert "hunter2secret" not in result.stderr


def test_commands_outside_a_project_say_so_and_create_nothing(tmp_path: Path) -> None:
    result = conveyor(tmp_path, "info", ok=False)
    assert result.returncode == 1
    assert "No Conveyor project in" in result.stderr
    assert "conveyor init" in result.stderr
    assert not (tmp_path / ".conveyor").exists()


def test_a_root_given_that_is_not_a_project_is_not_said_to_be_searched_above(
    project: Path,
) -> None:
    (project / "sub").mkdir()
    result = conveyor(project / "sub", "--root", ".", "info", ok=False)
    assert f"No Conveyor project in {(project / 'sub').resolve()}." in result.stderr


def test_an_unknown_revision_lists_the_known_ones(project: Path) -> None:
    result = conveyor(project, "db", "upgrade", "--revision", "bogus", ok=False)
    assert "Unknown schema revision 'bogus'; known: 0001" in result.stderr


def test_root_option_points_at_another_project(project: Path, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    info = json.loads(conveyor(elsewhere, "--root", str(project), "info", "--json").stdout)
    assert info["project"] == "churn"


def test_a_command_that_makes_a_new_project_beside_others_says_so(project: Path) -> None:
    conveyor(project, "runs", "list")  # the project conveyor init named: no note
    typo = conveyor(project, "runs", "list", env={"CONVEYOR_PROJECT": "chrun"})
    assert "created project 'chrun'" in typo.stderr
    assert "CONVEYOR_PROJECT" in typo.stderr
    again = conveyor(project, "runs", "list", env={"CONVEYOR_PROJECT": "chrun"})
    assert "created project" not in again.stderr  # said once, when it was made


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stopped_by_ctrl_c(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


# Each command that runs until Ctrl-C, and what it runs until then.
UNTIL_STOPPED = {
    "serve": (["serve", "churn@1"], "conveyor.serving.serve"),
    "server": (["server", "--no-auth", "--port", "{port}"], "uvicorn.run"),
    "ui": (["ui", "--port", "{port}"], "uvicorn.run"),
    "scheduler run": (["scheduler", "run"], "conveyor.pipelines.schedules.Scheduler.run_forever"),
}


@pytest.mark.parametrize("command", list(UNTIL_STOPPED))
def test_ctrl_c_ends_a_server_quietly_with_130(
    project: Path,
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Ctrl-C is how a server or the scheduler is meant to stop ('Ctrl+C stops'): no
    # 'Interrupted.' as for a command cut short, and the status shells report for it.
    from conveyor.cli import main

    args, runs = UNTIL_STOPPED[command]
    monkeypatch.setattr(runs, _stopped_by_ctrl_c)
    port = str(_free_port())
    argv = ["conveyor", "--root", str(project), *(a.replace("{port}", port) for a in args)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        main._run()
    err = capsys.readouterr().err
    assert (exited.value.code, "Interrupted" in err) == (130, False), err
