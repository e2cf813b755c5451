"""The s3://bucket/prefix witness, against a real S3-compatible server (moto's, on a
loopback port): object lock retention, no overwrite, read back by audit_verify and by
the offline verifier, an outage, check --deploy, and hostile configuration."""

import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from moto import server as moto_server

from audit import chainhash, checkpoints, services, witness, witness_s3
from audit.models import AuditCheckpoint
from tests.audit import attacks
from tests.audit.receivers import free_port
from tests.site.test_hostile_sweep import HOSTILE

pytestmark = pytest.mark.django_db
PROJECT_ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "aispm-test",
    "AWS_SECRET_ACCESS_KEY": "aispm-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return boto3.client("s3", endpoint_url=s3_endpoint)


def new_bucket(s3, *, locked: bool = True) -> str:
    name = f"witness-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=locked)
    return name


@pytest.fixture
def bucket(s3, settings, s3_endpoint):
    name = new_bucket(s3)
    settings.AISPM_AUDIT_SIGNING_KEY = os.urandom(32)
    settings.AISPM_AUDIT_CHECKPOINT_SECONDS = 300
    settings.AISPM_AUDIT_RETENTION_DAYS = 400
    settings.AISPM_AUDIT_WITNESS_URL = f"s3://{name}/aispm/checkpoints"
    settings.AISPM_AUDIT_WITNESS_S3_ENDPOINT = s3_endpoint
    return name


def record_and_seal(n: int, **data) -> None:
    with transaction.atomic():
        for i in range(n):
            services.audit_record(event="thing.happened", data={"n": i, "x": 0.25, **data})
    while services.audit_seal():
        pass


def key(seq: int) -> str:
    return f"aispm/checkpoints/checkpoint-{seq:020d}.json"


def test_each_checkpoint_becomes_one_object_retained_in_compliance_mode(s3, bucket):
    record_and_seal(3)
    first = checkpoints.checkpoint_create()
    record_and_seal(2)
    second = checkpoints.checkpoint_create()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="aispm/")["Contents"]
    assert [item["Key"] for item in listed] == [key(3), key(5)]
    body = s3.get_object(Bucket=bucket, Key=key(5))["Body"].read()
    assert body == witness.record_bytes(chainhash.checkpoint_record(second.as_document()))
    head = s3.head_object(Bucket=bucket, Key=key(3))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    retained = head["ObjectLockRetainUntilDate"] - datetime.now(UTC)
    assert timedelta(days=399) < retained <= timedelta(days=400)
    with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key=key(3), VersionId=head["VersionId"])
    read = witness.witness_read(f"s3://{bucket}/aispm/checkpoints/")
    assert [record["hash"] for record in read] == [first.hash, second.hash]


def test_a_bucket_without_object_lock_gets_plain_objects(s3, bucket, settings):
    plain = new_bucket(s3, locked=False)
    settings.AISPM_AUDIT_WITNESS_URL = f"s3://{plain}"
    record_and_seal(1)
    checkpoints.checkpoint_create()
    head = s3.head_object(Bucket=plain, Key="checkpoint-00000000000000000001.json")
    assert "ObjectLockMode" not in head


def test_a_witness_object_is_never_overwritten(s3, bucket, settings):
    record_and_seal(3)
    checkpoint = checkpoints.checkpoint_create()
    url = settings.AISPM_AUDIT_WITNESS_URL
    witness.witness_publish(url=url, checkpoint=checkpoint)  # a retry: same bytes, fine
    before = s3.get_object(Bucket=bucket, Key=key(3))["Body"].read()
    other = AuditCheckpoint(**{**checkpoint.as_document(), "head_hash": "f" * 64})
    with pytest.raises(witness.WitnessError, match="already holds a different checkpoint"):
        witness.witness_publish(url=url, checkpoint=other)
    assert s3.get_object(Bucket=bucket, Key=key(3))["Body"].read() == before
    versions = s3.list_object_versions(Bucket=bucket, Prefix=key(3))["Versions"]
    assert len(versions) == 1


class MissesTheFirstGet:
    """A client whose first GET comes before another writer's PUT: a race."""

    def __init__(self, real):
        self.real, self.raced = real, False

    def __getattr__(self, name):
        return getattr(self.real, name)

    def get_object(self, **kwargs):
        if not self.raced:
            self.raced = True
            raise self.real.exceptions.NoSuchKey(
                {"Error": {"Code": "NoSuchKey"}, "ResponseMetadata": {"HTTPStatusCode": 404}},
                "GetObject",
            )
        return self.real.get_object(**kwargs)


def test_the_server_refuses_an_overwrite_that_races_the_check(s3, bucket, s3_endpoint):
    url = f"s3://{bucket}/race/"
    s3.put_object(Bucket=bucket, Key="race/checkpoint-1.json", Body=b"first\n")
    racing = MissesTheFirstGet(witness_s3.client(s3_endpoint))
    with pytest.raises(witness_s3.S3Conflict, match="already holds a different checkpoint"):
        witness_s3.publish(url, "checkpoint-1.json", b"second\n", retention_days=400, s3=racing)
    assert s3.get_object(Bucket=bucket, Key="race/checkpoint-1.json")["Body"].read() == b"first\n"


@pytest.mark.postgres
def test_deleting_the_tail_and_the_newest_checkpoints_is_caught_by_the_s3_witness(
    s3, bucket, settings
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


def test_verify_against_a_matching_s3_witness_passes(s3, bucket, settings, capsys):
    record_and_seal(4)
    checkpoints.checkpoint_create()
    call_command("audit_verify", "--no-seal", "--witness", settings.AISPM_AUDIT_WITNESS_URL)
    assert "matches the witness" in capsys.readouterr().out


def test_a_checkpoint_written_again_as_a_new_version_fails(s3, bucket, settings):
    record_and_seal(4)
    checkpoint = checkpoints.checkpoint_create()
    # Whoever holds the app's credentials puts a second version, without If-None-Match.
    record = chainhash.checkpoint_record(checkpoint.as_document())
    forged = {**record, "created_at": "2020-01-01T00:00:00.000000Z"}
    s3.put_object(Bucket=bucket, Key=key(4), Body=witness.record_bytes(forged))
    with pytest.raises(CommandError, match=rf"{key(4)} holds 2 different versions"):
        call_command("audit_verify", "--no-seal", "--witness", settings.AISPM_AUDIT_WITNESS_URL)


def test_an_s3_witness_holding_a_different_checkpoint_fails(s3, bucket, settings):
    plain = new_bucket(s3, locked=False)  # unversioned: the object itself is replaced
    settings.AISPM_AUDIT_WITNESS_URL = url = f"s3://{plain}/w/"
    record_and_seal(4)
    checkpoint = checkpoints.checkpoint_create()
    record = chainhash.checkpoint_record(checkpoint.as_document())
    forged = {**record, "created_at": "2020-01-01T00:00:00.000000Z"}
    name = "w/checkpoint-00000000000000000004.json"
    s3.put_object(Bucket=plain, Key=name, Body=witness.record_bytes(forged))
    with pytest.raises(CommandError, match="the database holds a different checkpoint for seq 4"):
        call_command("audit_verify", "--no-seal", "--witness", url)


# --- an outage ------------------------------------------------------------------------


def test_an_s3_witness_outage_loses_no_checkpoint(
    s3, bucket, settings, s3_endpoint, public_key_file, tmp_path, capsys
):
    settings.AISPM_AUDIT_WITNESS_S3_ENDPOINT = f"http://127.0.0.1:{free_port()}"
    record_and_seal(2)
    with pytest.raises(witness.WitnessError, match=r"s3 witness s3://.* failed"):
        checkpoints.checkpoint_create()
    assert AuditCheckpoint.objects.count() == 1  # committed before the witness was tried
    # The checkpoint task fails the same way, so the worker logs and reports it.
    from audit import tasks

    record_and_seal(1)
    with pytest.raises(witness.WitnessError):
        tasks.checkpoint_audit_chain()
    assert AuditCheckpoint.objects.count() == 2
    # The storage answers again: the next run publishes what the outage kept from it,
    # even with nothing new to sign.
    settings.AISPM_AUDIT_WITNESS_S3_ENDPOINT = s3_endpoint
    assert tasks.checkpoint_audit_chain() is None
    held = witness.witness_read(settings.AISPM_AUDIT_WITNESS_URL)
    assert [record["last_seq"] for record in held] == [2, 3]
    record_and_seal(1)
    checkpoints.checkpoint_create()
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 3
    head = s3.head_object(Bucket=bucket, Key=key(2))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    call_command("audit_verify", "--no-seal", "--witness", settings.AISPM_AUDIT_WITNESS_URL)
    assert "matches the witness" in capsys.readouterr().out
    export = tmp_path / "export.jsonl"
    call_command("audit_export", str(export))
    result = offline(
        export,
        "--checkpoints",
        settings.AISPM_AUDIT_WITNESS_URL,
        "--public-key",
        public_key_file,
        endpoint=s3_endpoint,
    )
    assert result.returncode == 0, result.stderr
    assert "4 anchored to 3 signed checkpoints" in result.stdout


def test_witness_credentials_missing_is_a_witness_error(s3, bucket, monkeypatch, tmp_path):
    for name in CREDENTIALS:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    record_and_seal(1)
    with pytest.raises(witness.WitnessError, match="credentials"):
        checkpoints.checkpoint_create()
    assert AuditCheckpoint.objects.count() == 1


# --- offline verification -------------------------------------------------------------


def offline(*args, endpoint: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "DATABASE"))}
    env.update(CREDENTIALS, AISPM_AUDIT_WITNESS_S3_ENDPOINT=endpoint)
    return subprocess.run(
        [sys.executable, "-m", "audit.offline_verify", *map(str, args)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def public_key_file(bucket, tmp_path, capsys):
    call_command("audit_public_key")
    path = tmp_path / "aispm.pub"
    path.write_text(capsys.readouterr().out)
    return path


def test_an_export_verifies_offline_against_the_s3_witness(
    s3, bucket, settings, s3_endpoint, public_key_file, tmp_path
):
    record_and_seal(30, note="«quoted» =1+2", big=2**62, ratio=1 / 3)
    checkpoints.checkpoint_create()
    record_and_seal(5)
    checkpoints.checkpoint_create()
    export = tmp_path / "export.jsonl"
    call_command("audit_export", str(export))
    manifest = tmp_path / "export.jsonl.manifest.json"
    url = settings.AISPM_AUDIT_WITNESS_URL
    args = [export, "--checkpoints", url, "--public-key", public_key_file, "--manifest", manifest]
    result = offline(*args, endpoint=s3_endpoint)
    assert result.returncode == 0, result.stderr
    assert "35 events: every hash matches its content; 35 anchored to 2 signed checkpoints" in (
        result.stdout
    )
    # A second version of a checkpoint is tampering to the auditor too.
    s3.put_object(Bucket=bucket, Key=key(35), Body=b'{"last_seq": 35}\n')
    result = offline(*args, endpoint=s3_endpoint)
    assert result.returncode == 1
    assert f"TAMPERED: s3://{bucket}/{key(35)} holds 2 different versions" in result.stderr


def test_the_offline_verifier_refuses_an_unreadable_or_hostile_s3_witness(
    bucket, public_key_file, tmp_path
):
    record_and_seal(1)
    checkpoints.checkpoint_create()
    export = tmp_path / "export.jsonl"
    call_command("audit_export", str(export))
    closed = f"http://127.0.0.1:{free_port()}"
    for source, endpoint, message in [
        (f"s3://{bucket}\u202e/x", closed, "control, format, space or unassigned character"),
        ("s3://" + "b" * 2000, closed, "is 2005 characters long"),
        (f"s3://{bucket}/x", closed, "cannot be read: s3 witness"),
        (f"s3://{bucket}/x", "http://minio\u2066:9000", "the S3 endpoint contains"),
        (f"s3://{bucket}/x", "ftp://minio", "the S3 endpoint must be an http(s)://"),
    ]:
        result = offline(
            export, "--checkpoints", source, "--public-key", public_key_file, endpoint=endpoint
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr


# --- check --deploy -------------------------------------------------------------------


def test_check_deploy_with_an_s3_witness(s3, bucket, settings, capsys):
    call_command("check", "--deploy", "--fail-level", "CRITICAL")
    err = capsys.readouterr().err
    assert "audit.W002" not in err and "audit.W003" not in err
    settings.AISPM_AUDIT_WITNESS_URL = f"s3://{new_bucket(s3, locked=False)}/x/"
    call_command("check", "--deploy", "--fail-level", "CRITICAL")
    assert "audit.W003" in capsys.readouterr().err
    settings.AISPM_AUDIT_WITNESS_URL = "s3://no-such-bucket-here/x/"
    call_command("check", "--deploy", "--fail-level", "CRITICAL")
    err = capsys.readouterr().err
    assert "audit.W002" in err and "NoSuchBucket" in err
    settings.AISPM_AUDIT_WITNESS_S3_ENDPOINT = f"http://127.0.0.1:{free_port()}"
    call_command("check", "--deploy", "--fail-level", "CRITICAL")
    assert "audit.W002" in capsys.readouterr().err


# --- hostile configuration --------------------------------------------------------------

MUST_REFUSE = {"nul", "lone surrogate", "surrogate inside text", "1 MB string", "200 KB string"}
MUST_REFUSE |= {"bidi controls", "CRLF and script", "deep JSON array", "deep JSON object"}
MUST_REFUSE |= {"deep YAML block"}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("where", ["bucket", "prefix", "endpoint"])
def test_hostile_s3_configuration_is_a_clear_error(name, where):
    value = HOSTILE[name]
    try:
        if where == "endpoint":
            witness_s3.check_endpoint(f"http://{value}:9000")
        else:
            witness_s3.parse_url(f"s3://{value}/p" if where == "bucket" else f"s3://b-1/{value}")
    except witness_s3.S3ConfigError as exc:
        assert len(str(exc)) < 200  # names the problem, never echoes the value
    else:
        assert name not in MUST_REFUSE


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://Upper-Case/x", "must name a bucket"),
        ("s3://key:secret@bucket/x", "names a bucket only"),
        ("s3://b/x", "must name a bucket"),
        ("s3://bucket/x?versionId=1", "no ?query"),
        ("s3://[/x", "not a URL"),
        ("s3://bucket/" + "é" * 300, "longer than 512 bytes"),
        ("s3://bucket/a\u2066b", "U+2066"),
        ("s3://bucket/a\x00b", "U+0000"),
    ],
)
def test_audit_verify_refuses_a_bad_s3_witness_url_clearly(url, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("audit_verify", "--no-seal", "--witness", url)


def run_settings(**env_vars) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISPM_AUDIT_WITNESS")}
    env.update(DJANGO_SETTINGS_MODULE="aispm_site.test_settings", **env_vars)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "variable", "message"),
    [
        ({"AISPM_AUDIT_WITNESS_URL": "s3://bucket/\u202ex"}, "AISPM_AUDIT_WITNESS_URL", "U+202E"),
        ({"AISPM_AUDIT_WITNESS_URL": "s3://" + "a" * 100_000}, "AISPM_AUDIT_WITNESS_URL", "long"),
        ({"AISPM_AUDIT_WITNESS_URL": "s3://a_b/x"}, "AISPM_AUDIT_WITNESS_URL", "bucket"),
        (
            {
                "AISPM_AUDIT_WITNESS_URL": "s3://ok-bucket/",
                "AISPM_AUDIT_WITNESS_S3_ENDPOINT": "ftp://h",
            },
            "AISPM_AUDIT_WITNESS_S3_ENDPOINT",
            "http(s)://",
        ),
        (
            {"AISPM_AUDIT_WITNESS_S3_ENDPOINT": "http://minio\u200b:9000"},
            "AISPM_AUDIT_WITNESS_S3_ENDPOINT",
            "U+200B",
        ),
    ],
)
def test_a_bad_s3_witness_setting_stops_start_up_naming_it(env, variable, message):
    result = run_settings(**env)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: " + variable)
    assert message in last and len(last) < 400


def test_a_good_s3_witness_setting_is_accepted():
    result = run_settings(
        AISPM_AUDIT_WITNESS_URL="s3://aispm-witness/prod/checkpoints/",
        AISPM_AUDIT_WITNESS_S3_ENDPOINT="https://minio.internal:9000",
    )
    assert result.returncode == 0, result.stderr


def test_a_checkpoint_hidden_behind_a_delete_marker_is_still_read(s3, bucket, settings):
    record_and_seal(2)
    checkpoints.checkpoint_create()
    record_and_seal(2)
    newest = checkpoints.checkpoint_create()
    s3.delete_object(Bucket=bucket, Key=key(4))  # a delete marker; the version stays
    assert [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key(2)]
    held = witness.witness_read(settings.AISPM_AUDIT_WITNESS_URL)
    assert [record["hash"] for record in held][-1] == newest.hash


def test_the_verification_page_names_the_witness(bucket, settings, client):
    from tests.factories import auditor

    client.force_login(auditor())
    page = client.get("/audit/verification/").content.decode()
    assert f'<span class="mono">s3://{bucket}/aispm/checkpoints</span>' in page
    settings.AISPM_AUDIT_WITNESS_URL = "syslog://user:secret@collector:6514"
    page = client.get("/audit/verification/").content.decode()
    assert "syslog://collector:6514" in page and "secret" not in page
    settings.AISPM_AUDIT_WITNESS_URL = 'file:///w/<script>alert(1)</script>"hx-get="/'
    page = client.get("/audit/verification/").content.decode()
    assert "<script>alert(1)" not in page and 'hx-get="/' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    settings.AISPM_AUDIT_WITNESS_URL = ""
    page = client.get("/audit/verification/").content.decode()
    assert "none: the checkpoints are only in the database" in page


def test_the_s3_witness_module_imports_neither_django_nor_boto3():
    script = (
        "import sys, audit.witness_s3; "
        "assert not [m for m in sys.modules if m.split('.')[0] in {'django', 'boto3'}]"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


class WithoutConditionalWrites:
    """A client for a server that answers NotImplemented to If-None-Match."""

    def __init__(self, real):
        self.real, self.refused = real, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def put_object(self, **kwargs):
        if "IfNoneMatch" in kwargs:
            self.refused += 1
            raise self.real.exceptions.ClientError(
                {"Error": {"Code": "NotImplemented"}, "ResponseMetadata": {"HTTPStatusCode": 501}},
                "PutObject",
            )
        return self.real.put_object(**kwargs)


def test_a_server_without_conditional_writes_is_guarded_by_the_get(s3, bucket, s3_endpoint):
    url = f"s3://{bucket}/old-server/"
    plain = WithoutConditionalWrites(witness_s3.client(s3_endpoint))
    witness_s3.publish(url, "checkpoint-1.json", b"first\n", retention_days=400, s3=plain)
    assert plain.refused == 1
    head = s3.head_object(Bucket=bucket, Key="old-server/checkpoint-1.json")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(witness_s3.S3Conflict):
        witness_s3.publish(url, "checkpoint-1.json", b"second\n", retention_days=400, s3=plain)
    assert plain.refused == 1  # refused by the GET, before any PUT
