"""Connectors carry out approved decisions. A new one is one class in CONNECTORS.

Each returns a Delivery: whether it worked, whether a failure is worth retrying,
and what the other side said. They never raise for an ordinary failure.
"""

import functools
import ipaddress
import json
import os
import socket
import time
import urllib.error
import urllib.request
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


def check_target(url: str) -> None:
    """Refuse private, loopback and link-local targets unless explicitly allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"not an http(s) URL: {url!r}")
    if settings.AISPM_ALLOW_PRIVATE_TARGETS:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TargetRefused(f"cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise TargetRefused(
                f"{parts.hostname} resolves to {address}, a private or local address; "
                "set AISPM_ALLOW_PRIVATE_TARGETS only for tests and demos"
            )


def webhook_secret(*, secret_env: str = "", encrypted: str = "") -> str:
    if secret_env:
        value = os.environ.get(secret_env, "")
        if not value:
            raise RuntimeError(f"the environment variable {secret_env} holding the secret is unset")
        return value
    if encrypted:
        return crypto.decrypt_secret(encrypted)
    raise RuntimeError("no signing secret is configured")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        # Following would turn the POST into a GET to a target check_target never saw.
        return None


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    """Built once per process: building one loads the CA bundle, tens of milliseconds."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def post_signed(*, url: str, secret: str, message_id: str, payload: dict) -> Delivery:
    """POST JSON signed per Standard Webhooks; `message_id` stays the same across retries."""
    started = time.monotonic()
    body = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"))
    try:
        check_target(url)
        timestamp = datetime.now(UTC)
        signature = Webhook(secret).sign(message_id, timestamp, body)
    except (TargetRefused, RuntimeError, ValueError) as exc:
        return Delivery(False, retryable=False, error=str(exc)[:EXCERPT_CHARS])
    request = urllib.request.Request(
        url,
        data=body.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": signature,
            "Idempotency-Key": message_id,
        },
    )
    try:
        with _opener().open(request, timeout=TIMEOUT_SECONDS) as response:
            excerpt = response.read(EXCERPT_CHARS).decode(errors="replace")
            return Delivery(
                True,
                status_code=response.status,
                excerpt=excerpt,
                duration_ms=_ms(started),
            )
    except urllib.error.HTTPError as exc:
        excerpt = exc.read(EXCERPT_CHARS).decode(errors="replace") if exc.fp else ""
        retryable = exc.code == 429 or exc.code >= 500
        return Delivery(
            False,
            retryable=retryable,
            status_code=exc.code,
            excerpt=excerpt,
            error=f"HTTP {exc.code}",
            duration_ms=_ms(started),
        )
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Delivery(
            False,
            retryable=True,
            error=f"{type(exc).__name__}: {reason}"[:EXCERPT_CHARS],
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
