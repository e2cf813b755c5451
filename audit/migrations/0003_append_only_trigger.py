from django.db import migrations

# PostgreSQL refuses every change to an audit event except the sealer's one write:
# filling in seq, prev_hash and hash of an event that has none yet. DELETE and
# TRUNCATE are refused (TRUNCATE only passes in a session that sets
# aispm.allow_truncate, which the test suite does to flush its database between
# tests). On SQLite the model layer refuses instead.
FORWARD = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Only a test suite's database flush sets this, in its own session.
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

CREATE TRIGGER audit_event_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();

CREATE TRIGGER audit_event_no_truncate
    BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent;
DROP TRIGGER IF EXISTS audit_event_no_update_delete ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_hash_chain")]

    operations = [migrations.RunPython(forward, backward)]
