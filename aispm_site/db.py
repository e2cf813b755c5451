"""Prepared statements for the few statements every agent request runs.

Django's PostgreSQL backend binds parameters on the client: psycopg quotes each value
into the SQL text, and PostgreSQL parses and plans the statement again on every call.
For the statements on the submission path (the key lookup and the insert of a decision
with its audit event) and a release's two (its claim and its record) that is most of
their cost, in the worker and in PostgreSQL. A
prepared cursor binds on the server and has PostgreSQL prepare each statement once per
connection, then execute it by name.

Their SQL numbers its parameters ($1, $2, ...; `numbered` writes them from %s), and
the cursor hands it to PostgreSQL as it is. psycopg would otherwise split the SQL at
each %s on every call: it caches that work only for statements of at most 50
parameters, and the insert of a decision with its audit event has more.

Every other query keeps Django's client-side binding. Behind a pooler that does not
keep prepared statements per client (PgBouncer in transaction mode before 1.21), set
DATABASE_PREPARED_STATEMENTS=false: the same statements are then bound on the server
but parsed and planned each time.
"""

import re

from django.conf import settings
from django.db.backends.postgresql.base import CursorMixin
from django.db.backends.utils import CursorDebugWrapper
from psycopg import RawCursor

_PLACEHOLDER = re.compile(r"\$\d+")


def numbered(sql: str) -> str:
    """`sql` with its %s placeholders numbered $1, $2, ... in order, for a prepared
    cursor. The SQL must hold no other % sign."""
    parts = sql.split("%s")
    if any("%" in part for part in parts):
        raise ValueError("A prepared statement's SQL may hold no % but its placeholders.")
    return "".join(
        f"{part}${index}" if index < len(parts) else part for index, part in enumerate(parts, 1)
    )


def typed_placeholder(field, connection) -> str:
    """`%s` cast to `field`'s column type, for a parameter whose type its place in the
    statement does not give (a SELECT list). Without a length: a cast to varchar(n)
    would truncate a value the column must refuse."""
    return f"%s::{re.sub(r'[(].*[)]$', '', field.db_type(connection))}"


_NAMED = re.compile(r"%\((\w+)\)s")


def numbered_named(sql: str) -> tuple[str, list[str]]:
    """`sql` with its %(name)s placeholders numbered, one number a name, and the names
    in number order: pass `[params[name] for name in names]`. No other % allowed."""
    names: list[str] = []

    def number(match) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    numbered_sql = _NAMED.sub(number, sql)
    if "%" in numbered_sql:
        raise ValueError("A prepared statement's SQL may hold no % but its placeholders.")
    return numbered_sql, names


class _RawBindingCursor(CursorMixin, RawCursor):
    """psycopg's cursor for SQL with numbered parameters, bound on the server."""


class _PreparedDebugCursor(CursorDebugWrapper):
    """Where Django logs queries (DEBUG, tests), log the statement with its values
    written in, as Django logs its own: psycopg keeps no text of a prepared one."""

    def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
        if use_last_executed_query and not many:
            # A number may stand more than once: write each occurrence's value.
            values = [params[int(n[1:]) - 1] for n in _PLACEHOLDER.findall(sql)]
            sql = self.db.ops.compose_sql(_PLACEHOLDER.sub("%s", sql), values)
        return super().debug_sql(sql, params, use_last_executed_query=False, many=many)


def prepared_cursor(connection):
    """A Django cursor on `connection` (PostgreSQL) for SQL with numbered parameters
    (`numbered`), bound on the server and, unless DATABASE_PREPARED_STATEMENTS is off,
    prepared on its first use.

    Its statements must cast every parameter whose type the context does not give
    (`$1::jsonb` in a SELECT list), since the values are not written into the SQL.
    """
    connection.ensure_connection()
    raw = connection.connection
    # Only server-binding cursors prepare; Django's own cursors never do.
    threshold = 0 if settings.AISPM_DB_PREPARED_STATEMENTS else None
    if raw.prepare_threshold != threshold:
        raw.prepare_threshold = threshold
    connection.validate_thread_sharing()
    cursor = _RawBindingCursor(raw)
    if connection.queries_logged:
        return _PreparedDebugCursor(cursor, connection)
    return connection.make_cursor(cursor)
