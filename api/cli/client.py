"""The farm's HTTP API from the command line: where it is, the key, answers or errors in the farm's words."""

import json
from collections.abc import Iterator
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape

DEFAULT_URL = "http://127.0.0.1:8000"
# Long enough for an upload; the stream sends a keep-alive every 15 s, so a read never waits longer.
TIMEOUT = httpx.Timeout(60.0)

UrlOption = Annotated[str, typer.Option("--url", envvar="FARM_URL", help="Base URL of the farm's gateway.")]
ApiKeyOption = Annotated[
    str,
    typer.Option(
        "--api-key", envvar="FARM_API_KEY", help="An API key of the farm (make up printed one).", show_default=False
    ),
]

out = Console()
err = Console(stderr=True)


def fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)


def connect(url: str, api_key: str) -> httpx.Client:
    return httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=TIMEOUT)


def problem(response: httpx.Response) -> str:
    """What went wrong, as the farm said it (``detail``), else the HTTP status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    return f"{response.status_code} {response.reason_phrase}: {detail}" if detail else f"{response.status_code}"


def send(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, path, **kwargs)
    except httpx.TransportError as error:
        fail(f"cannot reach the farm at {client.base_url}: {error}")


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """The JSON answer of a successful request; otherwise exit 1 with the farm's error."""
    response = send(client, method, path, **kwargs)
    if not response.is_success:
        fail(problem(response))
    return response.json()


def stream_events(client: httpx.Client, prediction_id: str) -> Iterator[tuple[str, str]]:
    """(event, data) of a prediction's server-sent events until the farm closes the stream."""
    name, data = "message", []
    try:
        with client.stream("GET", f"/v1/predictions/{prediction_id}/stream") as response:
            if not response.is_success:
                response.read()
                fail(problem(response))
            for line in response.iter_lines():
                if line.startswith("event:"):
                    name = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    data.append(line.removeprefix("data:").removeprefix(" "))
                elif not line and data:
                    yield name, "\n".join(data)
                    name, data = "message", []
    except httpx.TransportError as error:
        fail(f"lost the stream of {prediction_id}: {error}")


def print_json(body: Any) -> None:
    """Plain JSON on stdout, for scripts (jq)."""
    typer.echo(json.dumps(body, indent=2))
