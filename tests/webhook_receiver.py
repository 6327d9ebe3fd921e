"""A customer's webhook receiver: a real HTTP server on loopback that records every POST (headers, raw
body, arrival time) and answers as the test plans, per webhook-id and attempt."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.http_servers import serving

WAIT_TIMEOUT_S = 120


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    hold: threading.Event | None = None  # answer only once this is set (a receiver that hangs)


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.monotonic()

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


# (the delivery, how many earlier deliveries had its webhook-id) -> the answer
Plan = Callable[[Delivery, int], Answer]


def always_ok(_: Delivery, __: int) -> Answer:
    return Answer()


@dataclass
class Receiver:
    url: str
    port: int
    plan: Plan
    deliveries: list[Delivery] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, done: Callable[[list[Delivery]], bool], timeout: float = WAIT_TIMEOUT_S) -> list[Delivery]:
        """Block until ``done(deliveries)``; fail with what arrived on timeout."""
        with self.changed:
            if not self.changed.wait_for(lambda: done(self.deliveries), timeout=timeout):
                raise AssertionError(f"receiver still waiting; got {[d.headers for d in self.deliveries]}")
            return list(self.deliveries)

    def of(self, webhook_id: str) -> list[Delivery]:
        return [delivery for delivery in self.deliveries if delivery.webhook_id == webhook_id]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            delivery = Delivery(self.path, headers, body, time.monotonic())
            with receiver.changed:
                earlier = len(receiver.of(delivery.webhook_id))
                receiver.deliveries.append(delivery)
                receiver.changed.notify_all()
            answer = receiver.plan(delivery, earlier)
            if answer.hold is not None:
                answer.hold.wait(WAIT_TIMEOUT_S)
            try:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender is gone (killed mid-send): expected in that test

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


@contextmanager
def webhook_receiver(plan: Plan = always_ok) -> Iterator[Receiver]:
    receiver = Receiver(url="", port=0, plan=plan)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.port = int(httpd.server_address[1])
    receiver.url = f"http://127.0.0.1:{receiver.port}"
    with serving(httpd):
        yield receiver
