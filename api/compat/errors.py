"""Errors in a front door's own shape: a route class per door turns the native errors
(auth, unknown ids, invalid input) into the body and status code that door's clients expect."""

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import InputError, describe_errors, summarize
from api.openapi_errors import ErrorShapes


@dataclass(frozen=True)
class Problem:
    """A native error, door-neutral: status, a sentence naming the fix, and bad fields if any."""

    status: int
    detail: str
    errors: list[dict[str, Any]] = field(default_factory=list)  # {field, message, value}
    headers: dict[str, str] | None = None

    @classmethod
    def of(cls, error: Exception) -> "Problem":
        if isinstance(error, InputError):
            return cls(422, summarize(error.errors), error.errors)
        if isinstance(error, RequestValidationError):
            errors = describe_errors(error.errors())
            return cls(422, summarize(errors), errors)
        assert isinstance(error, StarletteHTTPException)
        return cls(error.status_code, str(error.detail), headers=dict(error.headers) if error.headers else None)

    def fields(self, *, strip: str = "") -> list[str]:
        """The bad fields' dotted paths, without the ``strip`` prefix."""
        return [str(error["field"]).removeprefix(strip) for error in self.errors]


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def door_route(render: Callable[[Problem], Response], shapes: ErrorShapes) -> type[APIRoute]:
    """An ``APIRoute`` class whose native errors are answered by ``render`` (only on that door's routes), in the
    ``shapes`` its OpenAPI responses document."""

    class DoorRoute(APIRoute):
        error_shapes = shapes

        def get_route_handler(self) -> Handler:
            handler = super().get_route_handler()

            async def shaped(request: Request) -> Response:
                try:
                    return await handler(request)
                except (StarletteHTTPException, RequestValidationError, InputError) as error:
                    return render(Problem.of(error))

            return shaped

    return DoorRoute
