"""Connectors carry out approved decisions. A new one is one class in CONNECTORS.

Each returns a Delivery: whether it worked, whether a failure is worth retrying,
and what the other side said. They never raise for an ordinary failure.
"""

import functools
import http.client
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.serializers.json import DjangoJSONEncoder
from standardwebhooks.webhooks import Webhook

from agents import crypto
from agents.models import ActionType

from . import formats

EXCERPT_CHARS = 500
TIMEOUT_SECONDS = 10
USER_AGENT = "aispm-release/1"
# Keep-alive: idle connections kept per target, for how long, and how much of a
# response body is read past the excerpt so that its connection can be used again.
# A release worker with a thread pool (AISPM_RELEASE_QUEUE) runs up to --concurrency
# releases to one target at once: keep as many, or each extra one reconnects.
POOL_PER_TARGET = 16
POOL_IDLE_SECONDS = 30
POOL_DRAIN_BYTES = 64 * 1024


@dataclass(frozen=True)
class Delivery:
    succeeded: bool
    retryable: bool = False
    status_code: int | None = None
    excerpt: str = ""
    error: str = ""
    duration_ms: int = 0


class TargetRefused(Exception):
    """The target resolves to an address connectors may not call."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to. The one place connectors look a name up."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True)
class Target:
    """A checked URL: connect only to `addresses`, and speak to `host` (Host, SNI, certificate)."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[IPAddress, ...]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, by every transition scheme that routes them."""
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    found = []
    if address.ipv4_mapped:
        found.append(address.ipv4_mapped)
    if address in _IPV4_COMPATIBLE or address in _NAT64:
        found.append(low32)
    if address.sixtofour:
        found.append(address.sixtofour)
    if address.teredo:
        found += list(address.teredo)
    return found


def _is_public(address: IPAddress, *, carrier: bool = False) -> bool:
    # IPv4-mapped, -compatible and NAT64 addresses sit in ::/8, which Python calls
    # reserved; for them the IPv4 they carry decides.
    return not (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or (address.is_reserved and not carrier)
    )


def _refusal(address: IPAddress) -> str:
    """Why connectors may not call `address`, or "" if they may."""
    embedded = _embedded_ipv4(address) if address.version == 6 else []
    # The local-use NAT64 prefix may embed the IPv4 at any of RFC 6052's offsets, and
    # only the site's translator knows which: refuse all of it.
    if address in _NAT64_LOCAL or not _is_public(address, carrier=bool(embedded)):
        return "a private or local address"
    for inner in embedded:
        if not _is_public(inner):
            return f"a private or local address (it carries the IPv4 address {inner})"
    return ""


def check_target(url: str) -> Target:
    """Resolve `url` once and refuse it unless every address is public.

    The connection then goes to these addresses and no other, so a name that resolves
    differently a moment later (DNS rebinding) cannot redirect it. Private, loopback and
    link-local targets are allowed only with AISPM_ALLOW_PRIVATE_TARGETS (tests, demos).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"not an http(s) URL: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("credentials in the URL are not supported")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname.encode("idna").decode("ascii")
    except (ValueError, UnicodeError) as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    try:
        addresses = (ipaddress.ip_address(host),)
    except ValueError:
        try:
            addresses = tuple(ipaddress.ip_address(a) for a in resolve(host, port))
        except (OSError, UnicodeError, ValueError) as exc:
            raise TargetRefused(f"cannot resolve {host}: {exc}") from None
    if not addresses:
        raise TargetRefused(f"cannot resolve {host}: no addresses")
    if not settings.AISPM_ALLOW_PRIVATE_TARGETS:
        for address in addresses:
            if reason := _refusal(address):
                raise TargetRefused(
                    f"{host} resolves to {address}, {reason}; "
                    "set AISPM_ALLOW_PRIVATE_TARGETS only for tests and demos"
                )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, addresses)


def webhook_secret(*, secret_env: str = "", encrypted: str = "") -> str:
    if secret_env:
        value = os.environ.get(secret_env, "")
        if not value:
            raise RuntimeError(f"the environment variable {secret_env} holding the secret is unset")
        return value
    if encrypted:
        return crypto.decrypt_secret(encrypted)
    raise RuntimeError("no signing secret is configured")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Built once per process: loading the CA bundle takes tens of milliseconds."""
    return ssl.create_default_context()


def _connect(addresses: tuple[IPAddress, ...], port: int, timeout: float) -> socket.socket:
    error: OSError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection((str(address), port), timeout)
        except OSError as exc:
            error = exc
            continue
        # As http.client's own connect() does: a request goes out in two writes
        # (headers, body), and on a kept-alive connection Nagle would hold the second
        # until the receiver's delayed ACK (~40 ms) came back.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Speaks HTTP to the target's name over a socket to an address that was checked."""

    def __init__(self, target: Target, *, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self.target = target

    def connect(self):
        self.sock = _connect(self.target.addresses, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """The same for TLS: SNI and the certificate check use the name, never the address."""

    def __init__(self, target: Target, *, timeout: float):
        context = tls_context()
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self.target, self.tls = target, context

    def connect(self):
        sock = _connect(self.target.addresses, self.port, self.timeout)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class _Pool:
    """Idle keep-alive connections of this process, by target.

    The key holds the scheme, the name, the port and the addresses the target was
    checked to: a connection is reused only when this call's check pinned the very
    same addresses, so it always goes to an address checked now. A name that
    resolves elsewhere gets a new connection to its new, checked, address. A forked
    child (a prefork worker) starts with an empty pool: it never shares a socket
    with its parent.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.idle: dict[tuple, list[tuple[http.client.HTTPConnection, float]]] = {}

    def take(self, key: tuple) -> http.client.HTTPConnection | None:
        now = time.monotonic()
        with self.lock:
            idle = self.idle.get(key, [])
            while idle:
                connection, since = idle.pop()
                if now - since < POOL_IDLE_SECONDS:
                    return connection
                connection.close()
        return None

    def give(self, key: tuple, connection: http.client.HTTPConnection) -> None:
        with self.lock:
            idle = self.idle.setdefault(key, [])
            if len(idle) < POOL_PER_TARGET:
                idle.append((connection, time.monotonic()))
                return
        connection.close()

    def clear(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, {}
        for connections in idle.values():
            for connection, _ in connections:
                connection.close()

    def forget(self) -> None:
        """After a fork: drop the parent's sockets without a word on them."""
        self.lock = threading.Lock()
        self.idle = {}


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.forget)


def _pool_key(target: Target) -> tuple:
    tls = id(tls_context()) if target.scheme == "https" else None
    return (target.scheme, target.host, target.port, target.addresses, tls)


def _exchange(connection, target: Target, body: bytes, headers: dict):
    connection.request("POST", target.path, body=body, headers=headers)
    return connection.getresponse()


def _drained(response) -> bool:
    """Read the rest of a response, if it is short, so that its connection can serve
    the next request; False when the connection must be closed instead."""
    if response.will_close:
        return False
    response.read(POOL_DRAIN_BYTES)
    return response.isclosed()


def post_signed(*, url: str, secret: str, message_id: str, payload: dict) -> Delivery:
    """POST JSON signed per Standard Webhooks; `message_id` stays the same across retries.

    A redirect is never followed: it would send the request to a target nobody checked.
    The connection is kept alive for the next call to the same checked target; a kept
    connection the other side has closed meanwhile is replaced by a new one and the
    request sent again (at least once, with the same webhook-id).
    """
    started = time.monotonic()
    body = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"))
    try:
        target = check_target(url)
        timestamp = datetime.now(UTC)
        signature = Webhook(secret).sign(message_id, timestamp, body)
    except (TargetRefused, RuntimeError, ValueError) as exc:
        return Delivery(False, retryable=False, error=str(exc)[:EXCERPT_CHARS])
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "Idempotency-Key": message_id,
    }
    return _post(target=target, body=body, headers=headers, started=started)


def post_json(*, url: str, payload: dict) -> Delivery:
    """POST plain JSON to a checked target (chat incoming webhooks, which sign nothing)."""
    started = time.monotonic()
    body = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"))
    try:
        target = check_target(url)
    except TargetRefused as exc:
        return Delivery(False, retryable=False, error=str(exc)[:EXCERPT_CHARS])
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    return _post(target=target, body=body, headers=headers, started=started)


def _post(*, target: Target, body: str, headers: dict, started: float) -> Delivery:
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    key = _pool_key(target)
    connection = _pool.take(key)
    reusable = False
    try:
        response = None
        if connection is not None:
            try:
                response = _exchange(connection, target, body.encode(), headers)
            except (ConnectionError, http.client.BadStatusLine):
                connection.close()  # closed by the other side while it was idle
        if response is None:
            connection = kind(target, timeout=TIMEOUT_SECONDS)
            response = _exchange(connection, target, body.encode(), headers)
        excerpt = response.read(EXCERPT_CHARS).decode(errors="replace")
        reusable = _drained(response)
    except (http.client.HTTPException, OSError, ValueError) as exc:
        # A URL http.client will not send (control characters, non-ASCII) stays broken;
        # network and TLS failures may pass.
        broken = isinstance(exc, http.client.InvalidURL | UnicodeError)
        return Delivery(
            False,
            retryable=not broken,
            error=f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS],
            duration_ms=_ms(started),
        )
    finally:
        if reusable:
            _pool.give(key, connection)
        elif connection is not None:
            connection.close()
    if 200 <= response.status < 300:
        return Delivery(
            True, status_code=response.status, excerpt=excerpt, duration_ms=_ms(started)
        )
    return Delivery(
        False,
        retryable=response.status == 429 or response.status >= 500,
        status_code=response.status,
        excerpt=excerpt,
        error=f"HTTP {response.status}",
        duration_ms=_ms(started),
    )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


class Connector:
    kind = ""

    def deliver(self, *, decision, params: dict) -> Delivery:
        raise NotImplementedError


class WebhookConnector(Connector):
    kind = ActionType.Connector.WEBHOOK

    def deliver(self, *, decision, params: dict) -> Delivery:
        action_type = decision.action_type
        config = action_type.connector_config or {}
        try:
            secret = webhook_secret(
                secret_env=config.get("secret_env", ""),
                encrypted=action_type.connector_secret_encrypted,
            )
        except (RuntimeError, crypto.SecretDecryptError) as exc:
            return Delivery(False, retryable=False, error=str(exc))
        payload = {
            "type": "decision.approved",
            "decision_id": str(decision.pk),
            "action": action_type.key,
            "agent": decision.agent.slug,
            "params": params,
            "external_ref": decision.external_ref,
        }
        return post_signed(
            url=config.get("url", ""), secret=secret, message_id=str(decision.pk), payload=payload
        )


def _recipients(value) -> list[str]:
    values = value if isinstance(value, list) else [value] if value else []
    if not all(isinstance(item, str) for item in values):
        raise formats.NotCanonical("a recipient is not a string")
    return [formats.canonical_email(item) for item in values]


class EmailConnector(Connector):
    kind = ActionType.Connector.EMAIL

    def deliver(self, *, decision, params: dict) -> Delivery:
        started = time.monotonic()
        config = decision.action_type.connector_config or {}
        try:
            # Only bare addresses go out: a display name or comment in a recipient
            # would send the mail somewhere the checks never saw.
            to, cc = _recipients(params.get("to")), _recipients(params.get("cc"))
        except formats.NotCanonical as exc:
            return Delivery(False, retryable=False, error=f"recipient refused: {exc}")
        message = EmailMessage(
            subject=str(params.get("subject", ""))[:300].replace("\r", " ").replace("\n", " "),
            body=str(params.get("body", "")),
            from_email=config.get("from") or settings.DEFAULT_FROM_EMAIL,
            to=to,
            cc=cc,
            headers={"X-Aispm-Decision": str(decision.pk)},
        )
        try:
            sent = message.send()
        except (OSError, ValueError) as exc:
            return Delivery(
                False,
                retryable=isinstance(exc, OSError),
                error=str(exc)[:EXCERPT_CHARS],
                duration_ms=_ms(started),
            )
        return Delivery(
            bool(sent),
            excerpt=f"sent to {len(message.recipients())} recipients",
            duration_ms=_ms(started),
        )


class NoneConnector(Connector):
    """The agent performs the action itself once told it was approved."""

    kind = ActionType.Connector.NONE

    def deliver(self, *, decision, params: dict) -> Delivery:
        return Delivery(True, excerpt="released to the agent")


CONNECTORS: dict[str, type[Connector]] = {
    cls.kind: cls for cls in (WebhookConnector, EmailConnector, NoneConnector)
}


def connector_for(action_type: ActionType) -> Connector:
    return CONNECTORS[action_type.connector_type]()
