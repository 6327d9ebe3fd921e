"""A request's key lookup (every route but the polls): one statement on psycopg, the row as the ORM loads it."""

from models.db import session_scope
from models.keys import create_api_key, find_active_key, issue_api_key, revoke_key_row
from models.tables import ApiKey


def columns(row: ApiKey) -> dict[str, object]:
    return {name: getattr(row, name) for name in ApiKey.__mapper__.column_attrs.keys()}


def test_the_key_found_holds_what_the_orm_loads(database_url: str) -> None:
    with session_scope(database_url) as session:
        key = create_api_key(session, name="found")
    with session_scope(database_url) as session:
        found = find_active_key(session, key)
        loaded = session.get(ApiKey, found.id) if found is not None else None

        assert found is not None and loaded is not None and found is not loaded
        assert columns(found) == columns(loaded)


def test_a_revoked_or_unknown_key_finds_nothing(database_url: str) -> None:
    with session_scope(database_url) as session:
        row, doomed = issue_api_key(session, name="doomed")
        revoke_key_row(session, row)
    with session_scope(database_url) as session:
        assert find_active_key(session, doomed) is None
        assert find_active_key(session, "farm_unknown") is None
