"""Session scopes on real Postgres: a transaction around the work, or each statement on its own."""

from sqlalchemy import text

from models.db import session_scope

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
