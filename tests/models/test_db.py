"""Session scopes on real Postgres: a transaction around the work, or each statement on its own; the read pool's
prepared statements."""

import asyncio
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from models.db import PREPARE_THRESHOLD, get_read_engine, get_read_sessionmaker, run_raw_read, run_read, session_scope

# Two statements' transaction start times: equal inside one transaction, apart when each is its own.
TWO_STARTS = (text("SELECT now()"), text("SELECT pg_sleep(0.01), now()"))


def starts(database_url: str, *, autocommit: bool) -> tuple[object, object]:
    with session_scope(database_url, autocommit=autocommit) as session:
        first = session.execute(TWO_STARTS[0]).scalar_one()
        second = session.execute(TWO_STARTS[1]).one()[1]
    return first, second


def test_a_scope_is_one_transaction(database_url: str) -> None:
    first, second = starts(database_url, autocommit=False)
    assert first == second


def test_an_autocommit_scope_runs_each_statement_on_its_own(database_url: str) -> None:
    first, second = starts(database_url, autocommit=True)
    assert first != second


def test_a_connection_goes_back_to_the_pool_transactional_after_an_autocommit_scope(database_url: str) -> None:
    for _ in range(3):  # the pool hands the same connection out again
        starts(database_url, autocommit=True)
        first, second = starts(database_url, autocommit=False)
        assert first == second


def prepared_on_the_connection(session: Session) -> int:
    for _ in range(PREPARE_THRESHOLD + 1):
        session.execute(text("SELECT 1 + :n"), {"n": 1})
    return int(session.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one())


async def prepared_after_repeats(database_url: str, *, prepared: bool) -> int:
    sessions = get_read_sessionmaker(database_url, prepared=prepared)
    try:
        async with sessions() as session:
            return await run_read(session, prepared_on_the_connection)
    finally:
        await sessions.kw["bind"].dispose()  # its connections belong to this test's event loop


def test_the_read_pool_prepares_a_statement_it_runs_again(database_url: str) -> None:
    assert asyncio.run(prepared_after_repeats(database_url, prepared=True)) >= 1


def test_the_read_pool_can_do_without_prepared_statements(database_url: str) -> None:
    assert asyncio.run(prepared_after_repeats(database_url, prepared=False)) == 0


async def backend_pid(connection: psycopg.AsyncConnection[Any]) -> int:
    row = await (await connection.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    return int(row[0])


async def reads_across_a_killed_connection(database_url: str) -> tuple[int, int]:
    engine = get_read_engine(database_url)
    try:
        first = await run_raw_read(engine, backend_pid)
        with session_scope(database_url) as session:  # as a Postgres restart would, to the pooled connection
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        return first, await run_raw_read(engine, backend_pid)
    finally:
        await engine.dispose()  # its connections belong to this test's event loop


def test_a_raw_read_that_meets_a_dead_connection_runs_again_on_a_fresh_one(database_url: str) -> None:
    first, second = asyncio.run(reads_across_a_killed_connection(database_url))
    assert second != first
