"""The release's hot path on PostgreSQL: two statements a release (issue 14).

One statement claims the decision (approved → releasing, or a releasing one whose lease
ran out), inserts its `decision.release_started` audit event, and reads everything the
re-check needs: the decision, its agent, action type, key and grant, and the global
stop. Another records a successful attempt: the attempt row, the transition to released
and its two audit events. Each is one statement, so each is one transaction (or part of
the caller's): the audit events commit with the change or not at all, as with
`audit_record`. Everything else (a retry, a failure, a block) takes the ORM path in
release.py, which is rare and not worth the SQL.

Both are prepared once per connection and bound on the server (aispm_site.db), as the
submission's statements are: parsing and planning them on every release cost more than
running them.

SQLite (the dev mode without DATABASE_URL) has no data-modifying CTEs; there
release.py uses the ORM for the claim and the record too.
"""

import functools
import json
import uuid
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection

from agents.models import ActionType, Agent, AgentKey, GlobalStop, Grant
from aispm_site.db import numbered, numbered_named, prepared_cursor, typed_placeholder
from approvals.models import Decision, ReleaseAttempt
from audit.models import AuditEvent
from audit.services import CHAIN_FIELDS, audit_row

# What an inserted event carries: the chain's fields but the ones the database and the
# sealer assign.
AUDIT_COLUMNS = tuple(c for c in CHAIN_FIELDS if c not in ("id", "seq"))


def supported() -> bool:
    return connection.vendor == "postgresql"


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _columns(model, alias: str) -> str:
    return ", ".join(f"{alias}.{_q(f.column)}" for f in model._meta.concrete_fields)


@functools.cache
def _converters(model) -> list[tuple]:
    """Each concrete field's column and the converters a queryset would apply to it (JSON
    columns come back as text from Django's PostgreSQL backend)."""
    out = []
    for field in model._meta.concrete_fields:
        col = field.get_col(model._meta.db_table)
        out.append((col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)))
    return out


def _instance(model, values: list):
    """A model instance from raw column values, converted as a queryset would."""
    converted = []
    for (col, converters), value in zip(_converters(model), values, strict=True):
        for converter in converters:
            value = converter(value, col, connection)
        converted.append(value)
    return model.from_db(connection.alias, None, converted)


def _audit_placeholders() -> list[str]:
    """A typed placeholder for each audit column: a NULL in a VALUES list has no type."""
    fields = {f.column: f for f in AuditEvent._meta.concrete_fields}
    return [f"CAST(%s AS {fields[c].cast_db_type(connection)})" for c in AUDIT_COLUMNS]


@dataclass
class Claimed:
    """A claimed decision (with its agent and action type loaded) and what the re-check
    reads: the key, the grant (with its action type) and whether the global stop is on."""

    decision: Decision
    key: AgentKey | None
    grant: Grant | None
    stopped: bool


@functools.cache
def _claim_statement() -> tuple[str, list[str]]:
    return numbered_named(_claim_sql())


@functools.cache
def _claim_sql() -> str:
    decision, audit = _q(Decision._meta.db_table), _q(AuditEvent._meta.db_table)
    models = ((Decision, "c"), (Agent, "a"), (ActionType, "t"), (AgentKey, "k"), (Grant, "g"))
    placeholders = [
        "jsonb_build_object('attempt', c.release_attempts)"
        if column == "data"
        else typed.replace("%s", f"%({column})s")
        for column, typed in zip(AUDIT_COLUMNS, _audit_placeholders(), strict=True)
    ]
    return f"""
WITH c AS (
  UPDATE {decision} AS d
  SET status = %(releasing)s, release_lease_until = %(lease_until)s,
      release_attempts = d.release_attempts + 1, updated_at = %(now)s
  WHERE d.id = %(id)s AND (
    d.status = %(approved)s
    OR (d.status = %(releasing)s AND d.release_lease_until <= %(taken_over_before)s))
  RETURNING d.*
), started AS (
  INSERT INTO {audit} ({", ".join(_q(c) for c in AUDIT_COLUMNS)})
  SELECT {", ".join(placeholders)}
  FROM c
)
SELECT {", ".join(_columns(model, alias) for model, alias in models)},
       EXISTS (SELECT 1 FROM {_q(GlobalStop._meta.db_table)} WHERE engaged)
FROM c
JOIN {_q(Agent._meta.db_table)} AS a ON a.id = c.agent_id
JOIN {_q(ActionType._meta.db_table)} AS t ON t.id = c.action_type_id
LEFT JOIN {_q(AgentKey._meta.db_table)} AS k ON k.id = c.key_id
LEFT JOIN {_q(Grant._meta.db_table)} AS g
  ON g.agent_id = c.agent_id AND g.action_type_id = c.action_type_id
"""


def claim(*, decision_id: uuid.UUID, now, lease_until, taken_over_before) -> Claimed | None:
    """Claim and audit in one statement; None if the decision is not free to release."""
    params = audit_row(event="decision.release_started", created_at=now)
    params.pop("data")
    params.update(
        id=decision_id,
        target_id=str(decision_id),
        target_type=Decision._meta.label_lower,
        now=now,
        lease_until=lease_until,
        taken_over_before=taken_over_before,
        approved=Decision.Status.APPROVED,
        releasing=Decision.Status.RELEASING,
    )
    sql, names = _claim_statement()
    with prepared_cursor(connection) as cursor:
        cursor.execute(sql, [params[name] for name in names])
        row = cursor.fetchone()
    if row is None:
        return None
    row, stopped = list(row[:-1]), row[-1]
    parts = []
    for model in (Decision, Agent, ActionType, AgentKey, Grant):
        width = len(model._meta.concrete_fields)
        parts.append(row[:width])
        row = row[width:]
    decision = _instance(Decision, parts[0])
    decision.agent = _instance(Agent, parts[1])
    decision.action_type = action_type = _instance(ActionType, parts[2])
    key = _instance(AgentKey, parts[3]) if parts[3][0] is not None else None
    grant = _instance(Grant, parts[4]) if parts[4][0] is not None else None
    if key is not None:
        decision.key = key
    if grant is not None:
        grant.agent, grant.action_type = decision.agent, action_type
    return Claimed(decision=decision, key=key, grant=grant, stopped=bool(stopped))


_ATTEMPT_COLUMNS = (
    *("number", "connector", "started_at", "duration_ms", "succeeded", "retryable"),
    *("status_code", "response_excerpt", "error"),
)


def _attempt_placeholders() -> str:
    fields = {f.column: f for f in ReleaseAttempt._meta.concrete_fields}
    return ", ".join(typed_placeholder(fields[c], connection) for c in _ATTEMPT_COLUMNS)


@functools.cache
def _record_statement() -> str:
    return numbered(_record_sql())


@functools.cache
def _record_sql() -> str:
    decision, audit = _q(Decision._meta.db_table), _q(AuditEvent._meta.db_table)
    attempt = _q(ReleaseAttempt._meta.db_table)
    row = "(%s::integer, " + ", ".join(_audit_placeholders()) + ")"
    return f"""
WITH moved AS (
  UPDATE {decision}
  SET status = %s, updated_at = %s, release_result = %s::jsonb, released_at = %s,
      release_lease_until = NULL
  WHERE id = %s AND status = %s
  RETURNING id
), attempt AS (
  INSERT INTO {attempt} (decision_id, {", ".join(_ATTEMPT_COLUMNS)})
  SELECT moved.id, {_attempt_placeholders()} FROM moved
), events AS (
  INSERT INTO {audit} ({", ".join(_q(c) for c in AUDIT_COLUMNS)})
  SELECT {", ".join(f"e.{_q(c)}" for c in AUDIT_COLUMNS)}
  FROM moved, (VALUES {row}, {row})
    AS e(n, {", ".join(_q(c) for c in AUDIT_COLUMNS)})
  ORDER BY e.n
)
SELECT count(*) FROM moved
"""


def record_released(*, decision: Decision, delivery, connector: str, started_at, result, now):
    """Record a successful attempt: the attempt, released, and both audit events in one
    statement. False if the decision was no longer releasing (nothing is written)."""
    encoded = json.dumps(result, cls=DjangoJSONEncoder)
    attempted = audit_row(
        event="decision.release_attempted",
        target=decision,
        created_at=now,
        data={"attempt": decision.release_attempts, "connector": connector, **result},
    )
    released = audit_row(
        event="decision.released", target=decision, created_at=now, data={"result": result}
    )
    params = [
        *(Decision.Status.RELEASED, now, encoded, now, decision.pk, Decision.Status.RELEASING),
        *(decision.release_attempts, connector, started_at, delivery.duration_ms),
        *(delivery.succeeded, delivery.retryable, delivery.status_code),
        *(delivery.excerpt, delivery.error),
        1,
        *(attempted[c] for c in AUDIT_COLUMNS),
        2,
        *(released[c] for c in AUDIT_COLUMNS),
    ]
    with prepared_cursor(connection) as cursor:
        cursor.execute(_record_statement(), params)
        (moved,) = cursor.fetchone()
    return moved == 1
