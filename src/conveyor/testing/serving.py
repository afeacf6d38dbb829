"""A client for testing a model server in process: no port, no subprocess.

>>> from conveyor.testing import ModelServerClient
>>> with ModelServerClient("churn@champion") as client:          # doctest: +SKIP
...     result = client.predict([{"age": 31, "plan": "basic"}])
...     result["predictions"], result["model_version"]
([0], 'churn/3')
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from conveyor.store.workspace import Workspace

__all__ = ["ModelServerClient", "ServerError"]


class ServerError(AssertionError):
    """The server answered a status other than 200; ``status`` and ``body`` say how."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class ModelServerClient:
    """Serve ``ref`` (or ``deployment``) in process and call it like a user would over HTTP.

    ``predict`` raises :class:`ServerError` for any answer but 200 (``check=False`` returns
    the status and body instead). Options are those of ``cv.serving.app``.
    """

    def __init__(
        self,
        ref: str | None = None,
        *,
        deployment: str | None = None,
        workspace: Workspace | None = None,
        **options: Any,
    ) -> None:
        from conveyor.serving import app

        self.app = app(ref, deployment=deployment, workspace=workspace, **options)
        self.name = (ref or deployment or "").split("@")[0].split("/")[0]
        self._client: Any = None

    def __enter__(self) -> Self:
        from starlette.testclient import TestClient

        self._client = TestClient(self.app)
        self._client.__enter__()  # runs the app's start-up: the model loads and warms here
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client.__exit__(exc_type, exc, tb)  # shutdown: logs are flushed here
        self._client = None

    @property
    def http(self) -> Any:
        """The underlying test client, for any request (``client.http.get("/metrics")``)."""
        if self._client is None:
            raise RuntimeError("Use ModelServerClient in a with block: the model loads on enter.")
        return self._client

    def _answer(self, response: Any, check: bool) -> Any:
        body = response.json()
        if check and response.status_code != 200:
            raise ServerError(response.status_code, body)
        return body if check else (response.status_code, body)

    def predict(
        self, rows: Any, *, proba: bool = False, name: str | None = None, check: bool = True
    ) -> Any:
        """POST rows (records, or a DataFrame) to ``/v1/models/NAME/predict``."""
        if hasattr(rows, "to_dict"):
            rows = rows.to_dict(orient="records")
        body: dict[str, Any] = {"instances": rows}
        if proba:
            body["return"] = ["proba"]
        response = self.http.post(f"/v1/models/{name or self.name}/predict", json=body)
        return self._answer(response, check)

    def infer(
        self, inputs: list[dict[str, Any]], *, name: str | None = None, check: bool = True
    ) -> Any:
        """POST an Open Inference Protocol v2 request (``inputs`` tensors)."""
        response = self.http.post(f"/v2/models/{name or self.name}/infer", json={"inputs": inputs})
        return self._answer(response, check)

    def feedback(self, prediction_id: str, label: Any, *, check: bool = True) -> Any:
        """POST ground truth for an earlier prediction to ``/v1/feedback``."""
        response = self.http.post(
            "/v1/feedback", json={"prediction_id": prediction_id, "label": label}
        )
        return self._answer(response, check)

    def metrics(self) -> str:
        """The Prometheus metrics text."""
        return str(self.http.get("/metrics").text)
