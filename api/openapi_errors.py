"""The error answers of every operation, written into the OpenAPI schema (the docs show them; the fuzz test checks
that every answer is one of them, in its schema).

Which errors an operation can give follows from what it is: one that needs a key can answer 401 (no key, wrong
key) and 429 (over its rate); one with path parameters 404 (unknown, or another key's); one with a body 400 (not
JSON) and 413 (too large); one with any input 422. Each front door answers in its own clients' shape
(``ErrorShapes``, set on the door's route class); 413 comes from a middleware before any door, so it always has the
native shape. An operation's own ``responses=`` win over these; FastAPI's default 422 (a list of errors, which the
farm never sends) is replaced.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, routing
from pydantic import BaseModel, Field


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the bad field, e.g. input.steps.")
    message: str = Field(description="What is wrong and what is allowed.")
    value: Any = Field(default=None, description="The value sent (long strings shortened).")


class NativeError(BaseModel):
    """The native error body: ``detail`` says what went wrong and how to fix it."""

    status: int
    detail: str
    title: str | None = Field(default=None, description="With 422: Invalid input.")
    errors: list[FieldError] | None = Field(default=None, description="With 422: one entry per bad field.")


@dataclass(frozen=True)
class ErrorShapes:
    """A door's error bodies: ``default`` for every status but those in ``by_status``; ``renamed`` maps a native
    status to the one the door answers instead (e.g. 422 → 400 where the peer's clients expect 400)."""

    default: type[BaseModel]
    by_status: dict[int, type[BaseModel]] = field(default_factory=dict)
    renamed: dict[int, int] = field(default_factory=dict)

    def body(self, status: int) -> type[BaseModel]:
        return self.by_status.get(status, self.default)


NATIVE = ErrorShapes(default=NativeError)
# Answered by middleware before a route (and its door) is reached.
MIDDLEWARE_STATUSES = frozenset({413})

DESCRIPTIONS = {
    400: "The body could not be read (not JSON, or a malformed form), or (at front doors that answer bad input "
    "with 400) the input is invalid: the answer names the field.",
    401: "No API key, or a wrong or revoked one.",
    404: "Not found; another key's ids are answered the same way.",
    413: "The request body is larger than FARM_MAX_REQUEST_BYTES.",
    422: "Invalid input: the answer names the field, the bad value and what is allowed.",
    429: "Over the key's request rate (Retry-After says when to retry) or at its cap on unfinished predictions.",
}


SPEND_CAP_REACHED = "The key's monthly spend cap is reached."


def answers(body: type[BaseModel], descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for an operation's own error answers, all with ``body``."""
    return {status: {"model": body, "description": description} for status, description in descriptions.items()}


def error_statuses(operation: dict[str, Any], path: str) -> list[int]:
    """The native error statuses an operation can answer by what it is, read off its generated schema."""
    statuses = []
    if operation.get("security"):
        statuses += [401, 429]
    if "{" in path:  # path parameters name something to look up
        statuses.append(404)
    if "requestBody" in operation:
        statuses += [400, 413]
    if operation.get("parameters") or "requestBody" in operation:
        statuses.append(422)
    return statuses


def component(schema: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    """A reference to ``model`` in the schema's components, added there with its own definitions if missing."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if model.__name__ not in components:
        generated = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        for name, definition in generated.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = generated
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def is_fastapi_default_422(response: dict[str, Any]) -> bool:
    ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
    return bool(ref.endswith("/HTTPValidationError"))


def add_error_responses(schema: dict[str, Any], shapes_of: dict[tuple[str, str], ErrorShapes]) -> None:
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            shapes = shapes_of.get((path, method), NATIVE)
            responses = operation.setdefault("responses", {})
            if is_fastapi_default_422(responses.get("422", {})):
                del responses["422"]  # replaced below by the farm's own shape (or by 400 at doors that rename it)
            for native in error_statuses(operation, path):
                status = native if native in MIDDLEWARE_STATUSES else shapes.renamed.get(native, native)
                body = NativeError if native in MIDDLEWARE_STATUSES else shapes.body(status)
                responses.setdefault(
                    str(status),
                    {
                        "description": DESCRIPTIONS[status],
                        "content": {"application/json": {"schema": component(schema, body)}},
                    },
                )


def drop_unused_fastapi_errors(schema: dict[str, Any]) -> None:
    """FastAPI's validation error components, once no operation refers to them any more."""
    components = schema.get("components", {}).get("schemas", {})
    if "#/components/schemas/HTTPValidationError" not in json.dumps(schema.get("paths", {})):
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)


def document_errors(app: FastAPI) -> None:
    """Write each operation's error answers into the app's OpenAPI schema when it is generated."""
    shapes_of = {
        (context.path_format, method.lower()): shapes
        for context in routing.iter_route_contexts(app.routes)
        if (shapes := getattr(type(context.original_route), "error_shapes", None)) is not None
        and context.path_format is not None
        for method in getattr(context.original_route, "methods", ())
    }
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = generate()
        if first:
            add_error_responses(schema, shapes_of)
            drop_unused_fastapi_errors(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
