"""One place that turns any failure into OpenAI's error shape and the right status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from cascade_gateway.errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound


def gateway_error_response(exc: GatewayError) -> JSONResponse:
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=exc.headers())


async def _on_gateway_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return gateway_error_response(exc)


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"] if p not in ("body", "query")]
    param = ".".join(loc) or None
    return gateway_error_response(
        InvalidRequest(f"Invalid value for '{param}': {first['msg']}", param=param)
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, ClientDisconnect):
        # FastAPI reports a body cut short by the client as a 400; there is no one to answer,
        # and the request envelope logs it as such (499).
        raise exc.__cause__
    if exc.status_code == 404:
        error: GatewayError = NotFound(f"Unknown path: {request.method} {request.url.path}")
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        error = MethodNotAllowed(request.method, request.url.path, allowed)
    else:
        error = InvalidRequest(str(exc.detail))
        error.status_code = exc.status_code
    response = gateway_error_response(error)
    response.headers.update(exc.headers or {})
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Map gateway errors, FastAPI validation errors and routing errors to OpenAI's shape."""
    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
