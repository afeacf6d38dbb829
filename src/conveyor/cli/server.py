"""``conveyor server``, ``users``, ``tokens`` and ``projects``: running a team server and
managing who may use it.

``users``/``tokens``/``projects`` work on the project's own stores (run them where the
server's database is reachable), or through a server when CONVEYOR_STORE_URI is its URL
and CONVEYOR_TOKEN an administrator's token.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.context import workspace_for
from conveyor.cli.output import console, err_console

users_app = typer.Typer(
    help="Users of a team server and their roles per project (viewer < editor < approver < admin).",
    no_args_is_help=True,
)
tokens_app = typer.Typer(
    help="API tokens: random, shown once, stored only as a hash; optionally for one project "
    "and expiring.",
    no_args_is_help=True,
)
projects_app = typer.Typer(help="Projects: everything belongs to one.", no_args_is_help=True)

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def server(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 for every one).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 5000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Serve without authentication, as this project's actor: only on 127.0.0.1.",
        ),
    ] = False,
    admin: Annotated[
        str, typer.Option(help="Name of the administrator the first start creates.")
    ] = "admin",
    max_artifact_mb: Annotated[
        int, typer.Option(min=1, help="Largest artifact one upload may store, in MiB.")
    ] = 51_200,
    auth_attempts: Annotated[
        int,
        typer.Option(
            min=1,
            help="Failed logins and token checks, and token creations, allowed per client "
            "address per minute (then 429).",
        ),
    ] = 20,
    pipelines: Annotated[
        str,
        typer.Option(
            help="Packages whose pipelines clients may run through the server and name in "
            "loop policies (comma-separated, e.g. 'acme.pipelines'; installed on this host): "
            "the server imports and runs their code. Default: none.",
        ),
    ] = "",
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Addresses of the TLS proxies in front (comma-separated): their "
            "X-Forwarded-For/-Proto name the client in the audit and the rate limits.",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Run the team server: the REST API over every service, for a team sharing one store.

    Point it at PostgreSQL and S3 in conveyor.toml (store_uri, artifact_uri) or CONVEYOR_*
    variables. The first start creates an administrator and prints their token once.
    Clients set CONVEYOR_STORE_URI=http://HOST:PORT and CONVEYOR_TOKEN=... and use the SDK
    and CLI as usual. The OpenAPI schema is at /api/v1/openapi.json.

    Example: conveyor server --host 0.0.0.0 --port 5000 --workers 4
    """
    import uvicorn

    from conveyor.core.errors import InvalidArgumentError
    from conveyor.store.identity import IdentityStore

    if no_auth and host not in _LOCAL_HOSTS:
        raise InvalidArgumentError(
            f"--no-auth serves anyone who can connect, so it binds only 127.0.0.1 (not {host}).",
            hint="Drop --no-auth and use tokens: conveyor tokens create USER.",
        )
    ws = workspace_for(ctx)
    if ws.remote is not None:
        raise InvalidArgumentError(
            "A server needs a database and an artifact store of its own; CONVEYOR_STORE_URI "
            f"points at another server ({ws.settings.store_uri})."
        )
    from conveyor.core.net import check_port_free

    check_port_free(host, port)  # before the first start creates its administrator
    with ws:
        if not no_auth:
            secret = IdentityStore(ws.metadata).bootstrap(admin)
            if secret is not None:
                err_console.print(
                    f"Created the administrator [bold]{escape(admin)}[/bold]. Their token, "
                    "shown this once (keep it secret):\n"
                )
                typer.echo(secret, err=True)
                err_console.print(
                    f"\nUse it: export CONVEYOR_STORE_URI=http://{host}:{port} CONVEYOR_TOKEN=..."
                )
    if no_auth:
        err_console.print(
            "[yellow]Authentication is OFF:[/yellow] anyone who can connect to "
            f"{host}:{port} acts as {escape(ws.settings.actor)}."
        )
    err_console.print(
        f"Conveyor server on http://{host}:{port} (API at /api/v1, schema at "
        "/api/v1/openapi.json). Ctrl+C stops."
    )
    # A server acts as each request's caller: never as a principal its environment names.
    from conveyor.store.principal import ACTING_ENV

    os.environ.pop(ACTING_ENV, None)
    os.environ["CONVEYOR_SERVER_ROOT"] = str(ws.settings.root)
    os.environ["CONVEYOR_SERVER_AUTH"] = "0" if no_auth else "1"
    os.environ["CONVEYOR_SERVER_MAX_ARTIFACT_MB"] = str(max_artifact_mb)
    os.environ["CONVEYOR_SERVER_AUTH_ATTEMPTS"] = str(auth_attempts)
    prefixes = [p.strip() for p in pipelines.split(",") if p.strip()]
    for prefix in prefixes:
        if not re.fullmatch(r"[A-Za-z]\w*(\.[A-Za-z]\w*)*", prefix):
            raise InvalidArgumentError(
                f"--pipelines takes package names (acme.pipelines); got {prefix!r}."
            )
    os.environ["CONVEYOR_SERVER_PIPELINES"] = ",".join(prefixes)
    uvicorn.run(
        "conveyor.server.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
    )


def ui(
    ctx: typer.Context,
    port: Annotated[
        int, typer.Option(help="Port to listen on (127.0.0.1 only).", min=1, max=65535)
    ] = 5000,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "warning",
) -> None:
    """Open this project in the web UI: runs, datasets, features, pipelines, models,
    deployments, monitors and lineage, in the browser.

    Serves the project's own stores on 127.0.0.1 without logging in (as this project's
    actor), so only this machine can reach it. For a team, run `conveyor server` and log in.

    Example: conveyor ui --port 5000, then open the address it prints.
    """
    project = workspace_for(ctx).settings.project
    err_console.print(f"Web UI: [bold]http://127.0.0.1:{port}/ui/p/{escape(project)}[/bold]")
    server(
        ctx,
        host="127.0.0.1",
        port=port,
        workers=1,
        no_auth=True,
        admin="admin",
        max_artifact_mb=51_200,
        forwarded_allow_ips=None,
        log_level=log_level,
    )


# -- the identity service, local or through a server -----------------------------------------


def _remote(ctx: typer.Context) -> Any:
    ws = workspace_for(ctx)
    return ws, ws.remote


def _print_json(value: Any) -> None:
    from conveyor.core.encoding import jsonable

    console.print_json(json.dumps(jsonable(value)))


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name (letters, digits, . _ - @).")],
    admin: Annotated[
        bool, typer.Option("--admin", help="A server administrator (users, projects, audit).")
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read a web-UI password from stdin.")
    ] = False,
) -> None:
    """Create a user. Give them a role: conveyor users grant NAME ROLE --project P."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    ws, client = _remote(ctx)
    if client is not None:
        client.send_json(
            "POST", "/api/v1/users", {"name": name, "admin": admin, "password": password}
        )
    else:
        with ws:
            from conveyor.store.identity import IdentityStore

            IdentityStore(ws.metadata).add_user(name, admin=admin, password=password)
    console.print(f"Created user [bold]{escape(name)}[/bold]{' (administrator)' if admin else ''}.")


@users_app.command("list")
def users_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List users with their roles."""
    ws, client = _remote(ctx)
    if client is not None:
        found = client.get_json("/api/v1/users")["users"]
    else:
        from conveyor.core.encoding import jsonable
        from conveyor.store.identity import IdentityStore

        with ws:
            found = jsonable(IdentityStore(ws.metadata).list_users())
    if as_json:
        _print_json(found)
        return
    table = Table("user", "admin", "roles", "state")
    for u in found:
        roles = ", ".join(f"{p}: {r}" for p, r in sorted(u["roles"].items())) or "-"
        state = "disabled" if u["disabled_at"] else "active"
        table.add_row(escape(u["name"]), "yes" if u["is_admin"] else "", escape(roles), state)
    console.print(table)


def _set_disabled(ctx: typer.Context, name: str, disabled: bool) -> None:
    ws, client = _remote(ctx)
    if client is not None:
        client.send_json("POST", f"/api/v1/users/{name}/{'disable' if disabled else 'enable'}")
    else:
        from conveyor.store.identity import IdentityStore

        with ws:
            IdentityStore(ws.metadata).set_disabled(name, disabled)
    console.print(f"{'Disabled' if disabled else 'Enabled'} [bold]{escape(name)}[/bold].")


@users_app.command("disable")
def users_disable(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The user to disable.")]
) -> None:
    """Disable a user: their tokens stop working at once."""
    _set_disabled(ctx, name, True)


@users_app.command("enable")
def users_enable(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The user to enable.")]
) -> None:
    """Enable a disabled user again."""
    _set_disabled(ctx, name, False)


@users_app.command("grant")
def users_grant(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user.")],
    role: Annotated[str, typer.Argument(help="viewer, editor, approver or admin.")],
    project: Annotated[str, typer.Option("--project", "-p", help="The project.")],
) -> None:
    """Give a user a role in a project (replacing the role they held there).

    viewer reads; editor also writes runs, data, pipelines and models; approver also decides
    promotion requests and changes deployments; admin also manages members.
    """
    ws, client = _remote(ctx)
    if client is not None:
        client.send_json("PUT", client.project_path(project, "members", name), {"role": role})
    else:
        from conveyor.store.identity import IdentityStore

        with ws:
            IdentityStore(ws.metadata).grant(name, project, role)
    console.print(f"{escape(name)} is now {role} in {escape(project)}.")


@users_app.command("revoke")
def users_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user.")],
    project: Annotated[str, typer.Option("--project", "-p", help="The project.")],
) -> None:
    """Take away a user's role in a project."""
    ws, client = _remote(ctx)
    if client is not None:
        client.send_json("DELETE", client.project_path(project, "members", name))
    else:
        from conveyor.store.identity import IdentityStore

        with ws:
            IdentityStore(ws.metadata).revoke_role(name, project)
    console.print(f"{escape(name)} has no role in {escape(project)} now.")


@users_app.command("passwd")
def users_passwd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user.")],
) -> None:
    """Set a user's web-UI password, read from stdin (hashed with argon2id).

    Through a server: one's own password, or anyone's for a server administrator.
    """
    from conveyor.core.errors import InvalidArgumentError
    from conveyor.store.identity import IdentityStore

    password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise InvalidArgumentError("A password needs at least 8 characters (read from stdin).")
    ws, client = _remote(ctx)
    if client is not None:
        client.send_json(
            "POST", f"/api/v1/users/{quote(name, safe='')}/password", {"password": password}
        )
    else:
        with ws:
            IdentityStore(ws.metadata).set_password(name, password)
    console.print(f"Password of {escape(name)} set.")


MAX_TOKEN_DAYS = 3650  # what the server takes


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    user: Annotated[
        str | None, typer.Argument(help="Whose token (default: you, through a server).")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="A label to tell tokens apart.")] = (
        "default"
    ),
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Only for this project.")
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime, e.g. 30d or 12h (default: none).")
    ] = None,
) -> None:
    """Create an API token and print it once: only its hash is kept."""
    from conveyor.core.durations import parse_duration
    from conveyor.core.errors import InvalidArgumentError

    lifetime = parse_duration(expires_in, what="--expires-in") if expires_in is not None else None
    if lifetime is not None and lifetime.days > MAX_TOKEN_DAYS:
        raise InvalidArgumentError(
            f"--expires-in is at most {MAX_TOKEN_DAYS} days; got {expires_in!r}.",
            hint="Leave it out for a token that never expires.",
        )
    if lifetime is not None and lifetime.total_seconds() <= 0:
        # (checked here too: a lifetime of zero must never travel as "no expiry")
        raise InvalidArgumentError(
            f"--expires-in must be a positive lifetime; got {expires_in!r}.",
            hint="For example --expires-in 30d or 12h; leave it out for a token that never "
            "expires.",
        )
    ws, client = _remote(ctx)
    if client is not None:
        days = lifetime.total_seconds() / 86400 if lifetime is not None else None
        body = client.send_json(
            "POST",
            "/api/v1/tokens",
            {"name": name, "user": user, "project": project, "expires_in_days": days},
        )
        secret, token_id = body["token"], body["id"]
    else:
        if user is None:
            raise InvalidArgumentError("Name the user: conveyor tokens create USER.")
        from conveyor.store.identity import IdentityStore

        with ws:
            info, secret = IdentityStore(ws.metadata).create_token(
                user, name, project=project, expires_in=lifetime
            )
        token_id = info.id
    err_console.print(f"Token {token_id} (shown this once; store it as CONVEYOR_TOKEN):")
    typer.echo(secret)


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List tokens (never their secrets)."""
    from conveyor.core.encoding import jsonable

    ws, client = _remote(ctx)
    if client is not None:
        found = client.get_json("/api/v1/tokens", user=user)["tokens"]
    else:
        from conveyor.store.identity import IdentityStore

        with ws:
            found = jsonable(IdentityStore(ws.metadata).list_tokens(user))
    if as_json:
        _print_json(found)
        return
    table = Table("id", "user", "name", "starts", "project", "expires", "state", "last used")
    table.columns[0].no_wrap = True  # whole: copied into `tokens revoke`
    for t in found:
        state = "revoked" if t["revoked_at"] else "expired" if _expired(t) else "active"
        table.add_row(
            t["id"],
            escape(t["user"]),
            escape(t["name"]),
            t["prefix"] + "…",
            escape(t["project"] or "any"),
            (t["expires_at"] or "never")[:16],
            state,
            (t["last_used_at"] or "never")[:16],
        )
    console.print(table)


def _expired(token: dict[str, Any]) -> bool:
    from datetime import UTC, datetime

    at = token["expires_at"]
    if not at:
        return False
    when = datetime.fromisoformat(at)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) <= datetime.now(UTC)


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context,
    token_id: Annotated[
        str,
        typer.Argument(
            help="The token's id, or a unique start of it of at least 6 characters "
            "(conveyor tokens list)."
        ),
    ],
) -> None:
    """Revoke a token: it stops working at once."""
    ws, client = _remote(ctx)
    if client is not None:
        revoked = client.send_json("DELETE", f"/api/v1/tokens/{quote(token_id, safe='')}")["id"]
    else:
        from conveyor.store.identity import IdentityStore

        with ws:
            store = IdentityStore(ws.metadata)
            revoked = store.revoke_token(store.find_token(token_id).id).id
    console.print(f"Revoked token {escape(revoked)}.")


@projects_app.command("list")
def projects_list(ctx: typer.Context) -> None:
    """List projects (through a server: the ones you can see, with your role)."""
    ws, client = _remote(ctx)
    table = Table("project", "created", "your role")
    if client is not None:
        for p in client.get_json("/api/v1/projects")["projects"]:
            table.add_row(escape(p["name"]), p["created_at"][:16], p["role"])
    else:
        with ws:
            for p in ws.metadata.list_projects():
                table.add_row(escape(p.name), p.created_at.isoformat()[:16], "-")
    console.print(table)


@projects_app.command("create")
def projects_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The project's name.")],
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
) -> None:
    """Create a project (through a server: server administrators only)."""
    ws, client = _remote(ctx)
    if client is not None:
        client.send_json("POST", "/api/v1/projects", {"name": name, "description": description})
    else:
        with ws:
            ws.metadata.ensure_project(name, description=description)
    console.print(f"Project [bold]{escape(name)}[/bold] exists.")
