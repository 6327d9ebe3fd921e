"""Error responses: JSON whose ``detail`` names the field, the bad value and the fix."""

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, routing
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path


def json_safe(value: Any) -> Any:
    """The offending value as JSON can carry it (bodies that failed to parse arrive as bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def is_field_part(part: str | int) -> bool:
    """Whether a pydantic ``loc`` part names a field or index, not where FastAPI read it ("body") or which
    member of a union failed (``literal['a','b']``, ``ImageSize``)."""
    if isinstance(part, int):
        return True
    return part not in ("body", "query", "path") and "[" not in part and not part[:1].isupper()


def describe_errors(errors: Sequence[Any], prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as ``{field, message, value}`` with dotted field paths."""
    described = []
    for error in errors:
        raw = (*prefix, *error.get("loc", ()))
        if raw[:1] in (("header",), ("cookie",)):  # a header's own name is the field, capitals and all
            loc = list(raw[1:])
        else:
            loc = [part for part in raw if is_field_part(part)]
        field = ".".join(str(part) for part in loc) or "body"
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        described.append({"field": field, "message": message, "value": json_safe(error.get("input"))})
    return described


def summarize(errors: list[dict[str, Any]]) -> str:
    """Described errors as one sentence: ``field: message (got value); …``."""

    def one(error: dict[str, Any]) -> str:
        value = error["value"]
        shown = "" if isinstance(value, dict) or value is None else f" (got {value!r})"
        return f"{error['field']}: {error['message']}{shown}"

    return "; ".join(one(error) for error in errors)


def validation_response(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(
        status_code=422,
        content={"title": "Invalid input", "status": 422, "detail": summarize(errors), "errors": errors},
    )


class InputError(Exception):
    """Invalid input found after the request body parsed (e.g. against the model's schema)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors

    @classmethod
    def field(cls, field: str, message: str, value: Any) -> "InputError":
        """One bad field."""
        return cls([{"field": field, "message": message, "value": value}])

    @classmethod
    def from_validation(cls, error: ValidationError, prefix: tuple[str | int, ...]) -> "InputError":
        return cls(describe_errors(error.errors(include_url=False), prefix))


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at the request's path."""
    path, methods = request.url.path, set[str]()
    for context in routing.iter_route_contexts(request.app.routes):
        if context.path is not None and compile_path(context.path)[0].match(path):
            methods |= getattr(context.original_route, "methods", None) or set()
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(describe_errors(exc.errors()))

    @app.exception_handler(InputError)
    async def input_invalid(_: Request, exc: InputError) -> JSONResponse:
        return validation_response(exc.errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = exc.headers
        if exc.status_code == 405:  # Starlette's Allow names one route's methods; a path may have several routes
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return JSONResponse(
            status_code=exc.status_code,
            content={"status": exc.status_code, "detail": exc.detail},
            headers=headers,
        )
