from django.db import migrations

# 0003 let a session that set aispm.allow_truncate TRUNCATE the audit table, and any
# session may set a custom option. No session setting passes now: flushing a test
# database disables the trigger with ALTER TABLE, which needs the table's owner (see
# tests/conftest.py and the README's PostgreSQL roles).
FORWARD = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.seq IS NULL AND OLD.hash = ''
       AND NEW.seq IS NOT NULL AND NEW.hash <> ''
       AND (NEW.id, NEW.created_at, NEW.event, NEW.actor_kind, NEW.actor_label,
            NEW.actor_user_id, NEW.target_type, NEW.target_id, NEW.data)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.created_at, OLD.event, OLD.actor_kind, OLD.actor_label,
            OLD.actor_user_id, OLD.target_type, OLD.target_id, OLD.data)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only (%% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""

BACKWARD = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('aispm.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE'
       AND OLD.seq IS NULL AND OLD.hash = ''
       AND NEW.seq IS NOT NULL AND NEW.hash <> ''
       AND (NEW.id, NEW.created_at, NEW.event, NEW.actor_kind, NEW.actor_label,
            NEW.actor_user_id, NEW.target_type, NEW.target_id, NEW.data)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.created_at, OLD.event, OLD.actor_kind, OLD.actor_label,
            OLD.actor_user_id, OLD.target_type, OLD.target_id, OLD.data)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only (%% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_append_only_trigger")]

    operations = [migrations.RunPython(forward, backward)]
