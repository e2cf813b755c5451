import base64
import os
from datetime import timedelta

import pytest
import time_machine
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from aispm_site.env import env_signing_key
from audit import chainhash, checkpoints, services, tasks
from audit.models import AppendOnlyError, AuditCheckpoint, AuditEvent, AuditVerification
from tests.audit import attacks
from tests.factories import auditor

pytestmark = pytest.mark.django_db


@pytest.fixture
def signing_key(settings):
    settings.AISPM_AUDIT_SIGNING_KEY = os.urandom(32)
    settings.AISPM_AUDIT_WITNESS_URL = ""
    settings.AISPM_AUDIT_CHECKPOINT_SECONDS = 300
    return settings.AISPM_AUDIT_SIGNING_KEY


def record_and_seal(n: int) -> None:
    with transaction.atomic():
        for i in range(n):
            services.audit_record(event="thing.happened", data={"n": i, "x": 0.5})
    while services.audit_seal():
        pass


def test_a_checkpoint_signs_the_head_and_chains_to_the_previous(signing_key):
    record_and_seal(5)
    first = checkpoints.checkpoint_create()
    record_and_seal(3)
    second = checkpoints.checkpoint_create()
    head = AuditEvent.objects.order_by("-seq").first()
    assert (first.first_seq, first.last_seq, first.prev_hash) == (1, 5, chainhash.GENESIS)
    assert (second.first_seq, second.last_seq, second.prev_hash) == (6, 8, first.hash)
    assert second.head_hash == head.hash
    public = Ed25519PrivateKey.from_private_bytes(signing_key).public_key()
    assert chainhash.signature_valid(public, second.as_document(), second.signature)
    assert second.key_fingerprint == chainhash.fingerprint(public)


def test_no_checkpoint_is_made_without_new_sealed_events(signing_key):
    assert checkpoints.checkpoint_create() is None
    record_and_seal(2)
    assert checkpoints.checkpoint_create() is not None
    assert checkpoints.checkpoint_create() is None
    assert tasks.checkpoint_audit_chain() is None
    record_and_seal(1)
    assert tasks.checkpoint_audit_chain() == AuditCheckpoint.objects.order_by("-pk").first().pk


def test_beat_skips_checkpoints_without_a_key(settings):
    settings.AISPM_AUDIT_SIGNING_KEY = None
    record_and_seal(2)
    assert tasks.checkpoint_audit_chain() is None
    assert not AuditCheckpoint.objects.exists()
    assert "checkpoint-audit" in settings.CELERY_BEAT_SCHEDULE


def test_checkpoints_cannot_be_changed_through_the_app(signing_key):
    record_and_seal(1)
    checkpoint = checkpoints.checkpoint_create()
    with pytest.raises(AppendOnlyError):
        checkpoint.save()
    with pytest.raises(AppendOnlyError):
        checkpoint.delete()
    with pytest.raises(AppendOnlyError):
        AuditCheckpoint.objects.all().delete()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditcheckpoint SET head_hash = 'f'",
        "DELETE FROM audit_auditcheckpoint",
        "TRUNCATE audit_auditcheckpoint",
    ],
)
def test_postgresql_refuses_changes_to_checkpoints(signing_key, sql):
    record_and_seal(1)
    checkpoints.checkpoint_create()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)


def test_verify_says_anchored_with_checkpoints_and_unanchored_without_a_key(
    signing_key, capsys, settings
):
    record_and_seal(4)
    call_command("audit_checkpoint")
    out = capsys.readouterr().out
    checkpoint = AuditCheckpoint.objects.get()
    assert f"checkpoint #{checkpoint.pk}: seq 1..4" in out
    call_command("audit_verify", "--no-seal")
    assert f"anchored: checkpoint #{checkpoint.pk} (seq 1..4)" in capsys.readouterr().out
    settings.AISPM_AUDIT_SIGNING_KEY = None
    call_command("audit_verify", "--no-seal")
    assert "unanchored: no signing key is configured" in capsys.readouterr().out


@pytest.mark.postgres
def test_a_rewrite_that_recomputes_every_hash_fails_at_the_checkpoint(signing_key):
    record_and_seal(50)
    checkpoint = checkpoints.checkpoint_create()
    record_and_seal(10)
    attacks.rewrite_and_rehash(seq=33)
    assert services.chain_verify().ok  # the chain alone cannot tell
    with pytest.raises(
        CommandError,
        match=rf"checkpoint #{checkpoint.pk} \(seq 1\.\.50\): head hash mismatch at seq 50",
    ):
        call_command("audit_verify", "--no-seal")
    assert not AuditVerification.objects.get().ok


@pytest.mark.postgres
def test_tail_truncation_fails_naming_the_checkpoint_and_seq(signing_key):
    record_and_seal(20)
    checkpoints.checkpoint_create()
    record_and_seal(20)
    newest = checkpoints.checkpoint_create()
    attacks.truncate_tail(after_seq=30)
    assert services.chain_verify().ok
    with pytest.raises(
        CommandError,
        match=rf"checkpoint #{newest.pk} \(seq 21\.\.40\): tail truncated: the chain ends at "
        r"seq 30 but the checkpoint covers seq 40",
    ):
        call_command("audit_verify", "--no-seal")


@pytest.mark.postgres
def test_a_forged_checkpoint_signature_fails(signing_key):
    record_and_seal(10)
    checkpoint = checkpoints.checkpoint_create()
    forger = Ed25519PrivateKey.generate()
    attacks.checkpoints_sql(
        "UPDATE audit_auditcheckpoint SET signature = %s WHERE id = %s",
        [chainhash.sign(forger, checkpoint.as_document()), checkpoint.pk],
    )
    with pytest.raises(
        CommandError, match=rf"checkpoint #{checkpoint.pk} \(seq 1\.\.10\): invalid signature"
    ):
        call_command("audit_verify", "--no-seal")


@pytest.mark.postgres
def test_a_rewrite_re_signed_with_another_key_fails(signing_key, settings):
    record_and_seal(10)
    checkpoints.checkpoint_create()
    attacks.rewrite_and_rehash(seq=4)
    attacks.checkpoints_sql("DELETE FROM audit_auditcheckpoint")
    real_key = settings.AISPM_AUDIT_SIGNING_KEY
    settings.AISPM_AUDIT_SIGNING_KEY = os.urandom(32)  # the attacker's own key
    forged = checkpoints.checkpoint_create()
    settings.AISPM_AUDIT_SIGNING_KEY = real_key
    with pytest.raises(CommandError, match=rf"checkpoint #{forged.pk} .*invalid signature"):
        call_command("audit_verify", "--no-seal")


@pytest.mark.postgres
def test_a_broken_checkpoint_chain_fails(signing_key):
    record_and_seal(3)
    first = checkpoints.checkpoint_create()
    record_and_seal(3)
    second = checkpoints.checkpoint_create()
    attacks.checkpoints_sql("DELETE FROM audit_auditcheckpoint WHERE id = %s", [first.pk])
    with pytest.raises(
        CommandError,
        match=rf"checkpoint #{second.pk} \(seq 4\.\.6\): the checkpoint chain is broken",
    ):
        call_command("audit_verify", "--no-seal")


def test_verify_fails_when_the_newest_checkpoint_is_stale(signing_key):
    record_and_seal(3)
    checkpoint = checkpoints.checkpoint_create()
    record_and_seal(2)
    call_command("audit_verify", "--no-seal")  # fresh: fine
    with (
        time_machine.travel(timezone.now() + timedelta(seconds=601)),
        pytest.raises(CommandError, match=rf"checkpoint #{checkpoint.pk} .*stale: seq 4\.\.6"),
    ):
        # seq 6 is the verification recorded just above, sealed by this run
        call_command("audit_verify")


def test_the_public_key_command_prints_the_key_that_verifies(signing_key, capsys):
    call_command("audit_public_key")
    captured = capsys.readouterr()
    key = chainhash.load_public_key(captured.out)
    assert chainhash.fingerprint(key) in captured.err
    call_command("audit_public_key", "--raw")
    raw = capsys.readouterr().out.strip()
    assert chainhash.public_key_bytes(key) == base64.b64decode(raw)


def test_commands_refuse_without_a_signing_key(settings):
    settings.AISPM_AUDIT_SIGNING_KEY = None
    with pytest.raises(CommandError, match="no signing key"):
        call_command("audit_checkpoint")
    with pytest.raises(CommandError, match="no signing key"):
        call_command("audit_public_key")


def test_check_deploy_warns_without_a_signing_key(settings, capsys):
    settings.AISPM_AUDIT_SIGNING_KEY = None
    call_command("check", "--deploy", "--fail-level", "CRITICAL")
    assert "audit.W001" in capsys.readouterr().err
    settings.AISPM_AUDIT_SIGNING_KEY = os.urandom(32)
    call_command("check", "--deploy", "--fail-level", "CRITICAL")
    assert "audit.W001" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"K": "not base64!"}, "must be base64"),
        ({"K": base64.b64encode(b"short").decode()}, "got 5 bytes"),
        ({"K": base64.b64encode(bytes(32)).decode(), "K_FILE": "/x"}, "not both"),
        ({"K_FILE": "/nonexistent/seed"}, "cannot be read"),
    ],
)
def test_a_bad_signing_key_setting_fails_loudly(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        env_signing_key("K")


def test_the_signing_key_comes_from_a_file(monkeypatch, tmp_path):
    seed = os.urandom(32)
    path = tmp_path / "seed"
    path.write_text(base64.b64encode(seed).decode() + "\n")
    monkeypatch.setenv("K_FILE", str(path))
    assert env_signing_key("K") == seed
    monkeypatch.delenv("K_FILE")
    assert env_signing_key("K") is None


def test_the_verification_page_shows_the_newest_checkpoint(signing_key, client, settings):
    record_and_seal(3)
    checkpoint = checkpoints.checkpoint_create()
    client.force_login(auditor())
    page = client.get("/audit/verification/").content.decode()
    assert f"#{checkpoint.pk}: seq 1..3" in page
    assert '<dd id="signature-status">valid</dd>' in page
    assert checkpoints.key_fingerprint() in page
    settings.AISPM_AUDIT_SIGNING_KEY = None
    page = client.get("/audit/verification/").content.decode()
    assert "Unanchored" in page
