import datetime as dt
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import transaction

from audit import chainhash, services, siem, tasks
from audit.models import AuditSinkCursor
from tests.audit.receivers import (
    SyslogReceiver,
    free_port,
    ocsf_receiver,
    otlp_receiver,
    wait_for,
)
from tests.factories import auditor

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(siem, "HTTP_BACKOFF_SECONDS", 0.01)
    monkeypatch.setattr(siem, "TIMEOUT_SECONDS", 1.0)


def record_and_seal(n: int, start: int = 0) -> None:
    with transaction.atomic():
        for i in range(start, start + n):
            services.audit_record(
                event="thing.happened",
                data={"n": i, "x": 0.5, "text": "<script>alert(1)</script>\r\n=cmd|' /C calc'!A0"},
            )
    while services.audit_seal():
        pass


class Sink:
    """One kind of SIEM sink: its URL, and a receiver that can be down, then up."""

    def __init__(self, kind: str):
        self.kind = kind
        self.receiver = None
        if kind == "syslog":
            self.port = free_port()  # nothing listens yet: the collector is down
            self.url = f"syslog://127.0.0.1:{self.port}"
        else:
            self.receiver = ocsf_receiver() if kind == "ocsf" else otlp_receiver()
            self.receiver.status = 503
            self.url = (
                f"ocsf+http://:s3cret@127.0.0.1:{self.receiver.port}/ingest"
                if kind == "ocsf"
                else f"otlp+http://127.0.0.1:{self.receiver.port}/v1/logs"
            )

    def up(self):
        if self.kind == "syslog":
            self.receiver = SyslogReceiver(port=self.port)
        else:
            self.receiver.status = 200

    def events(self) -> list[dict]:
        """The full aispm events received, in arrival order."""
        if self.kind == "syslog":
            wait_for(lambda: len(self.receiver.messages()) >= self.expected)
            return self.receiver.events()
        if self.kind == "ocsf":
            return [e["unmapped"]["aispm_event"] for body in self.receiver.bodies for e in body]
        return [record["body"] for body in self.receiver.bodies for record in body]

    def close(self):
        if self.receiver is not None:
            self.receiver.close()


@pytest.fixture(params=["ocsf", "syslog", "otlp"])
def sink(request, settings):
    sink = Sink(request.param)
    settings.AISPM_AUDIT_SIEM_URLS = [sink.url]
    yield sink
    sink.close()


def test_a_sink_catches_up_after_an_outage_in_order_without_loss(sink, client):
    record_and_seal(30)
    with pytest.raises(siem.SinkError):
        siem.siem_deliver(url=sink.url)
    cursor = AuditSinkCursor.objects.get()
    assert cursor.last_seq == 0 and cursor.last_error
    client.force_login(auditor())
    page = client.get("/audit/verification/").content.decode()
    assert siem.sink_name(sink.url) in page and 'data-lag="30"' in page
    assert "s3cret" not in page

    sink.up()
    record_and_seal(20, start=30)
    sink.expected = 50
    assert siem.siem_deliver(url=sink.url, batch=7) == 50
    events = sink.events()
    assert [event["seq"] for event in events] == list(range(1, 51))
    # The SIEM's copy is itself verifiable: each hash covers its content and links.
    previous = chainhash.GENESIS
    for event in events:
        assert event["prev_hash"] == previous
        assert chainhash.event_hash(event, event["prev_hash"]) == event["hash"]
        previous = event["hash"]
    cursor.refresh_from_db()
    assert (cursor.last_seq, cursor.last_error) == (50, "")
    page = client.get("/audit/verification/").content.decode()
    assert 'data-lag="0"' in page
    assert siem.siem_deliver(url=sink.url) == 0  # nothing new, nothing resent


def test_ocsf_events_are_api_activity_with_the_chain_fields(settings):
    receiver = ocsf_receiver()
    try:
        url = f"ocsf+http://:tok@127.0.0.1:{receiver.port}/ingest"
        record_and_seal(2)
        siem.siem_deliver(url=url)
        [body] = receiver.bodies
        first = body[0]
        assert (first["class_uid"], first["category_uid"], first["type_uid"]) == (6003, 6, 600399)
        assert first["metadata"]["sequence"] == 1
        assert first["metadata"]["product"]["name"] == "aispm"
        assert first["unmapped"]["aispm_event"]["hash"]
        assert receiver.headers[0]["Authorization"] == "Bearer tok"
    finally:
        receiver.close()


def test_an_ocsf_sink_that_rejects_the_batch_is_not_retried(settings):
    receiver = ocsf_receiver()
    receiver.status = 400
    try:
        record_and_seal(1)
        with pytest.raises(siem.SinkError, match="HTTP 400"):
            siem.siem_deliver(url=f"ocsf+http://127.0.0.1:{receiver.port}/")
        assert receiver.requests == 1
        receiver.status = 503
        with pytest.raises(siem.SinkError, match="HTTP 503"):
            siem.siem_deliver(url=f"ocsf+http://127.0.0.1:{receiver.port}/")
        assert receiver.requests == 1 + siem.HTTP_ATTEMPTS
    finally:
        receiver.close()


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_syslog_over_tls_verifies_the_collector(tmp_path):
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    receiver = SyslogReceiver(tls=context)
    try:
        record_and_seal(3)
        with pytest.raises(siem.SinkError):  # an unknown CA is refused
            siem.siem_deliver(url=f"syslog+tls://127.0.0.1:{receiver.port}")
        url = f"syslog+tls://127.0.0.1:{receiver.port}?ca={cert}"
        assert siem.siem_deliver(url=url) == 3
        wait_for(lambda: len(receiver.messages()) == 3)
        assert [event["seq"] for event in receiver.events()] == [1, 2, 3]
        header = receiver.messages()[0].partition(b"] ")[0]
        assert header.startswith(b"<133>1 ") and b' thing.happened [event@32473 seq="1"' in header
    finally:
        receiver.close()


def test_beat_streams_to_every_sink_and_one_down_does_not_block_another(settings):
    up, down = ocsf_receiver(), ocsf_receiver()
    down.status = 503
    try:
        settings.AISPM_AUDIT_SIEM_URLS = [
            f"ocsf+http://127.0.0.1:{down.port}/",
            f"ocsf+http://127.0.0.1:{up.port}/",
        ]
        record_and_seal(4)
        assert tasks.stream_audit_events() == 4
        assert [e["metadata"]["sequence"] for e in up.bodies[0]] == [1, 2, 3, 4]
        lag = {row["sink"]: row["lag"] for row in siem.sink_lag()}
        assert lag == {
            f"ocsf+http://127.0.0.1:{down.port}/": 4,
            f"ocsf+http://127.0.0.1:{up.port}/": 0,
        }
    finally:
        up.close()
        down.close()


@pytest.mark.postgres
def test_only_one_delivery_per_sink_runs_at_a_time(settings):
    import psycopg
    from django.db import connection

    receiver = ocsf_receiver()
    url = f"ocsf+http://127.0.0.1:{receiver.port}/"
    lock = siem.sink_lock_key(siem.sink_name(url))
    params = connection.get_connection_params()
    try:
        record_and_seal(3)
        with psycopg.connect(**params, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", [lock])
            assert siem.siem_deliver(url=url) == 0
            assert receiver.requests == 0
        assert siem.siem_deliver(url=url) == 3
    finally:
        receiver.close()
