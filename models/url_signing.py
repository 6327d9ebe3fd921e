"""Signed, expiring URLs for files of the local-directory storage: ``/files/{key}?expires=…&signature=…``.

The signature is HMAC-SHA256 over the expiry and the key, with one secret every process of the farm shares
(gateways and the webhook dispatcher render URLs, a gateway checks them). The farm makes that secret itself on
first use and keeps it in Postgres (``farm_secrets``), so nothing has to be configured or copied between
hosts; ``FARM_OUTPUT_URL_SECRET`` replaces it where an operator wants to set it.
"""

import base64
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from models.db import session_scope
from models.tables import FarmSecret

SECRET_NAME = "output_url_signing"
SECRET_BYTES = 32
# Expiries are rounded up to whole minutes, so a client polling a prediction keeps getting the same URL for
# a minute (browsers and proxies cache by URL) and a URL lives at least as long as configured.
EXPIRY_STEP_SECONDS = 60
MAX_EXPIRES_DIGITS = 12  # unix seconds until the year 33658: longer is not an expiry this farm wrote
FRESH_URL_HINT = "fetch the prediction again (GET /v1/predictions/{id}) for a fresh output URL"


class UrlRejected(Exception):
    """A file URL whose signature is missing, wrong or expired; the message says which and what to do."""


@lru_cache
def url_signing_secret(database_url: str, configured: str = "") -> bytes:
    """The farm's URL signing secret: ``configured`` when set, else the one in Postgres, made on first use.
    Read once per process."""
    if configured:
        return configured.encode()
    with session_scope(database_url) as session:
        # Concurrent first uses (several processes starting at once) agree on whichever insert won.
        session.execute(
            insert(FarmSecret)
            .values(name=SECRET_NAME, value=secrets.token_hex(SECRET_BYTES))
            .on_conflict_do_nothing(index_elements=["name"])
        )
        value = session.scalar(select(FarmSecret.value).where(FarmSecret.name == SECRET_NAME))
    assert value is not None
    return bytes.fromhex(value)


class UrlSigner:
    """Signs storage keys into query strings valid for ``seconds`` and checks them.

    ``secret`` is called on first use only: processes that never render or check a URL (workers) never
    need it.
    """

    def __init__(self, secret: Callable[[], bytes], seconds: int) -> None:
        self._secret_source = secret
        self._secret: bytes | None = None
        self.seconds = seconds

    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = self._secret_source()
        return self._secret

    def signature(self, key: str, expires: int) -> str:
        digest = hmac.new(self.secret(), f"{expires}:{key}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def query(self, key: str, now: float | None = None) -> str:
        """``expires=<unix seconds>&signature=<base64url>`` for ``key``."""
        moment = time.time() if now is None else now
        expires = math.ceil((moment + self.seconds) / EXPIRY_STEP_SECONDS) * EXPIRY_STEP_SECONDS
        return f"expires={expires}&signature={self.signature(key, expires)}"

    def check(self, key: str, expires: str | None, signature: str | None, now: float | None = None) -> None:
        """Raise UrlRejected unless ``signature`` signs ``key`` until ``expires`` and that is still ahead."""
        if not expires or not signature:
            raise UrlRejected(f"This file URL is not signed: {FRESH_URL_HINT}.")
        well_formed = expires.isascii() and expires.isdigit() and len(expires) <= MAX_EXPIRES_DIGITS
        if not well_formed or not hmac.compare_digest(self.signature(key, int(expires)).encode(), signature.encode()):
            raise UrlRejected(f"This file URL's signature does not match: {FRESH_URL_HINT}.")
        if int(expires) <= (time.time() if now is None else now):
            moment = datetime.fromtimestamp(int(expires), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            raise UrlRejected(f"This file URL expired at {moment}: {FRESH_URL_HINT}.")
