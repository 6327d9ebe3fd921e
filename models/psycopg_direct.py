"""Statements built with SQLAlchemy and sent on psycopg itself, for the gateway's hottest paths.

On those paths SQLAlchemy's execution layer costs the gateway more CPU than Postgres spends answering the
statement. Built once as SQLAlchemy expressions, compiled once, then sent as they are: alone (a poll's read,
``models.poll_read``; a request's key, ``models.keys``), or several in one round trip (a create, ``run_pipelined``).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from sqlalchemy import BindParameter, ClauseElement
from sqlalchemy.dialects.postgresql.psycopg import PGCompiler_psycopg, PGDialect_psycopg
from sqlalchemy.orm import Session

from models.db import Base

Row = tuple[Any, ...]
ModelT = TypeVar("ModelT", bound=Base)


class ConstantsInSql(PGCompiler_psycopg):
    """Writes a statement's constants (statuses, limits) into its SQL: only what the caller binds stays a
    parameter. A prepared statement's generic plan can then use what they say, such as a partial index's predicate
    (``status IN ('starting', 'processing')``), instead of Postgres planning it again at every execution."""

    def visit_bindparam(self, bindparam: BindParameter[Any], **kw: Any) -> Any:  # type: ignore[override]
        if not bindparam.required:
            kw["literal_binds"] = True
        return super().visit_bindparam(bindparam, **kw)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class PsycopgStatement:
    """A statement as psycopg takes it: SQL with ``%(name)s`` placeholders for the values ``bind`` gives."""

    sql: str

    @classmethod
    def compile(cls, statement: ClauseElement) -> "PsycopgStatement":
        return cls(str(ConstantsInSql(PGDialect_psycopg(), statement)))  # type: ignore[no-untyped-call]

    def bind(self, **values: Any) -> "BoundStatement":
        return BoundStatement(self.sql, values)


@dataclass(frozen=True)
class BoundStatement:
    """A statement with every value it takes."""

    sql: str
    values: dict[str, Any]


def run_one(session: Session, statement: BoundStatement) -> Row | None:
    """Run ``statement`` on the session's connection, in its transaction; its first row."""
    return _driver(session).execute(statement.sql, statement.values).fetchone()


def run_pipelined(session: Session, statements: Mapping[str, BoundStatement]) -> dict[str, Row]:
    """Run ``statements`` in order on the session's connection, in its transaction, in one round trip (psycopg's
    pipeline mode); the first row of each, by name (each must return one: LookupError otherwise). Postgres still
    runs them one after another, each reading what the ones before it wrote and locked, so only the waits
    between them go. An error skips the statements after it and is raised once the batch is answered; the
    transaction can then only roll back."""
    driver = _driver(session)
    with driver.pipeline():
        cursors = {name: driver.execute(statement.sql, statement.values) for name, statement in statements.items()}
    return {name: _first_row(name, cursor.fetchone()) for name, cursor in cursors.items()}


def _first_row(name: str, row: Row | None) -> Row:
    if row is None:
        raise LookupError(f"statement {name!r} returned no row")
    return row


def _driver(session: Session) -> psycopg.Connection[Any]:
    return session.connection().connection.driver_connection  # type: ignore[return-value]


def attribute_names(model: type[Base]) -> list[str]:
    """The mapped attribute of each of ``model``'s columns, in table order: the order of a ``select`` of them."""
    return [model.__mapper__.get_property_by_column(column).key for column in model.__table__.columns]


def transient(model: type[ModelT], names: Iterable[str], values: Iterable[Any]) -> ModelT:
    """An object of ``model`` holding ``values`` of its attributes ``names``, in no session: what a row read here
    becomes, for code that reads loaded objects. The values go straight into the object's ``__dict__``, as the
    ORM's own loading puts them: through the constructor's instrumented attributes, a prediction cost 15 times as
    much (38 µs), on every poll."""
    instance: ModelT = model.__mapper__.class_manager.new_instance()
    instance.__dict__.update(zip(names, values, strict=True))
    return instance
