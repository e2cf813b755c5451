"""Notifications to reviewers: preferences, fan-out after commit, sending, digests.

Nothing here runs on an agent's request path: the submission only registers an
on-commit hook that enqueues one task. Workers then work out who hears about the
decision, write one Notification row per recipient, and send each with retries.
"""

import logging
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from agents import crypto
from audit.services import audit_record

from .. import connectors
from ..models import Decision, Notification, NotificationPreference
from . import messages
from .fanout import (  # noqa: F401 - the fan-out's public names, re-exported
    CHAT_CHANNELS,
    REVIEW_PERMISSION,
    digests_due,
    notifications_for_decision,
    notifications_for_group_members,
    notifications_for_users,
    notify_new_decisions,
)

log = logging.getLogger(__name__)
Channel = NotificationPreference.Channel
Mode = NotificationPreference.Mode


class PreferenceRefused(Exception):
    pass


def _label(url: str) -> str:
    """What may be shown and logged of a webhook URL: its host, never its path."""
    parts = urlsplit(url)
    return (parts.hostname or "")[:255]


def check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise PreferenceRefused("Enter an http(s) URL.")
    if parts.scheme == "http" and not settings.AISPM_ALLOW_PRIVATE_TARGETS:
        raise PreferenceRefused("Chat webhooks must use https.")
    if parts.username or parts.password:
        raise PreferenceRefused("Credentials in the URL are not supported.")
    try:
        connectors.check_target(url)
    except connectors.TargetRefused as exc:
        raise PreferenceRefused(f"That webhook cannot be used: {exc}") from None
    return url


def preference_save(
    *,
    actor,
    channel: str,
    mode: str,
    min_risk: str,
    digest_minutes: int = 60,
    webhook_url: str | None = None,
    user=None,
    group=None,
) -> NotificationPreference:
    """Create or update one user's (or one group's) preference for one channel.

    A chat channel needs a webhook URL the first time; after that, a blank URL keeps
    the stored one. The URL is stored encrypted and never audited.
    """
    if (user is None) == (group is None):
        raise PreferenceRefused("A preference belongs to one user or one group.")
    if channel in CHAT_CHANNELS and webhook_url:
        check_webhook_url(webhook_url)
    with transaction.atomic():
        owner = {"user": user} if user is not None else {"group": group}
        preference = (
            NotificationPreference.objects.select_for_update()
            .filter(channel=channel, **owner)
            .first()
        ) or NotificationPreference(channel=channel, **owner)
        if channel in CHAT_CHANNELS:
            if webhook_url:
                preference.webhook_url_encrypted = crypto.encrypt_secret(webhook_url)
                preference.target_label = _label(webhook_url)
            elif not preference.webhook_url_encrypted and mode != Mode.OFF:
                raise PreferenceRefused("A chat channel needs its incoming webhook URL.")
        preference.mode = mode
        preference.min_risk = min_risk
        preference.digest_minutes = digest_minutes
        preference.updated_at = timezone.now()
        preference.save()
        audit_record(
            event="notification.preference_saved",
            actor=actor,
            target=preference,
            data={
                "owner": f"user:{user.pk}" if user is not None else f"group:{group.pk}",
                "channel": channel,
                "mode": mode,
                "min_risk": min_risk,
                "digest_minutes": digest_minutes,
                "target": preference.target_label,
                "webhook_changed": bool(webhook_url),
            },
        )
    return preference


# --- sending -----------------------------------------------------------------------


def _may_still_review():
    """Whether a notification's person may still review, as a subquery of the send's
    one read (the permission as Django's ModelBackend grants it, as has_perm does)."""
    people = get_user_model().objects.with_perm(
        REVIEW_PERMISSION, backend="django.contrib.auth.backends.ModelBackend"
    )
    return Exists(people.filter(pk=OuterRef("user_id")))


def notification_for_sending(notification_id) -> Notification | None:
    """A queued notification, read with its channel, its decision and whether its
    person may still review, in one query.

    This read is the send's check, made when the send starts, not when the row was
    queued: a decision no longer pending is not announced, nor is anything sent to
    someone who may no longer review it (see notification_deliver).
    """
    return (
        Notification.objects.select_related(
            "preference", "decision__agent", "decision__action_type"
        )
        .annotate(recipient_may_review=_may_still_review())
        .filter(pk=notification_id, status=Notification.Status.QUEUED)
        .first()
    )


def _recipient_refused(notification: Notification) -> bool:
    if notification.user_id is None:
        return False  # a group's channel, or a row from before recipients were recorded
    may = getattr(notification, "recipient_may_review", None)
    if may is None:
        may = (
            Notification.objects.filter(pk=notification.pk)
            .annotate(may=_may_still_review())
            .values_list("may", flat=True)
            .first()
        )
    if not may:
        return True
    return notification.decision_id is not None and (
        notification.decision.agent.owner_id == notification.user_id
    )


def _items(notification: Notification) -> list[messages.Item]:
    if notification.kind != Notification.Kind.DIGEST and notification.decision_id is not None:
        decision = notification.decision
        if decision.status != Decision.Status.PENDING:
            return []
        return [messages.item_for(decision)]
    decisions = Decision.objects.select_related("agent", "action_type").filter(
        pk__in=notification.decision_ids
    )
    if notification.kind != Notification.Kind.DIGEST:
        decisions = decisions.filter(status=Decision.Status.PENDING)
    return [messages.item_for(d) for d in decisions.order_by("-risk_rank", "expires_at")]


def _redact(error: str, url: str) -> str:
    """Errors from http.client may quote the URL; a chat webhook's path is its secret."""
    path = urlsplit(url).path
    if path and path != "/":
        error = error.replace(path, "/…")
    return error.replace(url, "<webhook>")[:500]


def notification_deliver(*, notification: Notification) -> connectors.Delivery:
    """Send one notification once; the caller decides about retries."""
    if _recipient_refused(notification):
        return connectors.Delivery(False, error="the recipient may no longer review")
    items = _items(notification)
    if not items:
        return connectors.Delivery(True, excerpt="nothing pending any more")
    kind = notification.kind
    if notification.channel == Channel.EMAIL:
        message = EmailMessage(
            subject=messages.email_subject(items, kind),
            body=messages.email_body(items, kind),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[notification.recipient],
        )
        try:
            message.send()
        except (OSError, ValueError) as exc:
            return connectors.Delivery(
                False,
                retryable=isinstance(exc, OSError),
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
        return connectors.Delivery(True)
    preference = notification.preference
    if preference is None or not preference.webhook_url_encrypted:
        return connectors.Delivery(False, error="the channel was removed")
    try:
        url = crypto.decrypt_secret(preference.webhook_url_encrypted)
    except crypto.SecretDecryptError as exc:
        return connectors.Delivery(False, error=str(exc))
    payload = messages.PAYLOADS[notification.channel](items, kind)
    delivery = connectors.post_json(url=url, payload=payload)
    if delivery.error:
        delivery = connectors.Delivery(
            delivery.succeeded,
            retryable=delivery.retryable,
            status_code=delivery.status_code,
            error=_redact(delivery.error, url),
        )
    return delivery


def notification_record(
    *, notification: Notification, delivery: connectors.Delivery, final: bool
) -> Notification:
    """Record one attempt: sent, or failed once no retry is left.

    The row is claimed with a conditional update on the status and attempt count it
    was read with, so of two workers racing on one notification only one records
    (and audits) the outcome; the other gets the row as it now stands.
    """
    attempts = notification.attempts + 1
    error = "" if delivery.succeeded else delivery.error[:500]
    if delivery.succeeded:
        status, sent_at = Notification.Status.SENT, timezone.now()
    else:
        status, sent_at = (
            (Notification.Status.FAILED if final else Notification.Status.QUEUED),
            None,
        )
    with transaction.atomic():
        claimed = Notification.objects.filter(
            pk=notification.pk,
            status=Notification.Status.QUEUED,
            attempts=notification.attempts,
        ).update(status=status, attempts=attempts, error=error, sent_at=sent_at)
        if claimed != 1:
            return Notification.objects.get(pk=notification.pk)
        notification.status, notification.attempts = status, attempts
        notification.error, notification.sent_at = error, sent_at
        if status != Notification.Status.QUEUED:
            audit_record(
                event=f"notification.{status}",
                target=notification,
                data={
                    "kind": notification.kind,
                    "channel": notification.channel,
                    "recipient": notification.recipient,
                    "decisions": notification.decision_ids[:50],
                    "attempts": attempts,
                    "error": error,
                },
            )
    return notification


def notifications_to_resend(*, now, limit: int = 500) -> list:
    """Queued notifications a broker outage may have dropped."""
    stale = now - timedelta(minutes=5)
    return list(
        Notification.objects.filter(status=Notification.Status.QUEUED, created_at__lte=stale)
        .filter(Q(created_at__gte=now - timedelta(days=1)))
        .values_list("pk", flat=True)[:limit]
    )


def recipients_for_user(user) -> list[NotificationPreference]:
    return list(NotificationPreference.objects.filter(user=user))
