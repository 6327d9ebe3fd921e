"""``farm usage``: the key's predictions, GPU-seconds, cost and price per day or month (GET /v1/usage)."""

from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli.client import DEFAULT_URL, ApiKeyOption, UrlOption, connect, fail, out, print_json, problem, send

# Columns in the order the API's totals list them, with how each is printed.
COLUMNS: list[tuple[str, str]] = [
    ("predictions", "{:d}"),
    ("succeeded", "{:d}"),
    ("failed", "{:d}"),
    ("canceled", "{:d}"),
    ("images", "{:d}"),
    ("gpu_seconds", "{:.1f}"),
    ("cost_usd", "${:.4f}"),
    ("price_usd", "${:.4f}"),
]


def cells(figures: dict[str, Any]) -> list[str]:
    return ["–" if figures.get(name) is None else template.format(figures[name]) for name, template in COLUMNS]


def usage_table(report: dict[str, Any]) -> Table:
    since, until = (str(report[end])[:16].replace("T", " ") for end in ("since", "until"))
    table = Table(title=f"Usage {since} – {until} UTC, per {report['period']}")
    table.add_column(report["period"])
    for name, _ in COLUMNS:
        table.add_column(name.replace("_", " "), justify="right")
    for row in report["periods"]:
        table.add_row(str(row["start"])[:10], *cells(row))
    table.add_section()
    table.add_row("total", *cells(report["totals"]), style="bold")
    return table


def usage(
    api_key: ApiKeyOption,
    url: UrlOption = DEFAULT_URL,
    since: Annotated[
        str | None, typer.Option(help="Start, ISO 8601 (2026-11-01); default: the 1st of this month, UTC.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="End (exclusive), ISO 8601; default: now.")] = None,
    period: Annotated[str, typer.Option(help="Rows per day or month.")] = "day",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as the API returns it.")] = False,
) -> None:
    """Your key's predictions, images, GPU-seconds, cost and price, per day or month."""
    params = {"period": period, **({"since": since} if since else {}), **({"until": until} if until else {})}
    with connect(url, api_key) as client:
        response = send(client, "GET", "/v1/usage", params=params)
    if response.status_code == 404:
        fail(f"usage isn't available on the farm at {url} (GET /v1/usage answered 404)")
    if not response.is_success:
        fail(problem(response))
    report = response.json()
    if as_json:
        print_json(report)
        return
    out.print(usage_table(report))
