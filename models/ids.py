"""Prediction and file ids in Replicate's shape: 26 lowercase base32 characters from 128 random bits."""

import base64
import secrets


def new_prediction_id() -> str:
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def new_file_id() -> str:
    return new_prediction_id()
