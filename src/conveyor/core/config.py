"""Typed configuration, declared once.

Precedence, lowest first: defaults, ``conveyor.toml`` in the project root, ``CONVEYOR_*``
environment variables, then arguments given to :func:`load_settings` (``conveyor.init``).

The project root is the nearest folder, from the working directory upward, that holds a
``conveyor.toml`` or a ``.conveyor/`` folder (found like git finds ``.git``); the working
directory itself when there is none. ``CONVEYOR_ROOT`` names it explicitly.
"""

from __future__ import annotations

import getpass
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from conveyor.core.errors import InvalidArgumentError
from conveyor.core.names import validate_project_name

__all__ = [
    "CONFIG_FILE",
    "STATE_DIR",
    "Settings",
    "default_actor",
    "find_root",
    "load_settings",
    "parse_flag",
    "render_config_template",
]

CONFIG_FILE = "conveyor.toml"
STATE_DIR = ".conveyor"
ENV_PREFIX = "CONVEYOR_"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
#: The longest actor name the metadata store's columns hold.
_MAX_ACTOR = 200


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved configuration of one Conveyor project."""

    root: Path = field(metadata={"help": "The project root (holds conveyor.toml and .conveyor/)."})
    project: str = field(
        default="default",
        metadata={"help": "Project name; objects belong to a project.", "key": True},
    )
    store_uri: str = field(
        default="",
        metadata={
            "help": "Metadata store: sqlite:///path/to/conveyor.db or "
            "postgresql://user@host:5432/db. Default: .conveyor/conveyor.db.",
            "key": True,
        },
    )
    artifact_uri: str = field(
        default="",
        metadata={
            "help": "Artifact store: a folder, file:///path, s3://bucket/prefix or memory://name. "
            "Default: .conveyor/objects.",
            "key": True,
        },
    )
    remote_uri: str = field(
        default="",
        metadata={
            "help": "Default remote artifact store for `conveyor data push|pull`: a folder, "
            "file:///path or s3://bucket/prefix. Default: none.",
            "key": True,
        },
    )
    online_uri: str = field(
        default="",
        metadata={
            "help": "Online feature store: sqlite:///path/online.db or redis://host:6379/0. "
            "Default: .conveyor/online.db.",
            "key": True,
        },
    )
    log_uri: str = field(
        default="",
        metadata={
            "help": "Where model servers write prediction and feedback logs (Parquet): a folder, "
            "file:///path or s3://bucket/prefix. Default: .conveyor/logs.",
            "key": True,
        },
    )
    query_memory_limit: str = field(
        default="",
        metadata={
            "help": "Memory DuckDB may use for feature joins and materialization before it "
            "spills to .conveyor/tmp, e.g. 2GB. Default: DuckDB's (80% of RAM).",
            "key": True,
        },
    )
    approvers: str = field(
        default="",
        metadata={
            "help": "Who may approve model promotion requests: comma-separated actor names. "
            "Default: anyone but the requester.",
            "key": True,
        },
    )
    webhooks: str = field(
        default="",
        metadata={
            "help": "URLs that receive model registry events as JSON POSTs, comma-separated. "
            "Default: none.",
            "key": True,
        },
    )
    trust_pickled_models: str = field(
        default="false",
        metadata={
            "help": "Load pickle-based model flavors (python) without trust=True: true or "
            "false. Default: false.",
            "key": True,
        },
    )
    actor: str = field(
        default="",
        metadata={"help": "Who is recorded in audit events. Default: the OS user.", "key": True},
    )

    @property
    def approver_list(self) -> list[str]:
        """The actors allowed to approve promotion requests (empty: anyone but the requester)."""
        return [a.strip() for a in self.approvers.split(",") if a.strip()]

    @property
    def trusts_pickled_models(self) -> bool:
        """True when this project loads pickle-based models without ``trust=True``."""
        return parse_flag(self.trust_pickled_models, "The setting 'trust_pickled_models'")

    @property
    def state_dir(self) -> Path:
        """The ``.conveyor`` folder of this project."""
        return self.root / STATE_DIR

    @classmethod
    def settable_keys(cls) -> list[str]:
        """Return the keys a user may set in conveyor.toml or CONVEYOR_* variables."""
        return [f.name for f in fields(cls) if f.metadata.get("key")]

    @classmethod
    def help_for(cls, key: str) -> str:
        """Return the one-line help of ``key``."""
        return next(f.metadata["help"] for f in fields(cls) if f.name == key)


def default_actor() -> str:
    """Return the OS user name, or ``unknown`` when it cannot be told."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def find_root(start: Path | None = None) -> Path:
    """Return the project root for ``start`` (default: the working directory)."""
    if env_root := os.environ.get(ENV_PREFIX + "ROOT"):
        return Path(env_root).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file() or (folder / STATE_DIR).is_dir():
            return folder
    return here


#: Tables of conveyor.toml read by a command of their own (``[ci]``: ``conveyor ci``).
_TABLES = frozenset({"ci"})


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgumentError(
            f"{path} is not valid TOML: {e}.", hint="Fix the file or delete it to use defaults."
        ) from e
    known = set(Settings.settable_keys())
    unknown = sorted(k for k in data if k not in known and not isinstance(data[k], dict))
    if unknown:
        raise InvalidArgumentError(
            f"{path} sets unknown key(s) {', '.join(unknown)}; known keys: "
            f"{', '.join(sorted(known))}."
        )
    tables = sorted(k for k in data if isinstance(data[k], dict) and k not in _TABLES)
    if tables:
        raise InvalidArgumentError(
            f"{path} has a table [{tables[0]}] that nothing reads; the settings are keys at "
            f"the top of the file (before any table), and the tables read are "
            f"{', '.join(f'[{t}]' for t in sorted(_TABLES))}.",
            hint=f"Move its keys ({', '.join(sorted(data[tables[0]])) or 'none'}) above the "
            "first table, or remove it.",
        )
    return {k: v for k, v in data.items() if k in known}


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def parse_flag(value: str, what: str) -> bool:
    """Read a yes/no setting: ``1/true/yes/on`` or ``0/false/no/off`` (or empty), in any case.

    >>> parse_flag("Yes", "CONVEYOR_SYNC_LOGGING")
    True
    """
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidArgumentError(
        f"{what} must be true or false; got {value!r}.",
        hint="Use 1, true, yes or on; or 0, false, no or off.",
    )


def _normalize_store_uri(uri: str, root: Path) -> str:
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri[len("sqlite:///") :]
        if path and not path.startswith(":memory:") and not Path(path).is_absolute():
            return "sqlite:///" + str((root / path).resolve())
    return uri


def normalize_artifact_uri(uri: str, root: Path) -> str:
    scheme, sep, rest = uri.partition("://")
    if sep:
        # Schemes are case-insensitive (RFC 3986); fsspec and file:// parsing are not, and
        # took FILE:///x for a relative folder named 'FILE:'.
        return (scheme.lower() if _SCHEME.match(scheme) else scheme) + sep + rest
    path = Path(uri).expanduser()
    return str(path if path.is_absolute() else (root / path).resolve())


def load_settings(root: Path | str | None = None, **overrides: Any) -> Settings:
    """Resolve settings from defaults, conveyor.toml, CONVEYOR_* variables and ``overrides``.

    >>> s = load_settings("/tmp/demo-project", project="churn")
    >>> s.project, s.store_uri
    ('churn', 'sqlite:////tmp/demo-project/.conveyor/conveyor.db')
    """
    root_path = Path(root).expanduser().resolve() if root is not None else find_root()
    values: dict[str, Any] = {}
    config_file = root_path / CONFIG_FILE
    if config_file.is_file():
        values.update(_read_file(config_file))
    for key in Settings.settable_keys():
        if (env := os.environ.get(ENV_PREFIX + key.upper())) not in (None, ""):
            values[key] = env
    unknown = sorted(k for k in overrides if k not in Settings.settable_keys())
    if unknown:
        raise InvalidArgumentError(
            f"Unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(Settings.settable_keys())}."
        )
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key, value in values.items():
        if isinstance(value, bool):  # trust_pickled_models = true, in TOML or in Python
            values[key] = "true" if value else "false"
        elif isinstance(value, os.PathLike):
            values[key] = os.fspath(value)
        elif not isinstance(value, str):
            raise InvalidArgumentError(
                f"The setting {key!r} must be a string; got {type(value).__name__} {value!r}.",
                hint=f'Write it in quotes, e.g. {key} = "{value}" in conveyor.toml.',
            )
    if "trust_pickled_models" in values:
        parse_flag(values["trust_pickled_models"], "The setting 'trust_pickled_models'")
    settings = replace(Settings(root=root_path), **values)
    validate_project_name(settings.project)
    if len(settings.actor.strip()) > _MAX_ACTOR:  # PostgreSQL refuses it at the first record
        raise InvalidArgumentError(
            f"The setting 'actor' must be at most {_MAX_ACTOR} characters; got "
            f"{len(settings.actor.strip())} ({settings.actor.strip()[:40]!r}...).",
            hint="Set a shorter name in conveyor.toml or CONVEYOR_ACTOR.",
        )
    state = root_path / STATE_DIR
    return replace(
        settings,
        store_uri=_normalize_store_uri(
            settings.store_uri or f"sqlite:///{state / 'conveyor.db'}", root_path
        ),
        artifact_uri=normalize_artifact_uri(
            settings.artifact_uri or str(state / "objects"), root_path
        ),
        remote_uri=normalize_artifact_uri(settings.remote_uri, root_path)
        if settings.remote_uri
        else "",
        online_uri=_normalize_online_uri(settings.online_uri, state),
        log_uri=normalize_artifact_uri(settings.log_uri or str(state / "logs"), root_path),
        actor=settings.actor.strip() or default_actor(),  # " ada" is ada, in every record
    )


def _normalize_online_uri(uri: str, state: Path) -> str:
    if not uri:
        return f"sqlite:///{state / 'online.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        relative = uri[len("sqlite:///") :]
        return f"sqlite:///{(state.parent / relative).resolve()}"
    return uri


def render_config_template(project: str) -> str:
    """Return a commented conveyor.toml for a new project."""
    lines = [
        "# Conveyor project settings. Every key can be overridden by a CONVEYOR_<KEY>",
        "# environment variable (for example CONVEYOR_STORE_URI) or by conveyor.init(...).",
        "",
    ]
    for key in Settings.settable_keys():
        lines.append(f"# {Settings.help_for(key)}")
        if key == "project":
            lines.append(f'project = "{project}"')
        else:
            lines.append(f'# {key} = ""')
        lines.append("")
    return "\n".join(lines)
