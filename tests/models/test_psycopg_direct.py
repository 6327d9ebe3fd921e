"""Statements sent on psycopg itself: several in one round trip, in order, in the session's transaction."""

import tempfile

import psycopg
import pytest
from psycopg.pq._enums import Trace
from sqlalchemy import Integer, bindparam, select, text
from sqlalchemy.orm import Session

from models.db import session_scope
from models.psycopg_direct import PsycopgStatement, run_pipelined

PLUS_ONE = PsycopgStatement.compile(select(bindparam("n", type_=Integer) + 1))
INSERT = PsycopgStatement.compile(text("INSERT INTO scratch (n) VALUES (:n) RETURNING n"))
COUNT = PsycopgStatement.compile(text("SELECT count(*) FROM scratch"))


def with_scratch_table(session: Session) -> None:
    session.execute(text("CREATE TEMP TABLE scratch (n integer PRIMARY KEY) ON COMMIT DROP"))


def messages(session: Session, work: object) -> list[str]:
    """The protocol messages the session's connection exchanged while ``work()`` ran: "F …" sent, "B …" received."""
    pgconn = session.connection().connection.driver_connection.pgconn  # type: ignore[union-attr]
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
        work()  # type: ignore[operator]
        pgconn.untrace()
        trace.seek(0)
        return [line.split("\t")[0] + " " + line.split("\t")[2] for line in trace.read().splitlines()]


def test_statements_run_in_order_each_seeing_what_the_ones_before_wrote(database_url: str) -> None:
    with session_scope(database_url) as session:
        with_scratch_table(session)
        rows = run_pipelined(session, {"first": INSERT.bind(n=1), "second": INSERT.bind(n=2), "count": COUNT.bind()})

    assert rows == {"first": (1,), "second": (2,), "count": (2,)}


def test_they_go_in_one_round_trip(database_url: str) -> None:
    with session_scope(database_url) as session:
        with_scratch_table(session)  # the transaction is open: no BEGIN goes first
        sent = messages(session, lambda: run_pipelined(session, {str(n): INSERT.bind(n=n) for n in range(3)}))

    directions = [message[0] for message in sent]
    first_answer = directions.index("B")
    assert (
        directions[:first_answer].count("F") == len(directions[:first_answer]) and "F" not in directions[first_answer:]
    )
    assert sum(message.startswith("F Execute") for message in sent) == 3


def test_an_error_is_raised_and_the_transaction_keeps_none_of_it(database_url: str) -> None:
    with session_scope(database_url) as session:
        session.execute(text("CREATE TABLE scratch_kept (n integer PRIMARY KEY)"))
    kept = PsycopgStatement.compile(text("INSERT INTO scratch_kept (n) VALUES (:n) RETURNING n"))
    try:
        with pytest.raises(psycopg.errors.UniqueViolation), session_scope(database_url) as session:
            run_pipelined(session, {"first": kept.bind(n=1), "again": kept.bind(n=1), "after": kept.bind(n=2)})

        with session_scope(database_url) as session:
            assert session.execute(text("SELECT count(*) FROM scratch_kept")).scalar_one() == 0
    finally:
        with session_scope(database_url) as session:
            session.execute(text("DROP TABLE scratch_kept"))


def test_constants_are_written_into_the_sql_and_only_what_is_bound_is_a_parameter() -> None:
    statement = PsycopgStatement.compile(select(bindparam("n", type_=Integer) + 1).where(text("true")).limit(3))

    assert statement.sql.endswith("LIMIT 3") and "%(n)s" in statement.sql and "%(param" not in statement.sql


def test_a_parameter_left_unbound_is_an_error_not_a_null(database_url: str) -> None:
    with pytest.raises(psycopg.ProgrammingError, match="parameter missing: n"), session_scope(database_url) as session:
        run_pipelined(session, {"plus_one": PLUS_ONE.bind()})
