"""Deliver registry events to webhooks: a JSON POST per event and URL, retried, recorded.

URLs come from the ``webhooks`` setting (comma-separated). Delivery runs on a small thread
pool so registry calls do not wait on the network; a failed POST (a connection error, a
timeout, HTTP 429 or 5xx) is retried with exponential backoff. Each delivery's outcome is
one row of ``webhook_deliveries``: the URL (credentials and query removed), the event, the
status, the attempts, the last HTTP status or error.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from conveyor.core import ids
from conveyor.core.clock import utcnow
from conveyor.core.errors import InvalidArgumentError
from conveyor.core.uris import post_request, redact_uri
from conveyor.models.events import RegistryEvent
from conveyor.store.metadata.schema import webhook_deliveries

if TYPE_CHECKING:
    from conveyor.store.workspace import Workspace

__all__ = ["WebhookDispatcher", "parse_webhook_urls"]

log = logging.getLogger("conveyor.models.webhooks")

ATTEMPTS = 4
FIRST_BACKOFF = 0.5  # seconds; doubled after each failed attempt
TIMEOUT = 5.0


def parse_webhook_urls(value: str) -> list[str]:
    """Split the ``webhooks`` setting into URLs, refusing anything but http(s)."""
    urls = [u.strip() for u in value.split(",") if u.strip()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise InvalidArgumentError(
                f"The webhook URL {redact_uri(url)!r} must start with http:// or https://.",
                hint='Set webhooks = "https://hooks.example.com/conveyor" in conveyor.toml.',
            )
    return urls


def _shown(url: str) -> str:
    """The URL as recorded: no credentials (a user name can be a token too), no query
    string (tokens often ride there)."""
    shown = redact_uri(url).split("?", 1)[0]
    scheme, sep, rest = shown.partition("://")
    host, slash, path = rest.partition("/")
    if sep and "@" in host:
        shown = f"{scheme}://***@{host.rsplit('@', 1)[1]}{slash}{path}"
    return shown


class WebhookDispatcher:
    """Posts each event it is called with to every URL, in the background."""

    def __init__(
        self,
        ws: Workspace,
        urls: list[str],
        *,
        attempts: int = ATTEMPTS,
        backoff: float = FIRST_BACKOFF,
    ) -> None:
        self.ws = ws
        self.urls = urls
        self.attempts = attempts
        self.backoff = backoff
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def __call__(self, event: RegistryEvent) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(2, thread_name_prefix="conveyor-webhook")
            for url in self.urls:
                future = self._pool.submit(self._deliver, url, event)
                self._pending.add(future)
                future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait for deliveries in flight; True when all finished within ``timeout``."""
        with self._lock:
            pending = set(self._pending)
        if not pending:
            return True
        _, not_done = wait(pending, timeout=timeout)
        return not not_done

    def close(self, timeout: float = 30.0) -> None:
        """Finish deliveries in flight (up to ``timeout``), then stop the threads; the ones
        still waiting then are given up, with a warning that says how many."""
        if not self.flush(timeout):
            with self._lock:  # those a thread has not taken yet are dropped below
                left = sum(1 for f in self._pending if not f.done() and not f.running())
            if left:
                log.warning(
                    "conveyor: %d webhook deliveries were still queued after %.1f s and were "
                    "dropped unsent as the workspace closed (their receivers are slow or "
                    "failing: see `conveyor models deliveries` for the ones tried).",
                    left,
                    timeout,
                )
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _deliver(self, url: str, event: RegistryEvent) -> None:
        body = json.dumps(event.to_dict(), default=str).encode()
        # Only http(s) URLs reach here: parse_webhook_urls refuses every other scheme.
        request = post_request(
            url,
            body,
            {
                "Content-Type": "application/json",
                "User-Agent": "conveyor-webhooks",
                "X-Conveyor-Event": event.kind,
            },
        )
        delay = self.backoff
        status, code, error = "failed", None, ""
        attempt = 0
        for attempt in range(1, self.attempts + 1):
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
                    code = response.status
                status, error = "delivered", ""
                break
            except urllib.error.HTTPError as e:
                code, error = e.code, f"HTTP {e.code} {e.reason}"
                if e.code != 429 and e.code < 500:
                    break  # the receiver refuses this event: retrying will not help
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                code, error = None, f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            if attempt < self.attempts:
                time.sleep(delay)  # backoff between attempts, off the caller's thread
                delay *= 2
        if status != "delivered":
            log.warning("Webhook %s for %s failed: %s", _shown(url), event.kind, error)
        self._record(url, event, status, attempt, code, error)

    def _record(
        self,
        url: str,
        event: RegistryEvent,
        status: str,
        attempts: int,
        code: int | None,
        error: str,
    ) -> None:
        try:
            with self.ws.metadata.transaction(project_id=self.ws.project.id) as uow:
                uow.conn.execute(
                    webhook_deliveries.insert().values(
                        id=ids.new_id(),
                        project_id=self.ws.project.id,
                        url=_shown(url)[:500],
                        event=event.kind,
                        payload=event.to_dict(),
                        status=status,
                        attempts=attempts,
                        response_code=code,
                        error=error[:1000],
                        created_at=event.at,
                        finished_at=utcnow(),
                    )
                )
        except Exception:
            log.exception("Could not record the delivery of %s to %s", event.kind, _shown(url))


def deliveries(ws: Workspace, *, limit: int = 100) -> list[dict[str, Any]]:
    """Return the latest webhook deliveries of the project, newest first."""
    import sqlalchemy as sa

    with ws.metadata.read() as conn:
        rows = conn.execute(
            sa.select(webhook_deliveries)
            .where(webhook_deliveries.c.project_id == ws.project.id)
            .order_by(webhook_deliveries.c.finished_at.desc(), webhook_deliveries.c.id.desc())
            .limit(limit)
        ).all()
    return [
        {
            "url": r.url,
            "event": r.event,
            "status": r.status,
            "attempts": r.attempts,
            "response_code": r.response_code,
            "error": r.error,
            "at": r.finished_at.isoformat(),
        }
        for r in rows
    ]
