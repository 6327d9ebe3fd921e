"""Text the farm stores: Postgres cannot hold the NUL character (U+0000) in text or JSONB, so input that carries
one is refused with a 422 naming the field instead of failing in the database."""

from typing import Annotated, Any

from pydantic import AfterValidator, Field

NUL_MESSAGE = "must not contain the NUL character (\\u0000): remove it"


def has_nul(value: Any) -> bool:
    """Whether ``value``, or any string inside it (dict keys included), holds a NUL character."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(item) for item in value)
    return False


def without_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError(NUL_MESSAGE)
    return text


# The pattern tells clients (and the fuzz test) in the schema; the validator gives the message.
StoredText = Annotated[str, AfterValidator(without_nul), Field(json_schema_extra={"pattern": "^[^\\u0000]*$"})]
