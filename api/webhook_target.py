"""Accepting a webhook with a prediction: a URL the farm may post to, and the events wanted.

The URL is checked here, when the request is accepted, and again by the dispatcher at every send
(DNS may change in between).
"""

from collections.abc import Sequence
from datetime import UTC

import httpx
from sqlalchemy.orm import Session

from api.errors import InputError
from models.net_guard import FetchError, NetGuard
from models.settings import Settings
from models.webhooks import EVENTS, WebhookFormat, WebhookTarget, disabled_since

MAX_URL_LENGTH = 2048
# fal and Eachlabs post once, when the request ends.
COMPLETION_ONLY = ("completed",)


def webhook_events(events: Sequence[str] | None, *, field: str) -> tuple[str, ...]:
    """The events a native webhook wants: all of them by default (Replicate's behaviour)."""
    if events is None:
        return EVENTS
    if not events:
        raise InputError.field(field, f"name at least one event of {', '.join(EVENTS)}, or leave it out for all", [])
    unknown = [event for event in events if event not in EVENTS]
    if unknown:
        raise InputError.field(field, f"unknown event {unknown[0]!r}: use any of {', '.join(EVENTS)}", list(events))
    return tuple(dict.fromkeys(events))


def accept_webhook(
    session: Session,
    *,
    api_key_id: int,
    settings: Settings,
    url: str | None,
    events: tuple[str, ...] = COMPLETION_ONLY,
    fmt: WebhookFormat = WebhookFormat.NATIVE,
    field: str = "webhook",
) -> WebhookTarget | None:
    """The webhook to record with the prediction, or None without a URL; InputError naming ``field``
    when the farm may not or cannot post there."""
    if not url:
        return None
    if len(url) > MAX_URL_LENGTH:
        raise InputError.field(field, f"the URL is longer than {MAX_URL_LENGTH} characters", url[:100] + "…")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise InputError.field(field, f"not a URL ({error}): give an absolute https:// URL", url) from None
    if not parsed.is_absolute_url:
        raise InputError.field(field, "not an absolute URL: give one like https://example.com/hooks/farm", url)
    try:
        NetGuard.from_setting(settings.allowed_networks).resolve(parsed)
    except FetchError as error:
        raise InputError.field(field, f"webhooks cannot be sent there: {error}", url) from None
    disabled_at = disabled_since(session, api_key_id=api_key_id, url=url)
    if disabled_at is not None:
        raise InputError.field(
            field,
            f"this URL answered 410 Gone on {disabled_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC, so webhooks to it "
            "are disabled for this key: use another URL, or re-enable it with POST /v1/webhooks/default/enable",
            url,
        )
    return WebhookTarget(url=url, events=events, format=fmt)
