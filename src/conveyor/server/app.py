"""The FastAPI application of the team server and the state its routes share."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor._version import __version__
from conveyor.core.errors import ConveyorError
from conveyor.server import api_admin, api_domain, api_tracking, api_uploads
from conveyor.server.errors import error_body, status_for
from conveyor.server.middleware import Hardening
from conveyor.server.responses import ORJSONResponse
from conveyor.store.identity import IdentityStore
from conveyor.store.principal import Principal
from conveyor.store.ratelimits import RateLimiter
from conveyor.store.workspace import Workspace

if TYPE_CHECKING:
    from conveyor.core.config import Settings
    from conveyor.store.records import Project

__all__ = ["ServerState", "create_app"]

log = logging.getLogger("conveyor.server")


class ServerState:
    """The stores, the identity store and one workspace per project, shared by all routes."""

    def __init__(
        self, settings: Settings, *, auth: bool = True, max_artifact_bytes: int = 50 << 30
    ) -> None:
        self.root = Workspace(settings)
        self.auth = auth
        self.max_artifact_bytes = max_artifact_bytes
        self.identity = IdentityStore(self.root.metadata)
        self.limiter = RateLimiter(self.root.metadata)
        self.pipelines: tuple[str, ...] = ()
        self.launches: dict[str, set[Any]] = {}  # user -> pipeline-run processes started
        self.reserved: set[str] = set()  # run ids being launched
        self.lock = threading.Lock()
        self._workspaces: dict[str, Workspace] = {}
        self._lock = threading.Lock()

    def workspace(self, project: str) -> Workspace:
        """The workspace of ``project`` on the server's stores."""
        with self._lock:
            ws = self._workspaces.get(project)
            if ws is None:
                ws = self._workspaces[project] = self.root.for_project(project)
            return ws

    def find_project(self, name: str) -> Project | None:
        return self.root.metadata.find_project(name)

    def authenticate(self, secret: str) -> Principal:
        return self.identity.authenticate(secret)

    def close(self) -> None:
        with self._lock:
            workspaces, self._workspaces = list(self._workspaces.values()), {}
        for ws in workspaces:
            ws.close()
        self.root.close()


def create_app(
    settings: Settings,
    *,
    auth: bool = True,
    max_body: int = 32 * 1024 * 1024,
    max_artifact_bytes: int = 50 << 30,
    auth_attempts: int = 20,
    pipelines: Sequence[str] = (),
) -> FastAPI:
    """Build the team server's application on the stores ``settings`` name.

    ``auth=False`` serves everyone as the configured actor: only for a server bound to
    127.0.0.1 (``conveyor server --no-auth`` refuses anything else). ``pipelines``:
    the packages whose pipelines callers may run and name in loop policies (the server
    imports and runs them).
    """
    state = ServerState(settings, auth=auth, max_artifact_bytes=max_artifact_bytes)
    state.pipelines = tuple(pipelines)
    state.limiter = RateLimiter(state.root.metadata, limit=auth_attempts)
    state.root.open()  # create and migrate the store now, not on the first request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Conveyor",
        version=__version__,
        description="The REST API of a Conveyor team server. Authenticate with "
        "'Authorization: Bearer <token>' (create one: conveyor tokens create USER). Errors "
        'are {"error": {"code", "message", "hint"}} with a stable code.',
        docs_url=None,  # Swagger UI loads from a CDN: no network at view time
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        default_response_class=ORJSONResponse,
    )
    app.state.conveyor = state
    app.add_middleware(Hardening, max_body=max_body, local_only=not auth)

    @app.exception_handler(ConveyorError)
    async def conveyor_error(request: Request, exc: ConveyorError) -> Response:
        status = status_for(exc)
        if _is_ui(request):
            return _ui_error(request, status, exc.message, exc.hint)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return ORJSONResponse(
            error_body(exc.code, exc.message, exc.hint), status_code=status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"where": "request", "problem": "invalid"}
        if _is_ui(request):
            return _ui_error(request, 422, f"{first['where']}: {first['problem']}.", None)
        return ORJSONResponse(
            error_body(
                "conveyor.invalid_argument",
                f"Invalid request: {first['where']}: {first['problem']}.",
                problems=problems,
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "conveyor.not_found", 405: "conveyor.invalid_argument"}.get(
            exc.status_code, "conveyor.error"
        )
        message = "No such route." if exc.status_code == 404 else str(exc.detail)
        if _is_ui(request):
            return _ui_error(request, exc.status_code, message, None)
        return ORJSONResponse(error_body(code, message), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        if _nul_refused(exc):  # PostgreSQL keeps no NUL in text; what the API's checks miss
            message = "A text value holds a NUL character (\\x00), which cannot be stored."
            if _is_ui(request):
                return _ui_error(request, 422, message, None)
            return ORJSONResponse(
                error_body("conveyor.invalid_argument", message, "Remove the NUL character."),
                status_code=422,
            )
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        if _is_ui(request):
            return _ui_error(request, 500, "Internal server error; the log has the details.", None)
        return ORJSONResponse(
            error_body("conveyor.error", "Internal server error; the server log has the details."),
            status_code=500,
        )

    @app.get("/healthz", include_in_schema=False)
    @app.get("/readyz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    app.include_router(api_admin.api)
    app.include_router(api_tracking.api)
    app.include_router(api_uploads.api)
    app.include_router(api_domain.api)
    _add_ui(app)

    return app


def _add_ui(app: FastAPI) -> None:
    """The web UI's pages under /ui, when Jinja2 is installed (it comes with the server)."""
    try:
        from fastapi.staticfiles import StaticFiles

        from conveyor.server import ui
    except ImportError:  # pragma: no cover - a server installed without its extra
        log.warning("the web UI needs jinja2: pip install 'conveyor-mlops[server]'")
        return
    app.mount("/ui/static", StaticFiles(directory=ui.STATIC), name="ui-static")
    app.include_router(ui.router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=303)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)  # pages that ask (a report) get nothing, not a 404


def _is_ui(request: Request) -> bool:
    return request.url.path == "/ui" or request.url.path.startswith("/ui/")


def _ui_error(request: Request, status: int, message: str, hint: str | None) -> Response:
    """A UI page's error as a page; one that needs a login sends the browser to log in."""
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)
    from conveyor.server.ui.pages import error_page

    return error_page(status, message, hint)


def _nul_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is the database refusing a text value with a NUL character."""
    import sqlalchemy as sa

    if not isinstance(exc, sa.exc.DataError):
        return False
    # Text columns: the driver refuses the NUL byte; JSONB: the server, as an untranslatable
    # character (SQLSTATE 22P05, "unsupported Unicode escape sequence").
    return "NUL" in str(exc.orig) or getattr(exc.orig, "sqlstate", None) == "22P05"
