"""conveyor data ..., as a user runs it in a project folder (and in CI)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import act_remotely


def cli(
    cwd: Path, *args: str, ok: bool = True, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": str(columns)},
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def write_csv(path: Path, rows: int, *, plans: str = "ab", offset: float = 0.0) -> None:
    lines = ["id,plan,spend"]
    lines += [f"{i},{plans[i % len(plans)]},{i * 0.5 + offset}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(params=["embedded", "remote"])
def project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A project folder with a small data folder: the project in ./.conveyor (embedded), or
    on a team server with an editor's token (remote); the same tests run on both."""
    if request.param == "embedded":
        cli(tmp_path, "init", "--project", "shop")
    else:
        act_remotely(request, monkeypatch, "shop", {"dana": "editor"})
    return _with_data(tmp_path)


@pytest.fixture
def local_project(tmp_path: Path) -> Path:
    cli(tmp_path, "init", "--project", "shop")
    return _with_data(tmp_path)


def _with_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("first")
    (data / "img").mkdir()
    (data / "img" / "a.bin").write_bytes(os.urandom(2048))
    return tmp_path


def test_add_list_show_diff_and_checkout(project: Path) -> None:
    original = (project / "data" / "img" / "a.bin").read_bytes()
    added = json.loads(cli(project, "data", "add", "raw", "data", "-m", "first", "--json").stdout)
    assert (added["ref"], added["files"], added["description"]) == ("raw@1", 2, "first")
    (project / "data" / "img" / "a.bin").write_bytes(b"changed")
    assert "raw@2" in cli(project, "data", "add", "raw", "data").stdout
    same = cli(project, "data", "add", "raw", "data", "-m", "again", "--json")
    again = json.loads(same.stdout)
    assert (again["ref"], again["created"], added["created"]) == ("raw@2", False, True)
    plain = cli(project, "data", "add", "raw", "data", "-m", "again")
    assert "unchanged" in plain.stdout
    assert "Up to date: raw@2 already has this content (the message was not kept)" in plain.stderr
    listed = json.loads(cli(project, "data", "list", "raw", "--json").stdout)
    assert [v["ref"] for v in listed] == ["raw@2", "raw@1"]
    diff = json.loads(cli(project, "data", "diff", "raw@1", "raw@2", "--json").stdout)
    assert (diff["changed"], diff["unchanged"]) == (["img/a.bin"], 1)
    shown = json.loads(cli(project, "data", "show", "raw@1", "--json").stdout)
    assert shown["digest"] == added["digest"]
    listed = json.loads(cli(project, "data", "show", "raw@1", "--files", "--json").stdout)
    assert [(f["path"], f["size"]) for f in listed["file_list"]] == [
        ("img/a.bin", 2048),
        ("notes.txt", 5),
    ]
    assert "notes.txt" in cli(project, "data", "show", "raw@1", "--files").stdout
    cli(project, "data", "checkout", "raw@1", "restored")
    assert (project / "restored" / "img" / "a.bin").read_bytes() == original


def test_a_dataset_name_with_a_slash_works_everywhere(project: Path) -> None:
    assert "churn/train@1" in cli(project, "data", "add", "churn/train", "data").stdout
    (project / "data" / "notes.txt").write_text("second")
    assert "churn/train@2" in cli(project, "data", "add", "churn/train", "data").stdout
    listed = json.loads(cli(project, "data", "list", "churn/train", "--json").stdout)
    assert [v["ref"] for v in listed] == ["churn/train@2", "churn/train@1"]
    diff = json.loads(
        cli(project, "data", "diff", "churn/train@1", "churn/train@2", "--json").stdout
    )
    assert diff["changed"] == ["notes.txt"]


def test_checkout_into_the_source_folder_needs_force(project: Path) -> None:
    cli(project, "data", "add", "raw", "data")
    (project / "data" / "notes.txt").write_text("edited")
    refused = cli(project, "data", "checkout", "raw@1", ok=False)
    assert refused.returncode == 1
    assert "not empty" in refused.stderr
    assert "--force" in refused.stderr
    cli(project, "data", "checkout", "raw@1", "--force")
    assert (project / "data" / "notes.txt").read_text() == "first"


def test_checkout_never_defaults_to_a_folder_outside_the_project(local_project: Path) -> None:
    cli(local_project, "data", "add", "raw", "data")
    clone = local_project.parent / f"{local_project.name}-clone"
    shutil.copytree(local_project, clone)  # a copy of the project: its stores name ../data
    (local_project / "data" / "extra.txt").write_text("not in the version")
    out = cli(clone, "data", "checkout", "raw@1", "--force", "--json").stdout
    assert Path(json.loads(out)["path"]) == clone / "raw"
    assert (clone / "raw" / "notes.txt").read_text() == "first"
    assert (local_project / "data" / "extra.txt").exists()


def test_schema_infer_keeps_an_edited_schema_without_force(local_project: Path) -> None:
    write_csv(local_project / "good.csv", 40)
    cli(local_project, "data", "add", "sales", "good.csv")
    cli(local_project, "data", "schema", "sales@1", "--infer", "-o", "schema.yaml")
    both = cli(
        local_project, "data", "schema", "sales@1", "--infer", "--set", "schema.yaml", ok=False
    )
    assert "give one of them" in both.stderr
    edited = (local_project / "schema.yaml").read_text().replace("- a\n", "")
    (local_project / "edited.yaml").write_text(edited)
    cli(local_project, "data", "schema", "sales@1", "--set", "edited.yaml")
    again = cli(local_project, "data", "schema", "sales@1", "--infer", ok=False)
    assert "--force" in again.stderr
    cli(local_project, "data", "schema", "sales@1", "--infer", "--force")


def test_show_counts_the_infinities_no_statistic_of_a_column_reads(local_project: Path) -> None:
    (local_project / "ratios.csv").write_text("id,ratio\n1,0.5\n2,inf\n3,-inf\n4,2.5\n")
    cli(local_project, "data", "add", "ratios", "ratios.csv")
    shown = cli(local_project, "data", "show", "ratios@1").stdout
    row = next(line for line in shown.splitlines() if " ratio " in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["ratio", "double", "0.0%", "2 inf", "0.5", "1.5", "2.5", "2"], row


def test_diff_shows_how_the_shares_of_categories_moved(local_project: Path) -> None:
    write_csv(local_project / "sales.csv", 40, plans="ab")
    cli(local_project, "data", "add", "sales", "sales.csv")
    write_csv(local_project / "sales.csv", 40, plans="abcd")
    cli(local_project, "data", "add", "sales", "sales.csv")
    shown = cli(local_project, "data", "diff", "sales@1", "sales@2").stdout
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in shown.splitlines()]
    assert ["plan", "c", "new", "0.0%", "25.0%", "+25.0%"] in rows, shown


def test_validate_exits_1_when_a_check_fails(project: Path) -> None:
    write_csv(project / "good.csv", 40)
    cli(project, "data", "add", "sales", "good.csv")
    cli(project, "data", "schema", "sales@1", "--infer", "-o", "schema.yaml")
    assert "passed" in cli(project, "data", "validate", "sales@1").stdout
    write_csv(project / "bad.csv", 40, plans="abc", offset=-5)
    failed = cli(project, "data", "validate", "bad.csv", "--schema", "schema.yaml", ok=False)
    assert failed.returncode == 1
    assert "plan" in failed.stdout
    assert "spend" in failed.stdout
    report = json.loads(
        cli(
            project, "data", "validate", "bad.csv", "--schema", "schema.yaml", "--json", ok=False
        ).stdout
    )
    assert {f["column"] for f in report["failures"]} == {"plan", "spend"}


def test_validate_exits_2_when_it_cannot_check(project: Path) -> None:
    """1 says the data is bad: a check that could not run must not pass for that in CI."""
    write_csv(project / "t.csv", 5)
    cli(project, "data", "add", "sales", "t.csv")
    (project / "broken.yaml").write_text("columns: [unclosed\n")
    (project / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    (project / "words.yaml").write_text("columns:\n  id:\n    dtype: int64\n    ge: zero\n")
    cannot = {
        "bad schema file": ("t.csv", "--schema", "broken.yaml"),
        "unreadable schema file": ("t.csv", "--schema", "binary.yaml"),
        "no schema file": ("t.csv", "--schema", "nowhere.yaml"),
        "no schema given": ("t.csv",),
        "no schema saved": ("sales@1",),
        "no such version": ("sales@7",),
        "no such file": ("nothing.csv", "--schema", "broken.yaml"),
        "a check that cannot run": ("t.csv", "--schema", "words.yaml"),
    }
    for case, args in cannot.items():
        result = cli(project, "data", "validate", *args, "--json", ok=False)
        assert result.returncode == 2, (case, result.returncode, result.stderr)
        assert result.stderr.startswith("error: "), (case, result.stderr)
        assert "Traceback" not in result.stderr, case
        assert result.stdout == "", case
    usage = cli(project, "data", "validate", "sales@1", "--no-such-option", ok=False)
    assert usage.returncode == 2
    debug = cli(project, "--debug", "data", "validate", "sales@7", ok=False)
    assert debug.returncode == 2, debug.stderr  # a traceback asked for: the same status
    assert "Traceback" in debug.stderr


def test_validate_says_where_the_schema_came_from(project: Path) -> None:
    write_csv(project / "good.csv", 40)
    cli(project, "data", "add", "sales", "good.csv")
    text = cli(project, "data", "schema", "sales@1", "--infer").stdout
    assert "name: sales@1\n" in text
    (project / "contract.yaml").write_text(text.replace("name: sales@1\n", "name: contract\n"))
    cli(project, "data", "schema", "sales@1", "--set", "contract.yaml")
    write_csv(project / "more.csv", 40, plans="ba")
    cli(project, "data", "add", "sales", "more.csv")  # sales@2 has no schema of its own
    saved = json.loads(cli(project, "data", "validate", "sales@2", "--json").stdout)
    assert (saved["schema"], saved["schema_source"], saved["data"]) == (
        "contract",
        "sales@1",
        "sales@2",
    )
    assert "schema: sales@1" in cli(project, "data", "validate", "sales@2").stdout
    given = cli(project, "data", "validate", "more.csv", "--schema", "contract.yaml", "--json")
    report = json.loads(given.stdout)
    assert (report["schema"], report["schema_source"]) == ("contract", "contract.yaml")


def test_an_edited_schema_can_be_saved_back(project: Path) -> None:
    write_csv(project / "good.csv", 40)
    cli(project, "data", "add", "sales", "good.csv")
    text = cli(project, "data", "schema", "sales@1", "--infer").stdout
    (project / "edited.yaml").write_text(text.replace("    - b\n", ""))
    cli(project, "data", "schema", "sales@1", "--set", "edited.yaml")
    assert cli(project, "data", "validate", "sales@1", ok=False).returncode == 1


def test_bad_input_gets_one_clear_line(project: Path) -> None:
    missing = cli(project, "data", "add", "raw", "nowhere", ok=False)
    assert missing.returncode == 1
    assert "no such file or folder" in missing.stderr
    assert "Traceback" not in missing.stderr
    empty = cli(project, "data", "add", "raw", "", ok=False)  # "$DATA", unset
    assert "the path is empty" in empty.stderr  # not the whole project folder, added
    cli(project, "data", "add", "raw", "data")
    absent = cli(project, "data", "show", "raw@5", ok=False)
    assert "latest versions: raw@1" in absent.stderr
    (project / "broken.yaml").write_text("columns: [unclosed\n")
    write_csv(project / "t.csv", 5)
    broken = cli(project, "data", "validate", "t.csv", "--schema", "broken.yaml", ok=False)
    assert "broken.yaml" in broken.stderr
    saved = cli(project, "data", "schema", "raw@1", "--set", "broken.yaml", ok=False)
    assert "the schema file broken.yaml" in saved.stderr
    cli(project, "data", "add", "sales", "t.csv")
    for output, says in (("nowhere/s.yaml", "does not exist"), ("data", "it is a folder")):
        unwritable = cli(project, "data", "schema", "sales@1", "--infer", "-o", output, ok=False)
        assert unwritable.returncode == 1
        assert unwritable.stderr.startswith(f"error: Cannot write {output}: "), unwritable.stderr
        assert says in unwritable.stderr
    nothing = cli(project, "data", "schema", "sales@1", ok=False)  # refused before saving
    assert "No schema is saved with sales@1" in nothing.stderr


def test_push_and_pull_through_a_folder_remote(local_project: Path) -> None:
    project = local_project  # push and pull copy between artifact stores: where they are
    cli(project, "data", "add", "raw", "data")
    out = cli(project, "data", "push", "--remote", "remote").stdout
    assert "Pushed 3 objects" in out
    assert "Pushed 0 objects" in cli(project, "data", "push", "--remote", "remote").stdout
    assert "Pulled 0 objects" in cli(project, "data", "pull", "raw", "--remote", "remote").stdout
    objects = sorted(p for p in (project / ".conveyor" / "objects").rglob("*") if p.is_file())
    damaged = next(p for p in objects if p.stat().st_size > 0 and ".tmp" not in p.parts)
    damaged.write_bytes(b"not what was stored")
    pulled = cli(project, "data", "pull", "raw", "--remote", "remote", "--verify", "--json")
    counts = json.loads(pulled.stdout)
    assert (counts["copied"], counts["repaired"]) == (0, 1)
    assert (
        json.loads(cli(project, "data", "push", "--remote", "remote", "--json").stdout)["copied"]
        == 0
    )
    # The same damage on the remote: a pull names it there, a push --verify mends it.
    held = sorted(p for p in (project / "remote").rglob("*") if p.is_file())
    on_remote = next(p for p in held if p.name == damaged.name)
    on_remote.write_bytes(b"not what was stored")
    damaged.unlink()
    refused = cli(project, "data", "pull", "raw", "--remote", "remote", ok=False)
    assert "holds a damaged copy" in refused.stderr
    assert "push --verify" in refused.stderr
    cli(project, "data", "add", "raw", "data")  # the same files store the object again here
    mended = cli(project, "data", "push", "--remote", "remote", "--verify")
    assert "1 damaged there were replaced" in mended.stdout
    # The remote's copy is whole again: its bytes hash to the digest it is stored under.
    assert (
        hashlib.sha256(on_remote.read_bytes()).hexdigest() == on_remote.parent.name + on_remote.name
    )
    cli(project, "data", "checkout", "raw@1", "out")


def test_a_pull_into_a_clone_that_knows_no_versions_says_where_versions_are_recorded(
    local_project: Path, tmp_path: Path
) -> None:
    cli(local_project, "data", "add", "raw", "data")
    cli(local_project, "data", "push", "--remote", str(tmp_path / "remote"))
    clone = tmp_path / "clone"  # what a git clone of the project gets: its settings only
    clone.mkdir()
    (clone / "conveyor.toml").write_text((local_project / "conveyor.toml").read_text())
    pulled = cli(clone, "data", "pull", "--remote", str(tmp_path / "remote"))
    assert "Pulled 0 objects" in pulled.stdout
    assert "no dataset versions in its metadata store" in pulled.stderr
    assert "set store_uri" in pulled.stderr
    quiet = cli(local_project, "data", "pull", "--remote", str(tmp_path / "remote"))
    assert quiet.stderr == ""


def test_a_remote_listing_follows_the_servers_pages(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conveyor as cv
    from conveyor.store import workspace as workspace_module
    from conveyor.store.records import ObjectRef

    act_remotely(request, monkeypatch, "pages", {"dana": "editor"})
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(5):
        (folder / f"f{i}.txt").write_text(str(i))
    with cv.Workspace.from_settings(tmp_path) as ws:
        version = cv.data.add("many", folder, workspace=ws)
        monkeypatch.setattr(workspace_module, "_LIST_PAGE", 2)  # three pages of two
        listed = ws.list_artifacts(ObjectRef("dataset_version", version.id))
    assert [a.name for a in listed] == [f"files/f{i}.txt" for i in range(5)] + ["manifest.json"]


def test_help_wraps_paragraphs_to_the_terminal_not_to_the_source(tmp_path: Path) -> None:
    # The docstrings are wrapped at 92 columns; help shows each paragraph as one, wrapped
    # where the terminal (here 200 columns wide) ends.
    shown = cli(tmp_path, "data", "add", "--help").stdout
    assert "files unchanged since the last add are not read again" in shown
    listed = cli(tmp_path, "data", "--help").stdout
    assert "profile summary and lineage (--files: each file too)" in listed


def test_help_names_the_arguments_in_capitals_without_type_noise(tmp_path: Path) -> None:
    shown = cli(tmp_path, "data", "add", "--help").stdout
    assert "data add [OPTIONS] NAME PATH" in shown
    assert "<str>" not in shown


def test_help_shows_an_optional_argument_in_brackets(tmp_path: Path) -> None:
    shown = cli(tmp_path, "data", "checkout", "--help").stdout
    assert "data checkout [OPTIONS] REF [DEST]" in shown


def test_help_needs_no_private_typer_module(tmp_path: Path) -> None:
    # pyproject allows typer>=0.12: the click inside Typer (typer._click) is private and
    # absent from older versions, so the help must not depend on importing from it.
    script = (
        "import sys, typer, typer.core\n"
        "sys.modules['typer._click.types'] = None  # importing it now fails\n"
        "sys.argv = ['conveyor', 'data', 'add', '--help']\n"
        "from conveyor.cli.main import run\n"
        "run()\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert (shown.returncode, shown.stderr) == (0, ""), shown.stderr
    assert "data add [OPTIONS] NAME PATH" in shown.stdout
    assert "<str>" not in shown.stdout


def _interrupted(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def _run_in_process(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run ``conveyor ARGS`` in this process (to patch what it calls); its exit status."""
    from conveyor.cli import main

    monkeypatch.setattr(sys, "argv", ["conveyor", *args])
    with pytest.raises(SystemExit) as exited:
        main._run()  # (run() also freezes the heap, for a process about to end)
    return int(exited.value.code or 0)


def test_ctrl_c_during_add_says_what_it_left_and_exits_130(
    local_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from conveyor.data.service import DataService

    monkeypatch.setattr(DataService, "add", _interrupted)
    status = _run_in_process(
        monkeypatch, "--root", str(local_project), "data", "add", "raw", "data"
    )
    assert (status, capsys.readouterr().err) == (
        130,
        "Interrupted: a version is recorded whole or not at all; add again (it reuses what "
        "was stored).\n",
    )


def test_ctrl_c_during_any_command_says_interrupted_and_exits_130(
    local_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from conveyor.data.service import DataService

    monkeypatch.setattr(DataService, "datasets", _interrupted)
    status = _run_in_process(monkeypatch, "--root", str(local_project), "data", "list")
    assert (status, capsys.readouterr().err) == (130, "Interrupted.\n")


def _unusable_path(project: Path, kind: str, suffix: str) -> tuple[str, str]:
    """A path no file system call can use (a 300-character name, or a path through a link
    to itself), and how the one-line error starts."""
    if kind == "too long":
        name = "x" * 300 + suffix
        return name, f"error: Cannot use {name[:30]}...{name[-30:]} as "
    (project / "loop").symlink_to("loop")
    return f"loop/out{suffix}", f"error: Cannot use loop/out{suffix} as "


UNUSABLE = ["too long", "looping link"]


def _one_line_error(result: subprocess.CompletedProcess[str], starts: str, status: int) -> None:
    assert (result.returncode, result.stderr.count("\n")) == (status, 1), result.stderr
    assert result.stderr.startswith(starts), result.stderr


@pytest.mark.parametrize("kind", UNUSABLE)
def test_an_unusable_checkout_folder_is_one_line_naming_it(local_project: Path, kind: str) -> None:
    cli(local_project, "data", "add", "raw", "data")
    dest, starts = _unusable_path(local_project, kind, "")
    _one_line_error(cli(local_project, "data", "checkout", "raw@1", dest, ok=False), starts, 1)


@pytest.mark.parametrize("kind", UNUSABLE)
def test_an_unusable_file_to_validate_is_one_line_naming_it(local_project: Path, kind: str) -> None:
    path, starts = _unusable_path(local_project, kind, ".csv")
    _one_line_error(cli(local_project, "data", "validate", path, ok=False), starts, 2)


@pytest.mark.parametrize("kind", UNUSABLE)
def test_an_unusable_schema_output_is_one_line_naming_it(local_project: Path, kind: str) -> None:
    write_csv(local_project / "c.csv", 5)
    cli(local_project, "data", "add", "c", "c.csv")
    output, starts = _unusable_path(local_project, kind, ".yaml")
    wrote = cli(local_project, "data", "schema", "c@1", "--infer", "-o", output, ok=False)
    _one_line_error(wrote, starts, 1)


LONG_NAME = "churn/training-features-weekly"  # 30 characters, as real names run


def test_the_version_list_keeps_each_ref_on_one_line_at_80_columns(local_project: Path) -> None:
    cli(local_project, "data", "add", LONG_NAME, "data", "-m", "the weekly extract " * 4)
    listed = cli(local_project, "data", "list", LONG_NAME, columns=80).stdout
    assert f"{LONG_NAME}@1 " in listed, listed


def test_the_dataset_list_keeps_each_ref_on_one_line_at_80_columns(local_project: Path) -> None:
    write_csv(local_project / "c.csv", 1200)
    cli(local_project, "data", "add", LONG_NAME, "c.csv")
    listed = cli(local_project, "data", "list", columns=80).stdout
    assert any(LONG_NAME in line for line in listed.splitlines()), listed


def test_show_names_the_run_that_used_a_version(project: Path) -> None:
    cli(project, "data", "add", "raw", "data")
    script = (
        "import conveyor as cv\n"
        "with cv.start_run(experiment='churn', name='churn-train') as run:\n"
        "    cv.data.path('raw@1')\n"
        "print(run.id)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    shown = cli(project, "data", "show", "raw@1").stdout
    assert f"run churn-train ({ran.stdout.strip()})" in shown, shown


def test_show_keeps_a_columns_frequent_values_on_one_line(local_project: Path) -> None:
    # Free text (a paragraph, with line breaks) stretched the profile table down the screen.
    answer = "The delivery was late again and the driver\nwas rude; I want a full refund."
    rows = ["ok" if i % 2 else answer for i in range(20)]
    (local_project / "feedback.csv").write_text(
        "id,comment\n" + "".join(f'{i},"{text}"\n' for i, text in enumerate(rows))
    )
    cli(local_project, "data", "add", "feedback", "feedback.csv")
    shown = cli(local_project, "data", "show", "feedback").stdout
    row = next(line for line in shown.splitlines() if "comment" in line)
    assert row.count("(10)") == 2, shown  # both values and their counts in the one row


def test_a_one_row_table_is_one_row_not_one_rows(local_project: Path) -> None:
    write_csv(local_project / "one.csv", 1)
    added = cli(local_project, "data", "add", "one", "one.csv").stdout
    assert ", 1 row  digest" in added, added


def test_a_validation_that_passes_counts_one_row_as_one_row(local_project: Path) -> None:
    write_csv(local_project / "one.csv", 1)
    cli(local_project, "data", "add", "one", "one.csv")
    cli(local_project, "data", "schema", "one@1", "--infer")
    checked = cli(local_project, "data", "validate", "one@1").stdout
    assert "one@1 passed every check (1 row, 3 columns)." in checked, checked
