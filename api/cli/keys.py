"""``farm keys create|list|set|revoke``: API keys, straight in the farm's database (FARM_DATABASE_URL)."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from api.cli.client import err, fail, out
from models.db import session_scope
from models.keys import find_api_key, issue_api_key, list_api_keys, revoke_api_key
from models.settings import get_settings
from models.tables import ApiKey

app = typer.Typer(
    help="Create, list, change and revoke API keys (operator: talks to the database in FARM_DATABASE_URL).",
    no_args_is_help=True,
)

# `set` takes a number, or this word to go back to the farm's default (for the spend cap: no cap).
DEFAULT_WORD = "default"
KeyRef = Annotated[str, typer.Argument(help="The key's id or its prefix as `list` shows it.", show_default=False)]


@contextmanager
def database() -> Iterator[Session]:
    """A transaction on the farm's database; connection and schema problems end the command with a hint."""
    url = get_settings().database_url
    try:
        with session_scope(url) as session:
            yield session
    except OperationalError as error:
        fail(f"cannot use the database {make_url(url).render_as_string()}: {error.orig}")
    except ProgrammingError as error:
        fail(f"{error.orig}: is the database migrated? Run farm migrate.")


def when(moment: datetime | None) -> str:
    return "–" if moment is None else moment.strftime("%Y-%m-%d %H:%M")


def limits_shown(key: ApiKey) -> tuple[str, str, str]:
    """Rate, unfinished cap and spend cap as `list` shows them; "default" where the farm's default applies."""
    rate = DEFAULT_WORD if key.rate_limit_per_minute is None else f"{key.rate_limit_per_minute}/min"
    unfinished = DEFAULT_WORD if key.max_unfinished is None else str(key.max_unfinished)
    cap = "none" if key.monthly_spend_cap_usd is None else f"${key.monthly_spend_cap_usd:.2f}"
    return rate, unfinished, cap


def limit_setting(option: str, value: str | None, minimum: float, *, integer: bool) -> float | int | None:
    """A `set` option's value: a number at least ``minimum``, or "default" (None: the farm's default)."""
    if value is None or value.strip().lower() in (DEFAULT_WORD, "none"):
        return None
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        fail(f"{option} {value!r}: give a {'whole ' if integer else ''}number, or {DEFAULT_WORD}")
    if number < minimum:
        fail(f"{option} {value!r}: must be at least {minimum:g}, or {DEFAULT_WORD}")
    return number


@app.command()
def create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.", show_default=False)],
    admin: Annotated[
        bool, typer.Option("--admin", help="May manage keys and see every key's usage over HTTP.")
    ] = False,
    rate_limit: Annotated[
        int | None,
        typer.Option(
            min=1, help="Requests per minute (creates and reads each); default: the farm's.", show_default=False
        ),
    ] = None,
    max_unfinished: Annotated[
        int | None,
        typer.Option(min=1, help="Unfinished predictions at once; default: the farm's.", show_default=False),
    ] = None,
    monthly_spend_cap: Annotated[
        float | None,
        typer.Option(min=0, help="USD of charged price per calendar month; default: no cap.", show_default=False),
    ] = None,
) -> None:
    """Create a key and print it: this is the only time it is shown."""
    with database() as session:
        _, key = issue_api_key(
            session,
            name=name,
            is_admin=admin,
            rate_limit_per_minute=rate_limit,
            max_unfinished=max_unfinished,
            monthly_spend_cap_usd=monthly_spend_cap,
        )
    # The key alone on stdout, so `KEY=$(farm keys create --name ci)` works.
    out.print(key, highlight=False, soft_wrap=True)
    role = "admin key" if admin else "key"
    err.print(f"Created {role} {name!r}. Store it now: it is not shown again.", highlight=False)


@app.command("list")
def list_keys() -> None:
    """Every key: id, name, public prefix, when created and last used, revoked or not, its limits, admin or not."""
    with database() as session:
        keys = list_api_keys(session)
        table = Table("id", "name", "prefix", "created", "last used", "revoked", "rate", "unfinished", "spend cap")
        table.add_column("admin")
        for key in keys:
            table.add_row(
                str(key.id),
                key.name,
                f"{key.key_prefix}…",
                when(key.created_at),
                when(key.last_used_at),
                when(key.revoked_at) if key.revoked_at else "",
                *limits_shown(key),
                "admin" if key.is_admin else "",
            )
    out.print(table)


@app.command("set")
def set_limits(
    key: KeyRef,
    rate_limit: Annotated[
        str | None, typer.Option(help="Requests per minute, or 'default'.", show_default=False)
    ] = None,
    max_unfinished: Annotated[
        str | None, typer.Option(help="Unfinished predictions at once, or 'default'.", show_default=False)
    ] = None,
    monthly_spend_cap: Annotated[
        str | None, typer.Option(help="USD per calendar month, or 'none'.", show_default=False)
    ] = None,
    admin: Annotated[
        bool | None, typer.Option("--admin/--no-admin", help="Make it an admin key, or an ordinary one.")
    ] = None,
) -> None:
    """Change a key's limits or role; options left out keep their value. Takes effect at its next request."""
    changes = {
        column: limit_setting(option, value, minimum, integer=integer)
        for column, option, value, minimum, integer in (
            ("rate_limit_per_minute", "--rate-limit", rate_limit, 1, True),
            ("max_unfinished", "--max-unfinished", max_unfinished, 1, True),
            ("monthly_spend_cap_usd", "--monthly-spend-cap", monthly_spend_cap, 0, False),
        )
        if value is not None
    }
    if admin is not None:
        changes["is_admin"] = admin
    if not changes:
        fail("nothing to change: give --rate-limit, --max-unfinished, --monthly-spend-cap, --admin or --no-admin")
    try:
        with database() as session:
            row = find_api_key(session, key)
            for column, value in changes.items():
                setattr(row, column, value)
            rate, unfinished, cap = limits_shown(row)
            summary = f"key {row.id} {row.name!r}: rate {rate}, unfinished {unfinished}, spend cap {cap}"
            role = "admin" if row.is_admin else "not admin"
    except LookupError as error:
        fail(str(error))
    out.print(f"{summary}, {role}", highlight=False)


@app.command()
def revoke(key: KeyRef) -> None:
    """Revoke a key: requests with it are refused (401) from now on."""
    try:
        with database() as session:
            row = revoke_api_key(session, key)
            name, key_id, prefix = row.name, row.id, row.key_prefix
    except LookupError as error:
        fail(str(error))
    out.print(f"revoked key {key_id} {name!r} ({prefix}…)", highlight=False)
