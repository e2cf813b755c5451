import random
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit import services
from audit.models import AppendOnlyError, AuditEvent, AuditVerification
from tests.factories import auditor, reviewer

pytestmark = pytest.mark.django_db


def record(n: int, **data) -> list[AuditEvent]:
    with transaction.atomic():
        return [
            services.audit_record(event="thing.happened", data={"n": i, "x": 0.1, **data})
            for i in range(n)
        ]


def tamper(sql: str, params: list) -> None:
    """Change a row behind the application's back, as an attacker with DB access would."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_no_update_delete"
            )
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute(
                "ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_no_update_delete"
            )


def test_sealing_chains_events_in_order():
    events = record(5)
    assert services.audit_seal() == 5
    rows = list(AuditEvent.objects.order_by("seq").values("id", "seq", "prev_hash", "hash"))
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["id"] for r in rows] == [e.pk for e in events]
    assert rows[0]["prev_hash"] == services.GENESIS
    for before, after in zip(rows, rows[1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    record(2)
    assert services.audit_seal() == 2
    report = services.chain_verify()
    assert (report.ok, report.events_checked, report.head_seq) == (True, 7, 7)


def test_the_hash_covers_canonical_json_without_floats():
    [event] = record(1, amount=1234.5, nested={"b": [1, 2.0], "a": "é"})
    services.audit_seal()
    row = AuditEvent.objects.filter(pk=event.pk).values(*services.CHAIN_FIELDS).get()
    canonical = services.canonical_event(row).decode()
    assert '"amount":{"$float":"1234.5"}' in canonical
    assert canonical.index('"a":"é"') < canonical.index('"b":')
    assert row["created_at"].strftime("%Y-%m-%dT%H:%M:%S") in canonical and 'Z"' in canonical


def test_events_cannot_be_changed_or_deleted_through_the_app():
    [event] = record(1)
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(event="nothing")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        event.delete()
    event.event = "rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET event = 'x'",
        "UPDATE audit_auditevent SET hash = 'f' WHERE seq IS NOT NULL",
        "DELETE FROM audit_auditevent",
    ],
)
def test_postgresql_refuses_update_and_delete(sql):
    record(2)
    services.audit_seal()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)


@pytest.mark.postgres
@pytest.mark.parametrize("opt_in", ["off", "on"])
def test_postgresql_refuses_truncate_whatever_the_session_sets(opt_in):
    record(1)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"SET LOCAL aispm.allow_truncate = '{opt_in}'")
        cursor.execute("TRUNCATE audit_auditevent")


def test_verify_reports_exactly_the_edited_row():
    events = record(6)
    services.audit_seal()
    victim = events[3]
    tamper(
        "UPDATE audit_auditevent SET data = %s WHERE id = %s",
        ['{"n": 3, "x": 0.1, "approved_by": "mallory"}', victim.pk],
    )
    report = services.chain_verify()
    assert not report.ok
    assert report.first_broken_id == victim.pk
    assert report.problem.startswith("hash mismatch")
    assert report.events_checked == 3


def test_verify_reports_a_broken_link_and_a_gap():
    events = record(4)
    services.audit_seal()
    tamper("UPDATE audit_auditevent SET prev_hash = %s WHERE id = %s", ["0" * 64, events[2].pk])
    report = services.chain_verify()
    assert (report.first_broken_id, report.problem.split(":")[0]) == (events[2].pk, "broken link")
    tamper(
        "UPDATE audit_auditevent SET prev_hash = %s WHERE id = %s",
        [events[1].hash or AuditEvent.objects.get(pk=events[1].pk).hash, events[2].pk],
    )
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])
    report = services.chain_verify()
    assert report.first_broken_id == events[2].pk
    assert report.problem.startswith("gap")


def test_the_verify_command_exits_0_with_count_and_head(capsys):
    record(3)
    call_command("audit_verify")
    out = capsys.readouterr().out
    head = AuditEvent.objects.order_by("-seq").first()
    assert "audit chain intact: 3 events" in out
    assert head.hash in out
    assert AuditVerification.objects.get().ok


def test_the_verify_command_exits_1_naming_the_broken_event():
    events = record(3)
    services.audit_seal()
    tamper("UPDATE audit_auditevent SET actor_label = 'mallory' WHERE id = %s", [events[1].pk])
    with pytest.raises(CommandError, match=f"broken at event {events[1].pk}: hash mismatch"):
        call_command("audit_verify")
    verification = AuditVerification.objects.get()
    assert (verification.ok, verification.first_broken_id) == (False, events[1].pk)


def test_verify_from_an_event_checks_only_the_rest():
    events = record(5)
    services.audit_seal()
    tamper("UPDATE audit_auditevent SET actor_label = 'x' WHERE id = %s", [events[0].pk])
    report = services.chain_verify(from_id=events[2].pk)
    assert report.ok and report.events_checked == 3


def test_the_verification_page_is_for_auditors(client):
    record(2)
    call_command("audit_verify")
    assert client.get("/audit/verification/").status_code == 302
    client.force_login(reviewer())
    assert client.get("/audit/verification/").status_code == 403
    client.force_login(auditor())
    response = client.get("/audit/verification/")
    head = AuditEvent.objects.order_by("-seq").first()
    assert response.status_code == 200
    assert head.hash in response.content.decode()
    assert "Intact" in response.content.decode()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_fork_or_skip_the_chain():
    stop = threading.Event()
    written = []

    def writer(worker: int):
        rng = random.Random(worker)
        try:
            for batch in range(15):
                with transaction.atomic():
                    for i in range(rng.randint(1, 4)):
                        event = services.audit_record(
                            event="w", data={"w": worker, "b": batch, "i": i}
                        )
                        written.append(event.pk)
                    time.sleep(rng.random() / 50)  # commit out of id order
        finally:
            connection.close()

    def sealer():
        try:
            while not stop.is_set():
                services.audit_seal(limit=7)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    seal_thread = threading.Thread(target=sealer)
    seal_thread.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    seal_thread.join()
    while services.audit_seal():
        pass
    report = services.chain_verify()
    assert report.ok, report
    assert report.events_checked == len(written)
    assert set(AuditEvent.objects.values_list("pk", flat=True)) == set(written)
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()


def test_a_literal_float_marker_cannot_pass_for_a_number():
    [number] = record(1, amount=1.5)
    [lookalike] = record(1, amount={"$float": "1.5"})
    services.audit_seal()
    rows = {row["id"]: row for row in AuditEvent.objects.values(*services.CHAIN_FIELDS)}
    one = services.canonical_event(rows[number.pk]).decode()
    other = services.canonical_event(rows[lookalike.pk]).decode()
    assert '"amount":{"$float":"1.5"}' in one
    assert '"amount":{"$$float":"1.5"}' in other
    assert services.chain_verify().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("damage", ["none", "edit", "delete_at_boundary", "link"])
def test_parallel_verification_agrees_with_a_single_pass(damage):
    events = record(300)
    while services.audit_seal():
        pass
    ids = [e.pk for e in events]
    if damage == "edit":
        tamper("UPDATE audit_auditevent SET actor_label = 'm' WHERE id = %s", [ids[220]])
    elif damage == "delete_at_boundary":
        tamper("DELETE FROM audit_auditevent WHERE id = %s", [ids[149]])
    elif damage == "link":
        tamper("UPDATE audit_auditevent SET prev_hash = %s WHERE id = %s", ["0" * 64, ids[150]])
    single = services.chain_verify(batch=40)
    parallel = services.chain_verify_parallel(workers=2, batch=40)
    assert (parallel.ok, parallel.first_broken_id, parallel.events_checked) == (
        single.ok,
        single.first_broken_id,
        single.events_checked,
    )
    assert parallel.problem.split(":")[0] == single.problem.split(":")[0]
    assert parallel.ok == (damage == "none")
