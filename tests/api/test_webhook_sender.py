"""One webhook attempt against real sockets on loopback: signatures (checked with `standardwebhooks`), the
SSRF guard at send time, redirects, timeouts and the capped read of the receiver's answer."""

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
from standardwebhooks import Webhook

from api.webhook_sender import EXCERPT_CHARS, AttemptResult, parse_retry_after, send, signature_header
from models.keys import new_webhook_secret
from models.net_guard import NetGuard
from models.webhooks import Outcome
from tests.http_servers import accept_recorder
from tests.webhook_receiver import Answer, webhook_receiver

LOOPBACK = NetGuard.from_setting("127.0.0.0/8")
BODY = b'{"id":"p1","status":"succeeded"}'


def post(guard: NetGuard, url: str, secrets: list[str] | None = None, timeout_s: float = 5.0) -> AttemptResult:
    secrets = secrets or [new_webhook_secret()]
    return send(guard, url, message_id="msg_1", body=BODY, secrets=secrets, timeout_s=timeout_s)


def test_each_secret_signs_and_the_standard_library_verifies_either() -> None:
    old, new = new_webhook_secret(), new_webhook_secret()
    with webhook_receiver() as receiver:
        result = post(LOOPBACK, receiver.url, [new, old])
        [delivery] = receiver.deliveries

    assert result.outcome is Outcome.DELIVERED and result.status_code == 200
    assert delivery.body == BODY and delivery.webhook_id == "msg_1"
    assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 60
    for secret in (old, new):
        assert Webhook(secret).verify(delivery.body, delivery.headers) == {"id": "p1", "status": "succeeded"}
    assert delivery.headers["webhook-signature"] == signature_header(
        [new, old], "msg_1", int(delivery.headers["webhook-timestamp"]), BODY
    )


def test_dns_rebinding_between_accepting_and_sending_is_refused_before_connecting() -> None:
    answers = [["93.184.216.34"], ["127.0.0.1"]]  # public when the request is accepted, loopback at send time

    def rebinding(_host: str, _port: int) -> Sequence[str]:
        return answers.pop(0)

    guard = NetGuard(resolver=rebinding)
    with accept_recorder() as listener:
        url = f"http://hooks.example:{listener.port}/"
        guard.resolve(httpx.URL(url))  # the check when the prediction is accepted passes
        result = post(guard, url)

    assert result.outcome is Outcome.BLOCKED and result.status_code is None
    assert "loopback" in str(result.error)
    assert listener.accepted == []


def test_a_redirect_is_not_followed() -> None:
    with accept_recorder() as elsewhere:
        target = f"http://127.0.0.1:{elsewhere.port}/"
        with webhook_receiver(lambda _, __: Answer(307, {"Location": target})) as receiver:
            result = post(LOOPBACK, receiver.url)

    assert result.outcome is Outcome.REJECTED and result.status_code == 307
    assert target in str(result.error) and "not followed" in str(result.error)
    assert elsewhere.accepted == []


def test_a_receiver_that_does_not_answer_in_time_is_unreachable() -> None:
    never = threading.Event()
    with webhook_receiver(lambda _, __: Answer(hold=never)) as receiver:
        result = post(LOOPBACK, receiver.url, timeout_s=0.5)
        never.set()

    assert result.outcome is Outcome.UNREACHABLE and "no answer within 0.5 s" in str(result.error)


def test_only_the_start_of_a_huge_answer_is_read() -> None:
    with webhook_receiver(lambda _, __: Answer(500, body=b"x" * 20_000_000)) as receiver:
        result = post(LOOPBACK, receiver.url)

    assert result.outcome is Outcome.REJECTED and result.status_code == 500
    assert result.response_excerpt == "x" * EXCERPT_CHARS


def test_retry_after_reads_seconds_and_dates() -> None:
    assert parse_retry_after("120") == timedelta(seconds=120)
    in_a_minute = parse_retry_after(format_datetime(datetime.now(UTC) + timedelta(minutes=1), usegmt=True))
    assert in_a_minute is not None and timedelta(seconds=55) < in_a_minute <= timedelta(minutes=1)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
