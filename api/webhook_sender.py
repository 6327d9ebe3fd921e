"""One webhook attempt: sign the body (Standard Webhooks), POST it through the SSRF guard, and say what
came of it. Redirects are never followed; the answer's body is read up to a cap and then dropped.
"""

import base64
import hashlib
import hmac
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import cache

import httpx

from models.net_guard import BlockedURL, FetchError, NetGuard, default_ssl_context
from models.webhooks import Outcome

USER_AGENT = "sd35-farm-webhooks/1"
CONNECT_TIMEOUT_S = 5.0
# Enough of the receiver's answer to show in the attempt log; the rest is never read.
MAX_RESPONSE_BYTES = 64 * 1024
EXCERPT_CHARS = 1000
RETRY_AFTER_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    status_code: int | None
    latency_ms: float
    error: str | None = None
    response_excerpt: str | None = None
    retry_after: timedelta | None = None


def signature_header(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` per secret, space-separated (rotation sends two)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    signatures = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode())
    return " ".join(signatures)


def parse_retry_after(value: str | None) -> timedelta | None:
    """Retry-After as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return timedelta(seconds=int(value))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC by RFC 5322
        moment = moment.replace(tzinfo=UTC)
    return max(moment - datetime.now(UTC), timedelta())


@cache
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying context for every send: loading the CA bundle costs milliseconds each time."""
    return default_ssl_context()


def _read_capped(response: httpx.Response) -> str:
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) >= MAX_RESPONSE_BYTES:
            break
    return body[:EXCERPT_CHARS].decode("utf-8", errors="replace")


def send(
    guard: NetGuard, url: str, *, message_id: str, body: bytes, secrets: list[str], timeout_s: float
) -> AttemptResult:
    """POST one signed event to ``url``; never raises for the receiver's failures."""
    timestamp = int(time.time())  # per attempt: receivers reject stale timestamps
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, message_id, timestamp, body),
    }
    timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
    started = time.perf_counter()

    def elapsed_ms() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    try:
        with (
            guard.client(timeout=timeout, max_redirects=0, verify=shared_ssl_context()) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            excerpt = _read_capped(response)
            latency, code = elapsed_ms(), response.status_code
            if 200 <= code < 300:
                return AttemptResult(Outcome.DELIVERED, code, latency, response_excerpt=excerpt)
            if code == 410:
                error = "the receiver answered 410 Gone: nothing more is sent to this URL for this key"
                return AttemptResult(Outcome.GONE, code, latency, error, excerpt)
            if 300 <= code < 400:
                where = response.headers.get("location", "?")
                error = f"the receiver redirected ({code} to {where}); redirects are not followed: use the final URL"
                return AttemptResult(Outcome.REJECTED, code, latency, error, excerpt)
            retry_after = (
                parse_retry_after(response.headers.get("retry-after")) if code in RETRY_AFTER_STATUSES else None
            )
            error = f"the receiver answered {code} {response.reason_phrase}; a 2xx is needed"
            return AttemptResult(Outcome.REJECTED, code, latency, error, excerpt, retry_after)
    except BlockedURL as blocked:
        return AttemptResult(Outcome.BLOCKED, None, elapsed_ms(), f"not sent: {blocked}")
    except httpx.TimeoutException:
        return AttemptResult(Outcome.UNREACHABLE, None, elapsed_ms(), f"no answer within {timeout_s:g} s")
    except (FetchError, httpx.HTTPError) as error:
        return AttemptResult(Outcome.UNREACHABLE, None, elapsed_ms(), f"could not connect: {error}")
