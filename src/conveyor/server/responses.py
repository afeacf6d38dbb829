"""The server's JSON answers, rendered by orjson."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse

__all__ = ["ORJSONResponse"]


class ORJSONResponse(JSONResponse):
    """JSON rendered by orjson (several times faster than the standard library on big pages).

    NaN and infinities become null, as JSON has neither.
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
