import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from audit import chainhash, checkpoints, services, witness
from audit.models import AuditCheckpoint, AuditEvent
from tests.audit import attacks
from tests.audit.receivers import SyslogReceiver

pytestmark = pytest.mark.django_db
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def witness_dir(settings, tmp_path):
    settings.AISPM_AUDIT_SIGNING_KEY = os.urandom(32)
    settings.AISPM_AUDIT_CHECKPOINT_SECONDS = 300
    directory = tmp_path / "witness"
    settings.AISPM_AUDIT_WITNESS_URL = f"file://{directory}/"
    return directory


def record_and_seal(n: int, **data) -> None:
    with transaction.atomic():
        for i in range(n):
            services.audit_record(event="thing.happened", data={"n": i, "x": 0.25, **data})
    while services.audit_seal():
        pass


def test_each_checkpoint_becomes_one_read_only_file(witness_dir):
    record_and_seal(3)
    first = checkpoints.checkpoint_create()
    record_and_seal(2)
    second = checkpoints.checkpoint_create()
    files = sorted(witness_dir.iterdir())
    assert [f.name for f in files] == [
        "checkpoint-00000000000000000003.json",
        "checkpoint-00000000000000000005.json",
    ]
    assert json.loads(files[1].read_text()) == chainhash.checkpoint_record(second.as_document())
    assert not files[0].stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert witness.witness_read(f"file://{witness_dir}/")[0]["hash"] == first.hash


def test_a_witness_file_is_never_overwritten(witness_dir, settings):
    record_and_seal(3)
    checkpoint = checkpoints.checkpoint_create()
    url = settings.AISPM_AUDIT_WITNESS_URL
    witness.witness_publish(url=url, checkpoint=checkpoint)  # a retry: same bytes, fine
    path = witness_dir / "checkpoint-00000000000000000003.json"
    before = path.read_bytes()
    other = AuditCheckpoint(**{**checkpoint.as_document(), "head_hash": "f" * 64})
    with pytest.raises(witness.WitnessError, match="already holds a different checkpoint"):
        witness.witness_publish(url=url, checkpoint=other)
    assert path.read_bytes() == before


@pytest.fixture
def syslog_receiver():
    receiver = SyslogReceiver()
    yield receiver
    receiver.close()


def test_a_syslog_witness_receives_each_checkpoint_as_rfc5424(settings, syslog_receiver):
    settings.AISPM_AUDIT_SIGNING_KEY = os.urandom(32)
    settings.AISPM_AUDIT_WITNESS_URL = f"syslog://127.0.0.1:{syslog_receiver.port}"
    record_and_seal(2)
    checkpoint = checkpoints.checkpoint_create()
    for _ in range(100):
        if syslog_receiver.messages():
            break
        threading.Event().wait(0.02)
    [message] = syslog_receiver.messages()
    header, _, body = message.partition(b"] ")
    assert header.startswith(b"<133>1 " + chainhash.utc_text(checkpoint.created_at).encode())
    assert b" aispm " in header and b" checkpoint [checkpoint@32473 " in header
    assert f'last_seq="2" hash="{checkpoint.hash}"'.encode() in header
    assert json.loads(body) == chainhash.checkpoint_record(checkpoint.as_document())


def test_an_unreachable_syslog_witness_fails_loudly_after_the_checkpoint_commits(settings):
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    settings.AISPM_AUDIT_SIGNING_KEY = os.urandom(32)
    settings.AISPM_AUDIT_WITNESS_URL = f"syslog://127.0.0.1:{port}"
    record_and_seal(1)
    with pytest.raises(witness.WitnessError, match="syslog witness"):
        checkpoints.checkpoint_create()
    assert AuditCheckpoint.objects.count() == 1


@pytest.mark.postgres
def test_deleting_the_tail_and_the_newest_checkpoints_is_caught_by_the_witness(
    witness_dir, settings
):
    record_and_seal(10)
    checkpoints.checkpoint_create()
    record_and_seal(10)
    newest = checkpoints.checkpoint_create()
    attacks.truncate_tail(after_seq=10)
    attacks.checkpoints_sql("DELETE FROM audit_auditcheckpoint WHERE id = %s", [newest.pk])
    call_command("audit_verify", "--no-seal")  # the database alone looks consistent
    with pytest.raises(
        CommandError,
        match=rf"witness checkpoint seq 11\.\.20 \({newest.hash[:16]}…\): the database lacks it",
    ):
        call_command("audit_verify", "--no-seal", "--witness", settings.AISPM_AUDIT_WITNESS_URL)


def test_verify_against_a_matching_witness_passes(witness_dir, settings, capsys):
    record_and_seal(4)
    checkpoints.checkpoint_create()
    call_command("audit_verify", "--no-seal", "--witness", settings.AISPM_AUDIT_WITNESS_URL)
    assert "matches the witness" in capsys.readouterr().out


def test_a_witness_with_a_different_checkpoint_fails(witness_dir, settings):
    record_and_seal(4)
    checkpoint = checkpoints.checkpoint_create()
    path = witness_dir / "checkpoint-00000000000000000004.json"
    record = json.loads(path.read_text())
    path.chmod(0o644)
    path.write_text(json.dumps({**record, "created_at": "2020-01-01T00:00:00.000000Z"}))
    with pytest.raises(CommandError, match="the database holds a different checkpoint for seq 4"):
        call_command("audit_verify", "--no-seal", "--witness", settings.AISPM_AUDIT_WITNESS_URL)
    assert checkpoint.pk


# --- offline verification -------------------------------------------------------------


def offline(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "DATABASE"))}
    return subprocess.run(
        [sys.executable, "-m", "audit.offline_verify", *map(str, args)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def public_key_file(witness_dir, tmp_path, capsys):
    call_command("audit_public_key")
    path = tmp_path / "aispm.pub"
    path.write_text(capsys.readouterr().out)
    return path


def test_an_export_verifies_offline_against_the_witness(witness_dir, public_key_file, tmp_path):
    record_and_seal(30, note="«quoted» =1+2", big=2**62, ratio=1 / 3)
    checkpoints.checkpoint_create()
    record_and_seal(5)
    checkpoints.checkpoint_create()
    export = tmp_path / "export.jsonl"
    call_command("audit_export", str(export))
    manifest = tmp_path / "export.jsonl.manifest.json"
    assert json.loads(manifest.read_text())["checkpoint"]["last_seq"] == 35
    result = offline(
        export,
        "--checkpoints",
        witness_dir,
        "--public-key",
        public_key_file,
        "--manifest",
        manifest,
    )
    assert result.returncode == 0, result.stderr
    assert "35 events: every hash matches its content; 35 anchored to 2 signed checkpoints" in (
        result.stdout
    )


def test_the_offline_verifier_imports_no_django():
    script = (
        "import sys, audit.offline_verify; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_an_edited_export_fails_offline(witness_dir, public_key_file, tmp_path):
    record_and_seal(5)
    checkpoints.checkpoint_create()
    export = tmp_path / "export.jsonl"
    call_command("audit_export", str(export))
    lines = export.read_text().splitlines()
    event = json.loads(lines[2])
    event["actor_label"] = "mallory"
    lines[2] = json.dumps(event)
    export.write_text("\n".join(lines) + "\n")
    result = offline(export, "--checkpoints", witness_dir, "--public-key", public_key_file)
    assert result.returncode == 1
    assert "TAMPERED: event seq 3: its content does not match its hash" in result.stderr


def test_a_rehashed_export_fails_offline_at_the_signed_head(witness_dir, public_key_file, tmp_path):
    record_and_seal(5)
    checkpoints.checkpoint_create()
    export = tmp_path / "export.jsonl"
    call_command("audit_export", str(export))
    events = [json.loads(line) for line in export.read_text().splitlines()]
    events[1]["actor_label"] = "mallory"
    prev = events[0]["hash"]
    for event in events[1:]:
        event["prev_hash"] = prev
        event["hash"] = prev = chainhash.event_hash(event, prev)
    export.write_text("".join(json.dumps(e) + "\n" for e in events))
    result = offline(export, "--checkpoints", witness_dir, "--public-key", public_key_file)
    assert result.returncode == 1
    assert "event seq 5: its hash is not the head hash the checkpoint" in result.stderr


def test_a_forged_witness_checkpoint_fails_offline(witness_dir, public_key_file, tmp_path):
    record_and_seal(5)
    checkpoints.checkpoint_create()
    export = tmp_path / "export.jsonl"
    call_command("audit_export", str(export))
    path = next(witness_dir.iterdir())
    record = json.loads(path.read_text())
    path.chmod(0o644)
    path.write_text(json.dumps({**record, "signature": record["signature"][::-1]}))
    result = offline(export, "--checkpoints", witness_dir, "--public-key", public_key_file)
    assert result.returncode == 1
    assert "checkpoint seq 1..5: " in result.stderr


def test_events_newer_than_every_checkpoint_are_reported_unanchored(
    witness_dir, public_key_file, tmp_path
):
    record_and_seal(4)
    checkpoints.checkpoint_create()
    record_and_seal(2)
    export = tmp_path / "export.jsonl"
    call_command("audit_export", str(export), "--to-seq", "6")
    result = offline(export, "--checkpoints", witness_dir, "--public-key", public_key_file)
    assert result.returncode == 3
    assert "NOT ANCHORED: seq 5..6" in result.stderr


def test_the_offline_verifier_refuses_a_key_that_is_not_one(witness_dir, tmp_path):
    record_and_seal(1)
    checkpoints.checkpoint_create()
    export = tmp_path / "export.jsonl"
    call_command("audit_export", str(export))
    result = offline(export, "--checkpoints", witness_dir, "--public-key", "<script>")
    assert result.returncode == 2
    assert "--public-key is neither a PEM nor a base64 Ed25519 public key" in result.stderr


def test_the_web_export_manifest_names_the_covering_checkpoint(
    witness_dir, public_key_file, tmp_path, client
):
    from tests.factories import auditor

    record_and_seal(3)
    client.force_login(auditor())
    response = client.get("/audit/export.jsonl")
    body = b"".join(response.streaming_content)
    export_event = AuditEvent.objects.filter(event="audit.exported").get()
    manifest = client.get(f"/audit/exports/{export_event.pk}/manifest.json").json()
    assert manifest["chain_head_seq"] == 3 and manifest["checkpoint"] is None
    checkpoint = checkpoints.checkpoint_create()
    manifest = client.get(f"/audit/exports/{export_event.pk}/manifest.json").json()
    assert manifest["checkpoint"] == chainhash.checkpoint_record(checkpoint.as_document())
    assert manifest["chain_head_hash"] == checkpoint.head_hash
    # The web export holds the events of decisions only; here there are none, so the
    # contiguous audit_export is what an auditor anchors offline.
    assert body == b""


def test_a_file_witness_outage_loses_no_checkpoint(witness_dir, settings, capsys, tmp_path):
    witness_dir.parent.mkdir(parents=True, exist_ok=True)
    witness_dir.write_text("not a directory: the mount is gone")
    record_and_seal(2)
    with pytest.raises(witness.WitnessError, match="file witness .* failed"):
        checkpoints.checkpoint_create()
    record_and_seal(1)
    with pytest.raises(witness.WitnessError):
        checkpoints.checkpoint_create()
    assert AuditCheckpoint.objects.count() == 2  # both committed before the witness failed
    witness_dir.unlink()  # the mount is back
    assert checkpoints.checkpoint_create() is None  # nothing new to sign: it catches up
    assert [f.name for f in sorted(witness_dir.iterdir())] == [
        "checkpoint-00000000000000000002.json",
        "checkpoint-00000000000000000003.json",
    ]
    record_and_seal(1)
    checkpoints.checkpoint_create()
    assert len(witness.witness_read(settings.AISPM_AUDIT_WITNESS_URL)) == 3
    call_command("audit_verify", "--no-seal", "--witness", settings.AISPM_AUDIT_WITNESS_URL)
    assert "matches the witness" in capsys.readouterr().out
    # The witness has no gap, so an export verifies offline against it.
    call_command("audit_public_key")
    key = tmp_path / "aispm.pub"
    key.write_text(capsys.readouterr().out)
    export = tmp_path / "export.jsonl"
    call_command("audit_export", str(export))
    result = offline(export, "--checkpoints", witness_dir, "--public-key", key)
    assert result.returncode == 0, result.stderr
