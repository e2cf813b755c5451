import gzip
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit import checkpoints, services
from audit.models import AuditArchive, AuditEvent
from tests.audit import attacks

pytestmark = pytest.mark.django_db
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keyed(settings, tmp_path):
    settings.AISPM_AUDIT_SIGNING_KEY = os.urandom(32)
    settings.AISPM_AUDIT_CHECKPOINT_SECONDS = 300
    settings.AISPM_AUDIT_RETENTION_DAYS = 400
    settings.AISPM_AUDIT_WITNESS_URL = f"file://{tmp_path / 'witness'}/"
    return tmp_path


def history(days_ago: int, n: int) -> None:
    with time_machine.travel(timezone.now() - timedelta(days=days_ago), tick=False):
        with transaction.atomic():
            for i in range(n):
                services.audit_record(event="thing.happened", data={"n": i, "x": 0.1})
        while services.audit_seal():
            pass
        checkpoints.checkpoint_create()


@pytest.fixture
def three_eras(keyed):
    history(500, 10)  # seq 1..10
    history(450, 5)  # seq 11..15
    history(0, 4)  # seq 16..19
    return keyed


def archive_url(tmp_path) -> str:
    return f"file://{tmp_path / 'archive'}/"


def before(days_ago: int) -> str:
    return (timezone.now() - timedelta(days=days_ago)).strftime("%Y-%m-%d")


def test_archiving_a_range_and_verifying_across_it(three_eras, capsys):
    url = archive_url(three_eras)
    call_command("audit_archive", "--before", before(400), "--to", url)
    assert "archived seq 1..15 (15 events)" in capsys.readouterr().out
    archive = AuditArchive.objects.get()
    assert not AuditEvent.objects.filter(seq__lte=15).exists()
    segment = Path(archive.location)
    assert segment.name == "segment-00000000000000000001-00000000000000000015.jsonl.gz"
    lines = gzip.decompress(segment.read_bytes()).decode().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, 16))
    manifest = json.loads(Path(f"{segment}.manifest.json").read_text())
    assert manifest["checkpoint"]["last_seq"] == 15
    assert manifest["head_hash"] == archive.head_hash
    tombstone = AuditEvent.objects.get(event="audit.archived")
    assert tombstone.seq == 20 and tombstone.data["segment_sha256"] == archive.segment_sha256
    # The chain in the database continues from the segment's head hash.
    assert AuditEvent.objects.get(seq=16).prev_hash == archive.head_hash
    call_command("audit_verify", "--no-seal", "--archive", url)
    out = capsys.readouterr().out
    assert "audit chain intact: 5 events" in out and "archived segments verified" in out
    call_command("audit_checkpoint")
    call_command(
        "audit_verify", "--no-seal", "--witness", checkpoints.settings.AISPM_AUDIT_WITNESS_URL
    )


def test_a_second_archive_continues_the_first(three_eras, capsys, settings):
    url = archive_url(three_eras)
    settings.AISPM_AUDIT_RETENTION_DAYS = 460
    call_command("audit_archive", "--before", before(460), "--to", url)
    settings.AISPM_AUDIT_RETENTION_DAYS = 400
    call_command("audit_archive", "--before", before(400), "--to", url)
    assert list(AuditArchive.objects.values_list("first_seq", "last_seq")) == [(1, 10), (11, 15)]
    call_command("audit_verify", "--no-seal", "--archive", url)
    assert "archived segments verified" in capsys.readouterr().out


def test_an_archived_segment_verifies_offline_against_the_witness(three_eras, capsys):
    call_command("audit_archive", "--before", before(400), "--to", archive_url(three_eras))
    capsys.readouterr()
    call_command("audit_public_key")
    key = three_eras / "aispm.pub"
    key.write_text(capsys.readouterr().out)
    segment = AuditArchive.objects.get().location
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "audit.offline_verify",
            segment,
            "--checkpoints",
            str(three_eras / "witness"),
            "--public-key",
            str(key),
            "--manifest",
            f"{segment}.manifest.json",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "15 anchored" in result.stdout


def test_events_inside_the_retention_period_are_never_archived(three_eras):
    with pytest.raises(CommandError, match="younger than 400 days are kept"):
        call_command("audit_archive", "--before", before(399), "--to", archive_url(three_eras))
    assert not AuditArchive.objects.exists()


def test_nothing_is_archived_without_a_checkpoint_before_the_date(three_eras, capsys):
    call_command("audit_archive", "--before", before(600), "--to", archive_url(three_eras))
    assert "nothing to archive" in capsys.readouterr().out


@pytest.mark.postgres
def test_a_tampered_range_is_not_archived_and_no_row_is_removed(three_eras):
    attacks.rewrite_and_rehash(seq=3)
    with pytest.raises(CommandError, match="did not verify, so nothing was removed"):
        call_command("audit_archive", "--before", before(400), "--to", archive_url(three_eras))
    assert AuditEvent.objects.filter(seq__lte=15).count() == 15
    assert not AuditArchive.objects.exists()


def test_a_missing_or_altered_segment_fails_verification(three_eras):
    url = archive_url(three_eras)
    call_command("audit_archive", "--before", before(400), "--to", url)
    segment = Path(AuditArchive.objects.get().location)
    lines = gzip.decompress(segment.read_bytes()).decode().splitlines()
    event = json.loads(lines[4])
    event["actor_label"] = "mallory"
    lines[4] = json.dumps(event)
    segment.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(CommandError, match="audit archive does not verify: segment seq 1..15"):
        call_command("audit_verify", "--no-seal", "--archive", url)
    segment.unlink()
    with pytest.raises(CommandError, match="archive seq 1..15: its segment is missing"):
        call_command("audit_verify", "--no-seal", "--archive", url)


@pytest.mark.postgres
def test_postgresql_still_refuses_deleting_events_outside_an_archive(three_eras):
    call_command("audit_archive", "--before", before(400), "--to", archive_url(three_eras))
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM audit_auditevent WHERE seq = 16")
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM audit_auditarchive")


def test_the_retention_setting_may_not_go_below_six_months():
    env = {**os.environ, "AISPM_AUDIT_RETENTION_DAYS": "182"}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", "import aispm_site.test_settings"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "AISPM_AUDIT_RETENTION_DAYS must be at least 183 (got 182)" in result.stderr


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_verification_starts_after_the_archive(three_eras):
    call_command("audit_archive", "--before", before(400), "--to", archive_url(three_eras))
    history(0, 40)
    single = services.chain_verify(batch=4)
    parallel = services.chain_verify_parallel(workers=2, batch=4)
    assert single.ok and parallel.ok
    assert (parallel.events_checked, parallel.head_seq, parallel.head_hash) == (
        single.events_checked,
        single.head_seq,
        single.head_hash,
    )
    assert single.events_checked == 45
