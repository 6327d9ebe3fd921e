"""Statements built with SQLAlchemy and sent on psycopg itself, for the gateway's hottest paths.

On those paths SQLAlchemy's execution layer costs the gateway more CPU than Postgres spends answering the
statement. Built once as SQLAlchemy expressions, compiled once, then sent as they are: alone (a poll's read,
``models.poll_read``), or several in one round trip (a create, ``run_pipelined``).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import psycopg
from sqlalchemy import ClauseElement
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler

from models.db import Base

Row = tuple[Any, ...]
ModelT = TypeVar("ModelT", bound=Base)


@dataclass(frozen=True)
class PsycopgStatement:
    """A statement as psycopg takes it: SQL with ``%(name)s`` placeholders, and the values it binds itself."""

    sql: str
    constants: dict[str, Any]

    @classmethod
    def compile(cls, statement: ClauseElement) -> "PsycopgStatement":
        compiled = cast(SQLCompiler, statement.compile(dialect=PGDialect_psycopg()))  # type: ignore[no-untyped-call]
        # The values the statement holds (not the parameters left to ``bind``); enum members (statuses) go in as
        # their values, as SQLAlchemy's own execution sends them.
        constants = {
            name: getattr(value, "value", value)
            for name, value in compiled.params.items()
            if not compiled.binds[name].required
        }
        return cls(str(compiled), constants)

    def bind(self, **values: Any) -> "BoundStatement":
        return BoundStatement(self.sql, {**self.constants, **values})


@dataclass(frozen=True)
class BoundStatement:
    """A statement with every value it takes."""

    sql: str
    values: dict[str, Any]


def run_one(session: Session, statement: BoundStatement) -> Row | None:
    """Run ``statement`` on the session's connection, in its transaction; its first row."""
    return _driver(session).execute(statement.sql, statement.values).fetchone()


def run_pipelined(session: Session, statements: Mapping[str, BoundStatement]) -> dict[str, Row | None]:
    """Run ``statements`` in order on the session's connection, in its transaction, in one round trip (psycopg's
    pipeline mode); the first row of each, by name. Postgres still runs them one after another, each reading
    what the ones before it wrote and locked, so only the waits between them go. The first error is raised
    once all are answered, and the transaction can then only roll back."""
    driver = _driver(session)
    with driver.pipeline():
        cursors = {name: driver.execute(statement.sql, statement.values) for name, statement in statements.items()}
    return {name: cursor.fetchone() for name, cursor in cursors.items()}


def _driver(session: Session) -> psycopg.Connection[Any]:
    return session.connection().connection.driver_connection  # type: ignore[return-value]


def attribute_names(model: type[Base]) -> list[str]:
    """The mapped attribute of each of ``model``'s columns, in table order: the order of a ``select`` of them."""
    return [model.__mapper__.get_property_by_column(column).key for column in model.__table__.columns]


def transient(model: type[ModelT], names: list[str], values: Row) -> ModelT:
    """An object of ``model`` holding ``values`` of its attributes ``names``, in no session: what a row read here
    becomes, for code that reads loaded objects."""
    return model(**dict(zip(names, values, strict=True)))
