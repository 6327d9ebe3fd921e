"""The ``Cancel-After`` header: a duration after which the prediction is canceled, queued or running.

Formats as Replicate accepts them: ``30s``, ``5m``, ``1h30m45s``, or a bare number of seconds.
"""

import re
from datetime import timedelta

from api.errors import InputError

MIN_CANCEL_AFTER = timedelta(seconds=5)
DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")


def parse_cancel_after(value: str) -> timedelta:
    """The duration in ``value``; a 422 naming the header when it is not one, or under 5 s."""
    text = value.strip()
    try:
        duration = timedelta(seconds=float(text))
    except ValueError:
        match = DURATION.match(text)
        if not text or match is None:
            raise _invalid(value, "use a duration such as 30s, 5m, 1h30m45s or a number of seconds") from None
        hours, minutes, seconds = (float(match.group(name) or 0) for name in ("h", "m", "s"))
        duration = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if duration < MIN_CANCEL_AFTER:
        raise _invalid(value, "must be at least 5s")
    return duration


def _invalid(value: str, message: str) -> InputError:
    return InputError.field("Cancel-After", message, value)
