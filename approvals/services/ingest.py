"""A new decision and its audit event in one SQL statement (PostgreSQL).

The submission pipeline's hot path: where the ORM path (creation._decision_store) takes
BEGIN, INSERT decision, INSERT audit event and COMMIT, this sends one statement:

    WITH d AS (INSERT INTO decision ... ON CONFLICT (agent, idempotency_key) DO NOTHING
               RETURNING risk_rank),
         a AS (INSERT INTO audit event ... SELECT ... FROM d)
    SELECT (SELECT risk_rank FROM d)

One statement is one transaction, so the audit event is written if and only if the
decision is. The columns are the ones the ORM would insert, prepared by the models' own
fields (pre_save, get_db_prep_save), and the audit event's are audit_row's, which
audit_record inserts too; the SQL is built once per process.

An idempotency key already used by this agent inserts nothing (the caller then reads the
original). Where a standing approval could stand in for the reviewer, the statement
inserts only if the agent holds no live standing approval for the action; if it holds
one, nothing is inserted and the caller takes the transactional path, which matches the
condition and claims a use.
"""

import uuid
from datetime import datetime

from django.db import connections, models
from django.db.models import Model

from agents.auth import FRESH_SQL, remembered_fingerprint
from agents.models import ActionType, Agent, AgentKey
from aispm_site.db import numbered, prepared_cursor, typed_placeholder
from approvals import policy
from approvals.models import Decision, StandingApproval
from audit.models import AuditEvent
from audit.services import audit_row

from ._common import enqueue_release, notify
from .creation import decision_row, standing_eligible, status_for, submitted_data

STANDING_FOUND = object()  # a live standing approval may apply: take the transactional path
KEY_CHANGED = object()  # a remembered key or its agent changed: nothing was stored


def _insert_fields(model: type[Model]) -> list:
    return [
        field
        for field in model._meta.concrete_fields
        if not field.generated and field is not model._meta.auto_field
    ]


_DECISION_FIELDS = _insert_fields(Decision)
# audit_row's columns: the sealer fills in `seq` later.
_AUDIT_FIELDS = [field for field in _insert_fields(AuditEvent) if field.attname != "seq"]


def _plain_type(field, connection) -> type | None:
    """The type of value that `field` stores exactly as the instance holds it, when its
    pre_save and get_db_prep_save would hand that value to the driver unchanged (and
    None unchanged); None where they may convert it (JSON, auto_now, other fields)."""
    if isinstance(field, models.ForeignKey):
        return _plain_type(field.target_field, connection)
    if isinstance(field, models.DateTimeField):
        return None if field.auto_now or field.auto_now_add else datetime
    if isinstance(field, models.UUIDField):
        return uuid.UUID if connection.features.has_native_uuid_field else None
    for kinds, kind in _PLAIN_KINDS:
        if isinstance(field, kinds):
            return kind
    return None


_PLAIN_KINDS = [
    ((models.CharField, models.TextField), str),
    ((models.BooleanField,), bool),
    ((models.FloatField,), float),
    ((models.IntegerField, models.AutoField), int),
]


def _columns(fields) -> str:
    return ", ".join(f'"{field.column}"' for field in fields)


def _placeholders(fields) -> str:
    connection = connections[Decision.objects.db]
    return ", ".join(typed_placeholder(field, connection) for field in fields)


_STANDING_LIVE = (
    f'SELECT EXISTS (SELECT 1 FROM "{StandingApproval._meta.db_table}" s '
    'WHERE s."agent_id" = %s AND s."action_type_id" = %s AND s."revoked_at" IS NULL '
    'AND s."starts_at" <= %s AND s."ends_at" > %s AND s."used_count" < s."max_count") AS found'
)


def _statement(*, standing_check: bool, key_check: bool) -> str:
    conditions = [
        *(["NOT (SELECT found FROM s)"] if standing_check else []),
        *(["(SELECT fresh FROM g)"] if key_check else []),
    ]
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    return (
        "WITH "
        + (f"s AS ({_STANDING_LIVE}), " if standing_check else "")
        + (f"g AS ({FRESH_SQL}), " if key_check else "")
        + f'd AS (INSERT INTO "{Decision._meta.db_table}" ({_columns(_DECISION_FIELDS)}) '
        f"SELECT {_placeholders(_DECISION_FIELDS)} {where}"
        'ON CONFLICT ("agent_id", "idempotency_key") WHERE "idempotency_key" IS NOT NULL '
        'DO NOTHING RETURNING "risk_rank"), '
        f'a AS (INSERT INTO "{AuditEvent._meta.db_table}" ({_columns(_AUDIT_FIELDS)}) '
        f"SELECT {_placeholders(_AUDIT_FIELDS)} FROM d) "
        "SELECT (SELECT risk_rank FROM d)"
        + (", (SELECT found FROM s)" if standing_check else ", false")
        + (", coalesce((SELECT fresh FROM g), false)" if key_check else ", true")
    )


_SQL = {
    (standing, key): numbered(_statement(standing_check=standing, key_check=key))
    for standing in (False, True)
    for key in (False, True)
}


_PLANS: dict[str, list] = {}  # by connection alias: (field, attname, plain type)


def _decision_values(decision: Decision, connection) -> list:
    """The values the ORM would send for the new decision: each field's pre_save and
    get_db_prep_save, skipped where they would return the instance's value as it is
    (None, or a value of the field's plain type; a datetime only if aware)."""
    plan = _PLANS.get(connection.alias)
    if plan is None:
        plan = _PLANS[connection.alias] = [
            (field, field.attname, _plain_type(field, connection)) for field in _DECISION_FIELDS
        ]
    values = []
    for field, attname, kind in plan:
        value = getattr(decision, attname)
        if kind is not None and (
            value is None
            or (type(value) is kind and (kind is not datetime or value.tzinfo is not None))
        ):
            values.append(value)
        else:
            values.append(field.get_db_prep_save(field.pre_save(decision, True), connection))
    return values


def decision_insert(
    *,
    agent: Agent,
    action_type: ActionType,
    key: AgentKey | None,
    params: dict,
    reasoning: str,
    evidence: dict,
    confidence: float | None,
    idempotency_key: str | None,
    request_hash: str,
    external_ref: str,
    canonicalised: dict | None,
    version,
    route: policy.Route,
    notes: list,
    now,
    channel: str = "api",
):
    """Store a new decision with its audit event, in one statement.

    Returns the decision; None if this agent already used the idempotency key;
    STANDING_FOUND if a standing approval may apply; or KEY_CHANGED if the key was
    answered from memory (agents.auth) and it or its agent has changed since (nothing
    is stored in either case). A remembered key is checked in the same statement. An
    approved decision is released and its agent told, as creation._decision_store does.
    """
    status = status_for(route)
    standing_check = standing_eligible(
        status=status, route=route, notes=notes, version=version, action_type=action_type
    )
    decision = decision_row(
        agent=agent,
        action_type=action_type,
        key=key,
        status=status,
        standing=None,
        params=params,
        reasoning=reasoning,
        evidence=evidence,
        confidence=confidence,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        external_ref=external_ref,
        version=version,
        route=route,
        notes=notes,
        now=now,
    )
    event = audit_row(
        event="decision.submitted",
        actor=agent,
        target=decision,
        data=submitted_data(
            decision=decision,
            key=key,
            route=route,
            canonicalised=canonicalised,
            standing=None,
            channel=channel,
        ),
    )
    connection = connections[Decision.objects.db]
    fingerprint = remembered_fingerprint(key) if key is not None else None
    values = []
    if standing_check:
        values += [agent.pk, action_type.pk, now, now]
    if fingerprint is not None:
        values += [fingerprint, key.pk]
    values += _decision_values(decision, connection)
    values += [event[field.attname] for field in _AUDIT_FIELDS]
    with prepared_cursor(connection) as cursor:
        cursor.execute(_SQL[standing_check, fingerprint is not None], values)
        risk_rank, standing_found, key_fresh = cursor.fetchone()
    if not key_fresh:
        return KEY_CHANGED
    if standing_found:
        return STANDING_FOUND
    if risk_rank is None:
        return None
    decision.risk_rank = risk_rank
    decision._state.adding = False
    decision._state.db = connection.alias
    if status == Decision.Status.APPROVED:
        enqueue_release(decision)
        notify(decision, "approved")
    return decision
