"""What an insider with the database owner's (or a superuser's) rights does to the
audit trail, done as the suite's PostgreSQL superuser would: behind the application's
back, with the append-only triggers disabled."""

from django.db import connection

from audit import services
from audit.models import AuditEvent


def _as_owner(statements: list[tuple[str, list]], *, table: str, trigger: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        for sql, params in statements:
            cursor.execute(sql, params)
        cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


def rewrite_and_rehash(*, seq: int, actor_label: str = "mallory") -> None:
    """Edit event `seq`, then recompute every hash from it to the head."""
    _as_owner(
        [("UPDATE audit_auditevent SET actor_label = %s WHERE seq = %s", [actor_label, seq])],
        table="audit_auditevent",
        trigger="audit_event_no_update_delete",
    )
    prev = AuditEvent.objects.get(seq=seq - 1).hash if seq > 1 else services.GENESIS
    statements = []
    rows = AuditEvent.objects.filter(seq__gte=seq).order_by("seq").values(*services.CHAIN_FIELDS)
    for row in rows:
        digest = services.event_hash(row, prev)
        statements.append(
            (
                "UPDATE audit_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
                [prev, digest, row["id"]],
            )
        )
        prev = digest
    _as_owner(statements, table="audit_auditevent", trigger="audit_event_no_update_delete")


def truncate_tail(*, after_seq: int) -> None:
    _as_owner(
        [("DELETE FROM audit_auditevent WHERE seq > %s", [after_seq])],
        table="audit_auditevent",
        trigger="audit_event_no_update_delete",
    )


def checkpoints_sql(sql: str, params: list | None = None) -> None:
    _as_owner(
        [(sql, params or [])],
        table="audit_auditcheckpoint",
        trigger="audit_checkpoint_no_update_delete",
    )
