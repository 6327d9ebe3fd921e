"""Field types for strict request bodies (``ConfigDict(strict=True)``): JSON's own types, no coercion from strings,
except that a float with no fraction is an integer, as JSON Schema counts ``60.0``."""

from typing import Annotated, Any

from pydantic import BeforeValidator


def integral_float_as_int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Bounds go before it, inside the Annotated (Annotated[int, Field(ge=1), INTEGRAL_FLOATS]), so that the schema
# shows them as minimum/maximum.
INTEGRAL_FLOATS = BeforeValidator(integral_float_as_int)
JsonInt = Annotated[int, INTEGRAL_FLOATS]
