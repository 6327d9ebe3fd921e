"""Per-key request rates, counted in Redis so every gateway process shares them (`limits`, sliding
window counter: two counters per key, O(1) per request).

Two buckets per key: requests that create or change something, and reads, which the peers' clients
make every 0.1-0.5 s while they poll. A key's own limit (``api_keys.rate_limit_per_minute``) applies
to both. When Redis cannot be reached the request goes through: accepting work must not depend on
the broker (Postgres holds it until Redis is back).
"""

import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache

from fastapi import HTTPException
from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.settings import Settings
from models.tables import ApiKey

log = logging.getLogger("farm.gateway")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATE_KEY = "rate_limit"


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_seconds: int  # until the window frees a request

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }


@lru_cache
def limiter(redis_url: str) -> SlidingWindowCounterRateLimiter:
    """The process's limiter on redis-py's asyncio client: counting waits for Redis without a thread."""
    storage = RedisStorage(f"async+{redis_url}", implementation="redispy", wrap_exceptions=True, socket_timeout=1.0)
    return SlidingWindowCounterRateLimiter(storage)


async def check_rate(settings: Settings, key: ApiKey, method: str) -> RateLimitState | None:
    """Count this request against the key's bucket; 429 with Retry-After when it is over. None when
    Redis cannot be reached (the request goes through uncounted)."""
    reads = method in READ_METHODS
    default = settings.read_rate_limit_per_minute if reads else settings.create_rate_limit_per_minute
    per_minute = key.rate_limit_per_minute or default
    item, identity = RateLimitItemPerMinute(per_minute), (str(key.id), "read" if reads else "write")
    try:
        rates = limiter(settings.broker_url)
        allowed = await rates.hit(item, *identity)
        reset_at, remaining = await rates.get_window_stats(item, *identity)
    except StorageError as error:
        log.warning("rate limits not counted: Redis unreachable (%s)", error.storage_error)
        return None
    state = RateLimitState(per_minute, remaining, max(1, math.ceil(reset_at - time.time())))
    if not allowed:
        kind = "reads" if reads else "requests that create or change something"
        raise HTTPException(
            429,
            f"Rate limit reached: this key may make {per_minute} {kind} per minute. Retry in {state.reset_seconds} s.",
            headers={**state.headers(), "Retry-After": str(state.reset_seconds)},
        )
    return state


class RateLimitHeaders:
    """Adds the X-RateLimit-* headers of the request's key to its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            state = scope.get("state", {}).get(STATE_KEY)
            if message["type"] == "http.response.start" and isinstance(state, RateLimitState):
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.lower().encode(), value.encode())
                    for name, value in state.headers().items()
                    if name.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
