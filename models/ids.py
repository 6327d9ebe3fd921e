"""Prediction and file ids in Replicate's shape: 26 lowercase base32 characters from 128 random bits."""

import base64
import re
import secrets

# What an id of this farm can look like (ids are at most 32 characters in the database); anything else, such as a
# NUL character Postgres cannot even compare, names nothing, without asking the database.
ID_SHAPE = re.compile(r"[a-z0-9]{1,32}")


def new_prediction_id() -> str:
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def new_file_id() -> str:
    return new_prediction_id()


def could_be_id(text: str) -> bool:
    return ID_SHAPE.fullmatch(text) is not None
