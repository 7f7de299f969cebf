"""Every 4xx and 5xx is a JSON error, `{"error": {"message", "type", "status"}}`, with no stack trace and no echo
of the request's values."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    kind = HTTPStatus(status).phrase.lower().replace(" ", "_")
    return JSONResponse({"error": {"message": message, "type": kind, "status": status}}, status, dict(headers or {}))


def validation_message(errors: list[dict[str, Any]]) -> str:
    """Each bad field named with its problem; the values sent are left out."""
    problems = []
    for error in errors:
        field = ".".join(str(part) for part in error["loc"] if part != "body")
        if error["type"] == "json_invalid":
            problems.append("the body is not valid JSON")
        elif error["type"] == "extra_forbidden":
            problems.append(f"unknown field '{field}'")
        else:
            problems.append(f"field '{field or 'body'}': {error['msg']}")
    return "invalid request: " + "; ".join(problems)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if "json" not in request.headers.get("content-type", ""):
        return error_response(400, "invalid request: send the body as JSON (Content-Type: application/json)")
    return error_response(400, validation_message(list(exc.errors())))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """The details go to the server's log (uvicorn logs the exception, redacted), never to the client."""
    return error_response(500, "internal error; the server's log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _internal_error)
