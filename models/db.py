"""Declarative base with a naming convention, and the engine/session factory."""

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine, MetaData, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

T = TypeVar("T")

# Stable constraint names so Alembic migrations are reproducible and revertable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# connect_timeout: an unreachable server (not one refusing) must fail fast enough for retries to matter.
# No server-side prepared statements, but on the read pool (get_read_sessionmaker): elsewhere they saved
# nothing measurable here, and before PgBouncer 1.21 they break behind it in transaction mode.
CONNECT_ARGS = {"connect_timeout": 5, "prepare_threshold": None}
# psycopg's default: a statement run this many times on a connection is prepared there (parsed and planned once).
PREPARE_THRESHOLD = 5
# A fixed pool per engine and process, no overflow: a connection opened beyond the pool is closed when
# returned, and under load that churn (a Postgres backend forked per request) cost more than the queries.
# 20 covers the gateway's 40 request threads (each holds one only while its queries run).
POOL_SIZE = 20


def get_engine(database_url: str, *, pre_ping: bool = True) -> Engine:
    """One pooled engine per URL, ping setting and process. ``pre_ping`` tests a pooled connection with a round trip
    before each checkout, so a request never fails on a connection that a Postgres restart killed; callers that
    retry a transaction on a connection error (the worker's, ``worker.db_retry``) can go without it."""
    return _engine(database_url, pre_ping)


@lru_cache  # positional arguments only, so that every way of calling get_engine finds the same engine
def _engine(database_url: str, pre_ping: bool) -> Engine:
    return create_engine(
        database_url, pool_pre_ping=pre_ping, pool_size=POOL_SIZE, max_overflow=0, connect_args=CONNECT_ARGS
    )


def get_read_sessionmaker(database_url: str, *, prepared: bool = True) -> async_sessionmaker[AsyncSession]:
    """Sessions on the read pool (``get_read_engine``). ``run_read`` runs this package's (sync) functions on them."""
    return _read_sessionmaker(database_url, prepared)


@lru_cache  # positional arguments only, as _engine
def _read_sessionmaker(database_url: str, prepared: bool) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(_read_engine(database_url, prepared), expire_on_commit=False)


def get_read_engine(database_url: str, *, prepared: bool = True) -> AsyncEngine:
    """The pool of the gateway's hot paths (the caller's key, polls): psycopg's async connections, so a request
    waits for Postgres without holding a thread, in autocommit, so each statement is one round trip with no BEGIN
    and COMMIT around it (each reads its own snapshot; a single-statement write commits at once). Its connections
    belong to the event loop that opened them.

    No ping before each checkout, unlike ``get_engine``: it was one round trip more on every poll. A connection
    that a Postgres restart killed fails its first statement instead; every pooled connection of that time is then
    marked stale, and ``run_read`` and ``run_raw_read`` run the read again on a fresh one.

    ``prepared`` (``Settings.database_prepared_statements``): its statements are prepared on each connection,
    so Postgres plans a poll's statement once per connection instead of on every poll."""
    return _read_engine(database_url, prepared)


@lru_cache  # positional arguments only, as _engine
def _read_engine(database_url: str, prepared: bool) -> AsyncEngine:
    return create_async_engine(
        database_url,
        pool_size=POOL_SIZE,
        max_overflow=0,
        isolation_level="AUTOCOMMIT",
        connect_args={**CONNECT_ARGS, "prepare_threshold": PREPARE_THRESHOLD if prepared else None},
    )


async def run_raw_read(engine: AsyncEngine, read: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    """``read`` on a pooled connection of ``engine`` (``get_read_engine``) as psycopg's own, without SQLAlchemy's
    execution layer; run once more on a fresh connection if that one turned out dead (only for reads, and writes
    that may run twice)."""
    async with engine.connect() as connection:
        pooled = await connection.get_raw_connection()
        driver: psycopg.AsyncConnection[Any] = pooled.driver_connection  # type: ignore[assignment]
        try:
            return await read(driver)
        except psycopg.OperationalError as error:
            if not driver.broken:
                raise
            # What SQLAlchemy does when a statement of its own meets a dead connection: every connection pooled
            # before now is stale (a Postgres restart killed them all), to be replaced at its next checkout.
            engine.sync_engine.pool._invalidate(pooled, error)
    async with engine.connect() as connection:
        pooled = await connection.get_raw_connection()
        return await read(pooled.driver_connection)  # type: ignore[arg-type]


async def run_read(session: AsyncSession, read: Callable[..., T], *args: Any) -> T:
    """``read(session, *args)`` on a read session (``get_read_sessionmaker``), run once more if its connection
    turned out dead: only for reads, and writes that may run twice (one statement, the same outcome)."""
    try:
        return await session.run_sync(read, *args)
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        await session.rollback()  # gives the dead connection back
        return await session.run_sync(read, *args)


def get_sessionmaker(database_url: str, *, pre_ping: bool = True, autocommit: bool = False) -> sessionmaker[Session]:
    return _sessionmaker(database_url, pre_ping, autocommit)


@lru_cache
def _sessionmaker(database_url: str, pre_ping: bool, autocommit: bool) -> sessionmaker[Session]:
    engine = _engine(database_url, pre_ping)
    # The same pool either way: the isolation level is set on checkout and reset on return, with no round trip.
    return sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT") if autocommit else engine, expire_on_commit=False
    )


@contextmanager
def session_scope(database_url: str, *, pre_ping: bool = True, autocommit: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back on error (``pre_ping``: see ``get_engine``).

    ``autocommit``: each statement commits on its own, with no ``BEGIN`` and ``COMMIT`` round trips around it;
    only for work whose writes are one statement, so that there is nothing to roll back."""
    with get_sessionmaker(database_url, pre_ping=pre_ping, autocommit=autocommit)() as session, session.begin():
        yield session


def libpq_url(database_url: str, database: str | None = None) -> str:
    """The SQLAlchemy URL in libpq form for psycopg (optionally naming another database on the server)."""
    url = make_url(database_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)
