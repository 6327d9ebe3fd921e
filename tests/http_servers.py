"""Small real servers on loopback for the outbound-HTTP tests: an HTTP(S) server that serves fixed
responses and records what reached it, and a bare listener that records connection attempts."""

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trustme


@dataclass
class Reply:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    declare_length: bool = True  # False: no Content-Length, the body ends when the connection closes


@dataclass
class Seen:
    path: str
    host: str


@dataclass
class RecordingServer:
    url: str
    port: int
    routes: dict[str, Reply]
    requests: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)


def _handler(server: RecordingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests.append(Seen(self.path, self.headers.get("Host", "")))
            reply = server.routes.get(self.path, Reply(b"not found", 404))
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.declare_length:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            try:
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the client gave up mid-body (size cap): expected

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


@contextmanager
def recording_server(
    routes: dict[str, Reply],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: trustme.CA | None = None,
    hostnames: tuple[str, ...] = ("localhost",),
) -> Iterator[RecordingServer]:
    """Serve ``routes`` on ``host``; with ``tls``, HTTPS with a certificate for ``hostnames`` only."""
    placeholder = RecordingServer(url="", port=0, routes=routes)
    httpd = ThreadingHTTPServer((host, port), _handler(placeholder))
    bound_port = httpd.server_address[1]
    scheme = "http"
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.issue_cert(*hostnames).configure_cert(context)
        context.sni_callback = lambda _sock, name, _ctx: placeholder.sni.append(name)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        scheme = "https"
    placeholder.url, placeholder.port = f"{scheme}://{host}:{bound_port}", int(bound_port)
    with serving(httpd):
        yield placeholder


@contextmanager
def serving(httpd: ThreadingHTTPServer) -> Iterator[None]:
    """Run ``httpd`` on a thread for the duration of the block."""
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class AcceptRecorder:
    """A listening socket that records every connection made to it."""

    host: str
    port: int
    accepted: list[str] = field(default_factory=list)


@contextmanager
def accept_recorder(host: str = "127.0.0.1", port: int = 0) -> Iterator[AcceptRecorder]:
    listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.settimeout(0.05)
    recorder = AcceptRecorder(host, listener.getsockname()[1])
    stopping = threading.Event()

    def accept_loop() -> None:
        while not stopping.is_set():
            try:
                connection, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            recorder.accepted.append(str(peer[0]))
            connection.close()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        stopping.set()
        thread.join()
        listener.close()
