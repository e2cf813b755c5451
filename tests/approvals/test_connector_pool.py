"""Connectors keep connections alive per checked target, and the pinning still holds.

Every lookup goes through a resolver the test controls, as in test_ssrf.py.
"""

import http.server
import os
import socket
import statistics
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook

from approvals import connectors
from tests.approvals.test_ssrf import NAME, PUBLIC, SECRET, ScriptedResolver

pytestmark = pytest.mark.django_db


class KeepAliveReceiver:
    """An HTTP/1.1 receiver that keeps connections open and notes which one each
    request came on (the client's address and port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, status: int = 200):
        self.requests: list[tuple[tuple, dict]] = []
        self.status = status
        self.closing = False
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # It replies in two writes (headers, body); without this its own Nagle
            # would wait ~40 ms for the client's delayed ACK, as a real server does not.
            disable_nagle_algorithm = True

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append((self.client_address, headers, body))
                reply = b"ok " * 10
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(reply)))
                if receiver.closing:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}).start()

    @property
    def connections(self) -> list[tuple]:
        return list(dict.fromkeys(address for address, _, _ in self.requests))

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def resolver(monkeypatch, settings):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = False
    fake = ScriptedResolver()
    monkeypatch.setattr(connectors, "resolve", fake)
    connectors._pool.clear()
    yield fake
    connectors._pool.clear()


@pytest.fixture
def receiver():
    server = KeepAliveReceiver()
    yield server
    server.stop()


@pytest.fixture
def connects(monkeypatch, receiver):
    """Where each new connection goes; then carries it to the loopback receiver."""
    seen = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        seen.append(address[:2])
        return real(("127.0.0.1", receiver.port), *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return seen


def deliver(url, message_id="m-1"):
    return connectors.post_signed(
        url=url, secret=SECRET, message_id=message_id, payload={"n": message_id}
    )


def test_deliveries_to_one_target_share_one_connection(resolver, receiver, connects):
    resolver.answers[NAME] = [[PUBLIC]]

    for n in range(3):
        assert deliver(f"http://{NAME}:{receiver.port}/hook", f"m-{n}").succeeded

    assert connects == [(PUBLIC, receiver.port)]
    assert len(receiver.requests) == 3 and len(receiver.connections) == 1
    assert resolver.lookups == [NAME] * 3  # every delivery checks the target again
    for _, headers, body in receiver.requests:
        Webhook(SECRET).verify(body, headers)


def test_a_name_that_now_resolves_elsewhere_gets_a_new_connection_to_the_checked_address(
    resolver, receiver, connects
):
    other = "93.184.215.15"
    resolver.answers[NAME] = [[PUBLIC], [other]]

    assert deliver(f"http://{NAME}:{receiver.port}/hook", "m-1").succeeded
    assert deliver(f"http://{NAME}:{receiver.port}/hook", "m-2").succeeded

    assert connects == [(PUBLIC, receiver.port), (other, receiver.port)]
    assert len(receiver.connections) == 2


def test_a_name_that_turns_private_is_refused_even_with_a_kept_connection(
    resolver, receiver, connects
):
    resolver.answers[NAME] = [[PUBLIC], ["127.0.0.1"]]

    assert deliver(f"http://{NAME}:{receiver.port}/hook", "m-1").succeeded
    refused = deliver(f"http://{NAME}:{receiver.port}/hook", "m-2")

    assert not refused.succeeded and not refused.retryable
    assert "private or local" in refused.error
    assert len(receiver.requests) == 1


def test_rebinding_to_another_loopback_address_cannot_use_the_kept_connection(settings, resolver):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = True
    checked = KeepAliveReceiver()
    other = KeepAliveReceiver(host="127.0.0.2", port=checked.port)
    try:
        resolver.answers[NAME] = [["127.0.0.1"], ["127.0.0.2"]]
        assert deliver(f"http://{NAME}:{checked.port}/hook", "m-1").succeeded
        assert deliver(f"http://{NAME}:{checked.port}/hook", "m-2").succeeded
        # The second went where the second check said, on its own connection.
        assert len(checked.requests) == 1 and len(other.requests) == 1
    finally:
        checked.stop()
        other.stop()


def test_a_kept_connection_the_receiver_closed_is_replaced_and_the_request_sent_once(
    resolver, receiver, connects
):
    resolver.answers[NAME] = [[PUBLIC]]
    assert deliver(f"http://{NAME}:{receiver.port}/hook", "m-1").succeeded
    [(key, [(kept, _)])] = connectors._pool.idle.items()
    kept.sock.shutdown(socket.SHUT_RDWR)  # as if the receiver had timed it out

    delivery = deliver(f"http://{NAME}:{receiver.port}/hook", "m-2")

    assert delivery.succeeded, delivery.error
    assert [headers["webhook-id"] for _, headers, _ in receiver.requests] == ["m-1", "m-2"]
    assert len(connects) == 2


def test_a_response_that_closes_the_connection_is_not_kept(resolver, receiver, connects):
    resolver.answers[NAME] = [[PUBLIC]]
    receiver.closing = True

    assert deliver(f"http://{NAME}:{receiver.port}/hook", "m-1").succeeded
    assert deliver(f"http://{NAME}:{receiver.port}/hook", "m-2").succeeded

    assert len(connects) == 2
    assert not any(connectors._pool.idle.values())


def test_a_failed_status_keeps_its_meaning_and_the_connection(resolver, receiver, connects):
    resolver.answers[NAME] = [[PUBLIC]]
    receiver.status = 503

    first = deliver(f"http://{NAME}:{receiver.port}/hook", "m-1")
    second = deliver(f"http://{NAME}:{receiver.port}/hook", "m-2")

    assert (first.status_code, first.retryable) == (503, True)
    assert (second.status_code, second.retryable) == (503, True)
    assert first.excerpt == "ok " * 10
    assert len(connects) == 1


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_a_forked_worker_starts_with_no_kept_connections(resolver, receiver, connects):
    resolver.answers[NAME] = [[PUBLIC]]
    assert deliver(f"http://{NAME}:{receiver.port}/hook").succeeded
    assert connectors._pool.idle

    pid = os.fork()
    if pid == 0:  # the child
        os._exit(0 if not connectors._pool.idle else 1)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert connectors._pool.idle  # the parent keeps its own


def test_a_kept_connection_sends_at_once(resolver, receiver, connects):
    """TCP_NODELAY, as http.client sets it in the connect() this pool overrides: without
    it a kept connection's next request waits on the receiver's delayed ACK (~40 ms
    on Linux), which capped a release worker at a few dozen releases a second."""
    resolver.answers[NAME] = [[PUBLIC]]
    assert deliver(f"http://{NAME}:{receiver.port}/hook", "m-0").succeeded
    [(_, [(kept, _)])] = connectors._pool.idle.items()
    assert kept.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    durations = []
    for n in range(1, 12):
        started = time.perf_counter()
        assert deliver(f"http://{NAME}:{receiver.port}/hook", f"m-{n}").succeeded
        durations.append(time.perf_counter() - started)

    assert len(connects) == 1
    assert statistics.median(durations) < 0.030, durations
