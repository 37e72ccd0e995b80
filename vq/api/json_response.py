"""The HTTP API's JSON answers (every route's default response class)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from vq import jobdata


class StrictJSONResponse(JSONResponse):
    """Starlette's JSON, with a NaN or infinity (which a job stored before vq refused them
    may hold) written as null instead of failing the request with a 500."""

    def render(self, content) -> bytes:
        return jobdata.dumps_strict(content, ensure_ascii=False, indent=None, separators=(",", ":")).encode()
