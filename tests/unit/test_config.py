"""Configuration: defaults < conveyor.toml < CONVEYOR_* < arguments; root found like git."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.core.config import find_root, load_settings, render_config_template
from conveyor.core.errors import InvalidArgumentError


def test_defaults_live_in_dot_conveyor_under_the_root(tmp_path: Path) -> None:
    s = load_settings(tmp_path)
    assert s.project == "default"
    assert s.store_uri == f"sqlite:///{tmp_path.resolve() / '.conveyor' / 'conveyor.db'}"
    assert s.artifact_uri == str(tmp_path.resolve() / ".conveyor" / "objects")
    assert s.actor


def test_file_then_environment_then_arguments_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conveyor.toml").write_text('project = "from-file"\nactor = "file-actor"\n')
    assert load_settings(tmp_path).project == "from-file"
    monkeypatch.setenv("CONVEYOR_PROJECT", "from-env")
    s = load_settings(tmp_path)
    assert (s.project, s.actor) == ("from-env", "file-actor")
    assert load_settings(tmp_path, project="from-arg").project == "from-arg"


def test_relative_paths_in_the_file_are_relative_to_the_root(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text(
        'store_uri = "sqlite:///state/meta.db"\nartifact_uri = "blobs"\n'
    )
    s = load_settings(tmp_path)
    assert s.store_uri == f"sqlite:///{tmp_path.resolve() / 'state' / 'meta.db'}"
    assert s.artifact_uri == str(tmp_path.resolve() / "blobs")


def test_remote_uris_are_kept_as_given(tmp_path: Path) -> None:
    s = load_settings(
        tmp_path, store_uri="postgresql://u@db:5432/x", artifact_uri="s3://bucket/prefix"
    )
    assert (s.store_uri, s.artifact_uri) == ("postgresql://u@db:5432/x", "s3://bucket/prefix")


def test_an_actor_longer_than_the_store_holds_is_refused_by_name(tmp_path: Path) -> None:
    assert load_settings(tmp_path, actor="a" * 200).actor == "a" * 200
    with pytest.raises(InvalidArgumentError, match="'actor' must be at most 200 characters"):
        load_settings(tmp_path, actor="a" * 201)  # SQLite took it, PostgreSQL did not


def test_a_store_uri_scheme_in_capitals_is_the_same_scheme(tmp_path: Path) -> None:
    s = load_settings(tmp_path, artifact_uri="S3://Bucket/Prefix", remote_uri="FILE:///srv/x")
    assert (s.artifact_uri, s.remote_uri) == ("s3://Bucket/Prefix", "file:///srv/x")


def test_the_root_is_found_by_walking_up(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text("")
    deep = tmp_path / "src" / "pkg"
    deep.mkdir(parents=True)
    assert find_root(deep) == tmp_path.resolve()


def test_conveyor_root_names_the_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_ROOT", str(tmp_path))
    assert find_root(Path("/")) == tmp_path.resolve()


def test_an_unknown_key_in_the_file_names_it_and_the_known_keys(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text('stor_uri = "x"\n')
    with pytest.raises(InvalidArgumentError, match=r"stor_uri.*known keys: actor, approvers, "):
        load_settings(tmp_path)


def test_a_table_nothing_reads_is_refused_with_its_keys(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text('[conveyor]\nproject = "x"\n')
    with pytest.raises(InvalidArgumentError, match=r"table \[conveyor\] that nothing reads"):
        load_settings(tmp_path)
    (tmp_path / "conveyor.toml").write_text('project = "x"\n\n[ci]\nmodel = "churn"\n')
    assert load_settings(tmp_path).project == "x"  # [ci] is conveyor ci's


def test_the_postgres_scheme_is_postgresql() -> None:
    from conveyor.store.metadata.engine import create_engine

    engine = create_engine("postgres://user@127.0.0.1:5432/db")  # not contacted
    assert engine.dialect.name == "postgresql"
    engine.dispose()


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text("project = \n")
    with pytest.raises(InvalidArgumentError, match=r"conveyor\.toml is not valid TOML"):
        load_settings(tmp_path)


def test_a_non_string_value_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text("project = 3\n")
    with pytest.raises(InvalidArgumentError, match="'project' must be a string"):
        load_settings(tmp_path)


def test_a_yes_no_setting_takes_a_toml_boolean_and_refuses_anything_else(
    tmp_path: Path,
) -> None:
    (tmp_path / "conveyor.toml").write_text("trust_pickled_models = true\n")
    assert load_settings(tmp_path).trusts_pickled_models
    assert not load_settings(tmp_path, trust_pickled_models=False).trusts_pickled_models
    with pytest.raises(InvalidArgumentError, match="must be true or false; got 'ture'"):
        load_settings(tmp_path, trust_pickled_models="ture")


def test_a_path_is_taken_where_a_uri_setting_is(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, artifact_uri=tmp_path / "blobs")
    assert settings.artifact_uri == str(tmp_path / "blobs")


@pytest.mark.parametrize(("value", "sync"), [("1", True), ("yes", True), ("off", False)])
def test_sync_logging_reads_the_usual_spellings(
    monkeypatch: pytest.MonkeyPatch, value: str, sync: bool
) -> None:
    from conveyor.tracking.writer import Writer

    monkeypatch.setenv("CONVEYOR_SYNC_LOGGING", value)
    assert Writer(lambda ops: None).sync is sync


def test_sync_logging_refuses_a_value_it_cannot_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor.tracking.writer import Writer

    monkeypatch.setenv("CONVEYOR_SYNC_LOGGING", "2")
    with pytest.raises(InvalidArgumentError, match="CONVEYOR_SYNC_LOGGING must be true or false"):
        Writer(lambda ops: None)


def test_the_template_parses_and_sets_the_project(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text(render_config_template("churn"))
    assert load_settings(tmp_path).project == "churn"


def test_init_overrides_every_key(tmp_path: Path) -> None:
    import conveyor as cv

    with cv.init(
        tmp_path, online_uri="sqlite:///online.db", query_memory_limit="1GB", approvers="ana"
    ) as ws:
        assert (ws.settings.query_memory_limit, ws.settings.approvers) == ("1GB", "ana")
        assert ws.settings.online_uri.endswith("online.db")


def test_a_prediction_log_uri_of_an_unknown_scheme_names_the_setting() -> None:
    from conveyor.store.logs import log_filesystem

    with pytest.raises(InvalidArgumentError, match=r"'foo://x/logs'.*CONVEYOR_LOG_URI"):
        log_filesystem("foo://x/logs")
