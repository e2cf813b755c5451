"""Connectors and agent callbacks reach only public addresses, and only the one they checked.

Every lookup goes through a resolver the test controls: no real name is resolved here.
"""

import ipaddress
import json
import socket
import ssl

import pytest
import trustme
from standardwebhooks.webhooks import Webhook

from agents import crypto
from agents.models import Alert
from approvals import connectors, services, tasks
from approvals.models import Decision, ReleaseAttempt
from tests.factories import (
    payer_world,
    reviewer,
)
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NAME = "hooks.example"
PUBLIC = "93.184.215.14"


class ScriptedResolver:
    """The n-th lookup of a name gets its n-th answer, and the last answer repeats."""

    def __init__(self):
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test's resolver")
        answers = self.answers[host]
        answer = answers[min(self.lookups.count(host), len(answers) - 1)]
        self.lookups.append(host)
        return answer


@pytest.fixture(autouse=True)
def resolver(monkeypatch, settings):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = False
    fake = ScriptedResolver()
    monkeypatch.setattr(connectors, "resolve", fake)
    return fake


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def connections(monkeypatch, receiver):
    """Records where each connection goes, then carries it to the loopback receiver.

    This is how a test follows a connection to a public-looking address without
    leaving the machine.
    """
    seen = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        seen.append(address[:2])
        return real((receiver.host, receiver.port), *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return seen


def deliver(url):
    return connectors.post_signed(url=url, secret=SECRET, message_id="m-1", payload={"n": 1})


def teredo(server: str, client: str) -> str:
    """A Teredo address: the client's IPv4 is stored inverted (RFC 4380)."""
    high = int(ipaddress.IPv6Address("2001::")) | int(ipaddress.IPv4Address(server)) << 64
    inverted = ~int(ipaddress.IPv4Address(client)) & 0xFFFFFFFF
    return str(ipaddress.IPv6Address(high | inverted))


EMBEDDED_PRIVATE = [
    "::127.0.0.1",  # IPv4-compatible
    "::169.254.169.254",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64, well-known prefix
    "64:ff9b::127.0.0.1",
    "64:ff9b::192.168.1.1",
    "64:ff9b::0.0.0.0",
    "64:ff9b::224.0.0.1",
    "64:ff9b::240.0.0.1",
    "64:ff9b:1::a9fe:a9fe",  # NAT64, local-use prefix
    "64:ff9b:1:a9fe:a9:fe00::",  # the same, embedded the RFC 6052 /48 way
    "2002:7f00:1::",  # 6to4
    "2002:a9fe:a9fe::1",
    "2002:c0a8:101::",
    teredo("8.8.8.8", "127.0.0.1"),  # Teredo: the client
    teredo("10.0.0.1", "8.8.8.8"),  # Teredo: the server
]
PRIVATE = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "ff0e::1",
    "2001:db8::1",
]


@pytest.mark.parametrize("address", EMBEDDED_PRIVATE)
def test_ipv6_that_embeds_a_private_ipv4_is_refused(address, resolver):
    delivery = deliver(f"http://[{address}]/hook")
    assert not delivery.succeeded and not delivery.retryable
    assert "private or local" in delivery.error
    assert resolver.lookups == []  # an address literal is never looked up


@pytest.mark.parametrize("address", PRIVATE + EMBEDDED_PRIVATE)
def test_a_name_that_resolves_to_a_private_address_is_refused(address, resolver):
    resolver.answers[NAME] = [[address]]
    delivery = deliver(f"https://{NAME}/hook")
    assert not delivery.succeeded and not delivery.retryable
    assert f"resolves to {ipaddress.ip_address(address)}" in delivery.error


def test_a_name_with_one_private_address_among_public_ones_is_refused(resolver):
    resolver.answers[NAME] = [[PUBLIC, "2606:4700::1111", "::ffff:127.0.0.1"]]
    with pytest.raises(connectors.TargetRefused, match="private or local"):
        connectors.check_target(f"https://{NAME}/hook")


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700::1111", "64:ff9b::8.8.8.8", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass_and_are_pinned(address, resolver):
    resolver.answers[NAME] = [[address]]
    target = connectors.check_target(f"https://{NAME}:8443/hook?a=1")
    assert target.addresses == (ipaddress.ip_address(address),)
    assert (target.host, target.port, target.path) == (NAME, 8443, "/hook?a=1")


@pytest.mark.parametrize(
    "url",
    ["ftp://hooks.example/", "http:///hook", "http://user:pw@hooks.example/", "http://x:99999/"],
)
def test_urls_that_are_not_plain_http_targets_are_refused(url):
    with pytest.raises(connectors.TargetRefused):
        connectors.check_target(url)


def test_an_unresolvable_name_is_refused_without_retry(resolver):
    delivery = deliver("https://nowhere.example/hook")
    assert not delivery.succeeded and not delivery.retryable
    assert "cannot resolve nowhere.example" in delivery.error


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(
    resolver, receiver, connections
):
    # DNS rebinding: public for the check, loopback for anyone who asks again.
    resolver.answers[NAME] = [[PUBLIC], ["127.0.0.1"]]
    delivery = deliver(f"http://{NAME}:{receiver.port}/hook")
    assert delivery.succeeded
    assert connections == [(PUBLIC, receiver.port)]
    assert resolver.lookups == [NAME]
    [request] = receiver.requests
    assert request.headers["host"] == f"{NAME}:{receiver.port}"
    Webhook(SECRET).verify(request.body, request.headers)


def test_a_rebinding_name_cannot_move_the_connection_to_another_address(resolver, settings):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = True
    checked = Receiver().start()
    other = Receiver(host="127.0.0.2", port=checked.port).start()
    try:
        resolver.answers[NAME] = [["127.0.0.1"], ["127.0.0.2"]]
        assert deliver(f"http://{NAME}:{checked.port}/hook").succeeded
        assert len(checked.requests) == 1
        assert other.requests == []
    finally:
        checked.stop()
        other.stop()


def test_a_redirect_through_a_pinned_connection_is_not_followed(resolver, receiver, connections):
    resolver.answers[NAME] = [[PUBLIC]]
    receiver.script = [(302, 0)]
    delivery = deliver(f"http://{NAME}:{receiver.port}/hook")
    assert not delivery.succeeded and not delivery.retryable
    assert delivery.status_code == 302
    assert len(receiver.requests) == 1
    assert connections == [(PUBLIC, receiver.port)]


@pytest.fixture
def tls(monkeypatch):
    """A private CA the connector trusts for the test, in place of the system's."""
    ca = trustme.CA()
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    monkeypatch.setattr(connectors, "tls_context", lambda: client)
    return ca


def tls_receiver(ca, *names):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return Receiver(tls=context).start()


def test_https_is_pinned_and_sends_the_name_for_sni_host_and_the_certificate(
    resolver, tls, settings
):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = True
    server = tls_receiver(tls, NAME)
    try:
        resolver.answers[NAME] = [["127.0.0.1"], ["127.0.0.2"]]
        delivery = deliver(f"https://{NAME}:{server.port}/hook")
        assert delivery.succeeded, delivery.error
        assert server.server_names == [NAME]
        [request] = server.requests
        assert request.headers["host"] == f"{NAME}:{server.port}"
        assert resolver.lookups == [NAME]
    finally:
        server.stop()


def test_https_refuses_a_certificate_for_another_name(resolver, tls, settings):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = True
    server = tls_receiver(tls, "other.example")
    try:
        resolver.answers[NAME] = [["127.0.0.1"]]
        delivery = deliver(f"https://{NAME}:{server.port}/hook")
        assert not delivery.succeeded
        assert "certificate verify failed" in delivery.error
        assert server.requests == []
    finally:
        server.stop()


# --- through release and the agent callback ---------------------------------------------


@pytest.fixture
def world():
    return payer_world(url=f"http://{NAME}/hook", secret=SECRET)


def approved(world):
    decision = services.decision_create(
        agent=world["agent"],
        action_type=world["action"],
        key=world["key"],
        params={"what": "pay 10"},
        reasoning="due",
    )
    return services.decision_approve(decision=decision, reviewer=reviewer())


def test_a_release_to_an_embedded_private_address_fails_without_connecting(world, connections):
    type(world["action"]).objects.filter(pk=world["action"].pk).update(
        connector_config={"url": "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/"}
    )
    decision = approved(world)
    assert tasks.release_decision.run(str(decision.pk)) == Decision.Status.FAILED
    assert "private or local" in ReleaseAttempt.objects.get(decision=decision).error
    assert connections == []


def test_a_release_connects_to_the_checked_address(world, resolver, receiver, connections):
    type(world["action"]).objects.filter(pk=world["action"].pk).update(
        connector_config={"url": f"http://{NAME}:{receiver.port}/hook"}
    )
    resolver.answers[NAME] = [[PUBLIC], ["127.0.0.1"]]
    decision = approved(world)
    assert tasks.release_decision.run(str(decision.pk)) == Decision.Status.RELEASED
    assert connections == [(PUBLIC, receiver.port)]
    assert json.loads(receiver.requests[0].body)["decision_id"] == str(decision.pk)


def callback_to(world, url):
    agent = world["agent"]
    type(agent).objects.filter(pk=agent.pk).update(
        callback_url=url, callback_secret_encrypted=crypto.encrypt_secret(SECRET)
    )
    decision = services.decision_create(
        agent=world["agent"], action_type=world["action"], params={"what": "x"}, reasoning="r"
    )
    return tasks.notify_agent.run(str(decision.pk), "rejected"), decision


def test_the_agent_callback_connects_to_the_checked_address(world, resolver, receiver, connections):
    resolver.answers["agent.example"] = [[PUBLIC], ["127.0.0.1"]]
    outcome, decision = callback_to(world, f"http://agent.example:{receiver.port}/cb")
    assert outcome == "sent"
    assert connections == [(PUBLIC, receiver.port)]
    [request] = receiver.requests
    assert request.headers["host"] == f"agent.example:{receiver.port}"
    assert request.headers["webhook-id"] == f"{decision.pk}.rejected"


@pytest.mark.parametrize("host", ["[::127.0.0.1]", "[64:ff9b::a9fe:a9fe]", "[::ffff:10.0.0.1]"])
def test_an_agent_callback_to_an_embedded_private_address_is_refused(world, connections, host):
    outcome, decision = callback_to(world, f"http://{host}/cb")
    assert outcome == "failed"
    assert connections == []
    alert = Alert.objects.get(kind="callback_failed", subject=f"{decision.pk}.rejected")
    assert "private or local" in alert.message
