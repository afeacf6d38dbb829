"""Registry events reach webhooks: JSON POSTs, retried on failure, each delivery recorded."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import conveyor as cv
from conveyor.core.errors import InvalidArgumentError
from conveyor.models.service import model_service
from conveyor.models.webhooks import deliveries

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed")
from sklearn.linear_model import LinearRegression  # noqa: E402


class Receiver(ThreadingHTTPServer):
    """Answers 500 to the first ``fail_first`` POSTs, then 204; keeps every body."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.bodies: list[dict] = []
        self.headers_seen: list[str] = []
        self.authorizations: list[str | None] = []
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.headers_seen.append(self.headers["X-Conveyor-Event"])
        self.server.authorizations.append(self.headers.get("Authorization"))
        if self.server.fail_first > 0:
            self.server.fail_first -= 1
            self.send_response(500)
        else:
            self.server.bodies.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail_first=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_events_are_posted_retried_and_recorded(tmp_path: Path, receiver: Receiver) -> None:
    good = f"http://127.0.0.1:{receiver.server_address[1]}/hook?token=secret"
    dead = f"http://127.0.0.1:{closed_port()}/hook"
    with cv.Workspace.from_settings(tmp_path, project="hooks", webhooks=f"{good},{dead}") as ws:
        svc = model_service(ws)
        assert svc.webhooks is not None
        svc.webhooks.backoff = 0.01
        model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
        cv.models.log(model, "lin", workspace=ws)
        assert svc.webhooks.flush(timeout=30)
        assert [b["kind"] for b in receiver.bodies] == ["model_version.created"]
        assert receiver.bodies[0]["model"] == "lin"
        assert receiver.headers_seen == ["model_version.created"] * 2  # one 500, one retry
        recorded = {d["url"]: d for d in deliveries(ws)}
        ok = recorded[good.split("?")[0]]
        assert (ok["status"], ok["attempts"], ok["response_code"]) == ("delivered", 2, 204)
        failed = recorded[dead]
        assert (failed["status"], failed["attempts"]) == ("failed", 4)
        assert "secret" not in json.dumps(list(recorded))


def _log_one_model(tmp_path: Path, url: str) -> list[dict]:
    """Log one model in a project whose webhook is ``url``; return the recorded deliveries
    once they are done."""
    with cv.Workspace.from_settings(tmp_path, project="hooks", webhooks=url) as ws:
        svc = model_service(ws)
        assert svc.webhooks is not None
        cv.models.log(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), "lin", workspace=ws)
        assert svc.webhooks.flush(timeout=30)
        return deliveries(ws)


def test_credentials_in_a_webhook_url_go_in_the_authorization_header(
    tmp_path: Path, receiver: Receiver
) -> None:
    import base64

    receiver.fail_first = 0
    url = f"http://hook:s%3Acret@127.0.0.1:{receiver.server_address[1]}/hook"
    (delivery,) = _log_one_model(tmp_path, url)
    assert delivery["status"] == "delivered"
    assert receiver.authorizations == ["Basic " + base64.b64encode(b"hook:s:cret").decode()]
    assert "cret" not in json.dumps(delivery)
    assert delivery["url"] == f"http://***@127.0.0.1:{receiver.server_address[1]}/hook"


def test_webhook_credentials_do_not_follow_a_redirect(tmp_path: Path, receiver: Receiver) -> None:
    receiver.fail_first = 0
    elsewhere = f"http://127.0.0.1:{receiver.server_address[1]}/elsewhere"

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(302)
            self.send_header("Location", elsewhere)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Moved(BaseHTTPRequestHandler):  # the redirect's target sees a GET
        def do_GET(self) -> None:
            receiver.authorizations.append(self.headers.get("Authorization"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    receiver.RequestHandlerClass = Moved
    mover = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=mover.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://hook:secret@127.0.0.1:{mover.server_address[1]}/hook"
        _log_one_model(tmp_path, url)
    finally:
        mover.shutdown()
        mover.server_close()
        thread.join(timeout=5)
    assert receiver.authorizations == [None]  # followed, without the credentials


def test_a_webhook_url_must_be_http(tmp_path: Path) -> None:
    ws = cv.Workspace.from_settings(tmp_path, project="hooks", webhooks="file:///etc/passwd")
    with ws, pytest.raises(InvalidArgumentError, match="must start with http"):
        model_service(ws)
