"""Every error the API returns: JSON ``{"error": {"code", "message", "field"?}}``.

The codes are the control socket's (protocol/codes.py) plus the few only HTTP has; clients
branch on ``code``, never on ``message``. One table maps each code to its HTTP status.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from protocol import codes
from protocol.client import ControlError, NotRunning

#: no key, or a key that is not one of ours
UNAUTHORIZED = "unauthorized"
#: a valid key outside its scope (another bot, or read-only asking to act)
FORBIDDEN = "forbidden"
#: the request body is over [gateway] max_body_bytes
TOO_LARGE = "too-large"
#: no such route, bot resource, dead letter or webhook
NOT_FOUND = "not-found"
#: no supervisor answers on the control endpoint
NO_SUPERVISOR = "no-supervisor"
#: the wrong HTTP method for the path
METHOD_NOT_ALLOWED = "method-not-allowed"

STATUS: dict[str, int] = {
    codes.BAD_REQUEST: 400,
    codes.UNKNOWN_COMMAND: 404,
    codes.UNKNOWN_BOT: 404,
    codes.NOT_RUNNING: 409,
    codes.TIMEOUT: 504,
    codes.WORKER_ERROR: 502,
    codes.REFUSED: 409,
    UNAUTHORIZED: 401,
    FORBIDDEN: 403,
    TOO_LARGE: 413,
    NOT_FOUND: 404,
    NO_SUPERVISOR: 503,
    METHOD_NOT_ALLOWED: 405,
}


class ApiError(Exception):
    def __init__(self, code: str, message: str, field: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        self.status = status or STATUS.get(code, 400)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def from_control(exc: ControlError) -> ApiError:
    """The API error for a control reply's error (same code, same words)."""
    if isinstance(exc, NotRunning):
        return ApiError(NO_SUPERVISOR, str(exc))
    code = exc.code or codes.REFUSED
    return ApiError(code, str(exc))


def response(error: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
        name = _field(tuple(first.get("loc", ())))
        message = f"{name}: {first.get('msg', 'invalid')}"
        return response(ApiError(codes.BAD_REQUEST, message, name))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 401: UNAUTHORIZED, 403: FORBIDDEN,
                413: TOO_LARGE}.get(exc.status_code, codes.BAD_REQUEST)
        return response(ApiError(code, str(exc.detail), status=exc.status_code))
