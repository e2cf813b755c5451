"""Notifications to reviewers: preferences, fan-out after commit, sending, digests.

Nothing here runs on an agent's request path: the submission only registers an
on-commit hook that enqueues one task. Workers then work out who hears about the
decision, write one Notification row per recipient, and send each with retries.
"""

import logging
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents import crypto
from agents.models import RISK_RANK
from audit.services import audit_record

from .. import connectors
from ..models import Decision, Notification, NotificationPreference
from . import messages

log = logging.getLogger(__name__)
Channel = NotificationPreference.Channel
Mode = NotificationPreference.Mode
CHAT_CHANNELS = {Channel.SLACK, Channel.TEAMS, Channel.JSON}
REVIEW_PERMISSION = "approvals.review_decision"


class PreferenceRefused(Exception):
    pass


def _rank(risk: str) -> int:
    return RISK_RANK.get(risk, 2)


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


# --- who hears about what ----------------------------------------------------------


def _may_review(user, decision: Decision | None) -> bool:
    if not user.is_active or not user.has_perm(REVIEW_PERMISSION):
        return False
    return decision is None or decision.agent.owner_id != user.pk


def _user_targets(preference: NotificationPreference, decision: Decision | None) -> list:
    """(recipient label, address) pairs for one preference, people filtered by role."""
    if preference.channel in CHAT_CHANNELS:
        return [(preference.target_label, None)]
    if preference.user_id is not None:
        users = [preference.user]
    else:
        # People with their own email preference decide for themselves.
        own = NotificationPreference.objects.filter(
            channel=Channel.EMAIL, user__isnull=False
        ).values("user_id")
        users = list(preference.group.user_set.exclude(pk__in=own))
    return [
        (user.email, user.email) for user in users if user.email and _may_review(user, decision)
    ]


def _queue(*, preference, channel: str, kind: str, recipient: str, decision, ids) -> Notification:
    return Notification.objects.create(
        preference=preference,
        decision=decision,
        decision_ids=[str(i) for i in ids],
        kind=kind,
        channel=channel,
        recipient=recipient[:255],
    )


def notifications_for_decision(
    *, decision: Decision, kind: str = Notification.Kind.NEW, group_ids: list[int] | None = None
) -> list[Notification]:
    """Queue one Notification per immediate recipient of a pending decision.

    `group_ids` limits the audience to those groups (escalation); otherwise every
    immediate preference at or below the decision's risk hears about it. Canary
    decisions are notified like any other, so nothing gives them away.
    """
    if decision.status != Decision.Status.PENDING:
        return []
    preferences = NotificationPreference.objects.filter(mode=Mode.IMMEDIATE).select_related(
        "user", "group"
    )
    if group_ids is not None:
        preferences = preferences.filter(group_id__in=group_ids)
    queued = []
    with transaction.atomic():
        for preference in preferences:
            if _rank(preference.min_risk) > _rank(decision.risk) and kind == Notification.Kind.NEW:
                continue
            if preference.user_id is not None:
                from ..routing import delegate_for

                stand_in = delegate_for(preference.user, now=timezone.now())
                if stand_in is not None:
                    queued += notifications_for_users(
                        decision=decision, users=[stand_in], kind=kind
                    )
                    continue
                if not _may_review(preference.user, decision):
                    continue
            for label, _address in _user_targets(preference, decision):
                queued.append(
                    _queue(
                        preference=preference,
                        channel=preference.channel,
                        kind=kind,
                        recipient=label,
                        decision=decision,
                        ids=[decision.pk],
                    )
                )
        _enqueue_sends(queued)
    return queued


def notifications_for_users(*, decision: Decision, users, kind: str) -> list[Notification]:
    """Tell named people about a decision put in front of them (reassignment, escalation):
    through their own preferences unless off, else by email. Someone away is replaced
    by their delegate."""
    from ..routing import delegate_for

    now = timezone.now()
    queued, seen = [], set()
    with transaction.atomic():
        for user in users:
            person = delegate_for(user, now=now) or user
            if person.pk in seen or not _may_review(person, decision):
                continue
            seen.add(person.pk)
            preferences = [
                p for p in NotificationPreference.objects.filter(user=person) if p.mode != Mode.OFF
            ]
            if not preferences and person.email:
                queued.append(
                    _queue(
                        preference=None,
                        channel=Channel.EMAIL,
                        kind=kind,
                        recipient=person.email,
                        decision=decision,
                        ids=[decision.pk],
                    )
                )
            for preference in preferences:
                preference.user = person
                for label, _address in _user_targets(preference, decision):
                    queued.append(
                        _queue(
                            preference=preference,
                            channel=preference.channel,
                            kind=kind,
                            recipient=label,
                            decision=decision,
                            ids=[decision.pk],
                        )
                    )
        _enqueue_sends(queued)
    return queued


def notifications_for_group_members(*, decision: Decision, group, kind: str) -> list:
    """The group's own chat channels (unless off), then each member as a person."""
    queued = []
    with transaction.atomic():
        for preference in NotificationPreference.objects.filter(group=group).exclude(mode=Mode.OFF):
            if preference.channel in CHAT_CHANNELS:
                queued.append(
                    _queue(
                        preference=preference,
                        channel=preference.channel,
                        kind=kind,
                        recipient=preference.target_label,
                        decision=decision,
                        ids=[decision.pk],
                    )
                )
        _enqueue_sends(queued)
    return queued + notifications_for_users(
        decision=decision, users=list(group.user_set.all()), kind=kind
    )


def _enqueue_sends(queued: list[Notification]) -> None:
    if not queued:
        return
    ids = [str(n.pk) for n in queued]

    def send():
        from . import tasks

        for notification_id in ids:
            try:
                tasks.send_notification.delay(notification_id)
            except Exception:  # noqa: BLE001 - the notification stays queued; the sweep resends
                log.warning("could not enqueue notification %s", notification_id)

    transaction.on_commit(send)


def notify_new_decisions(*, now=None, limit: int = 500) -> int:
    """Beat's sweep: claim pending decisions nobody was told about yet, and fan out.

    This, not the submission, is where notifying starts, so an agent's request does
    no notification work at all: not even an enqueue. A decision waits at most one
    beat interval. Rows are claimed with SKIP LOCKED, so sweeps may overlap.
    """
    if not settings.AISPM_NOTIFICATIONS_ENABLED:
        return 0
    now = now or timezone.now()
    with transaction.atomic():
        claimed = list(
            Decision.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=Decision.Status.PENDING, notified_at__isnull=True)
            .order_by("created_at")
            .values_list("pk", flat=True)[:limit]
        )
        Decision.objects.filter(pk__in=claimed).update(notified_at=now)
    decisions = Decision.objects.filter(pk__in=claimed).select_related("agent", "action_type")
    for decision in decisions:
        notifications_for_decision(decision=decision)
    return len(claimed)


def digests_due(*, now) -> list[Notification]:
    """Queue a digest for each digest preference whose interval has passed."""
    queued = []
    preferences = NotificationPreference.objects.filter(mode=Mode.DIGEST).select_related(
        "user", "group"
    )
    for preference in preferences:
        since = preference.last_digest_at
        if since is not None and since + timedelta(minutes=preference.digest_minutes) > now:
            continue
        with transaction.atomic():
            locked = NotificationPreference.objects.select_for_update().get(pk=preference.pk)
            if locked.last_digest_at != since:
                continue
            pending = Decision.objects.filter(
                status=Decision.Status.PENDING,
                risk_rank__gte=_rank(preference.min_risk),
            )
            if since is not None:
                pending = pending.filter(created_at__gt=since)
            if preference.user_id is not None:
                pending = pending.exclude(agent__owner_id=preference.user_id)
            ids = list(
                pending.order_by("-risk_rank", "expires_at").values_list("pk", flat=True)[:50]
            )
            NotificationPreference.objects.filter(pk=preference.pk).update(last_digest_at=now)
            if not ids:
                continue
            if preference.user_id is not None and not _may_review(preference.user, None):
                continue
            batch = []
            for label, _address in _user_targets(preference, None):
                batch.append(
                    _queue(
                        preference=preference,
                        channel=preference.channel,
                        kind=Notification.Kind.DIGEST,
                        recipient=label,
                        decision=None,
                        ids=ids,
                    )
                )
            _enqueue_sends(batch)
            queued += batch
    return queued


# --- sending -----------------------------------------------------------------------


def _items(notification: Notification) -> list[messages.Item]:
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
    """Record one attempt: sent, or failed once no retry is left."""
    with transaction.atomic():
        notification = Notification.objects.select_for_update().get(pk=notification.pk)
        if notification.status != Notification.Status.QUEUED:
            return notification
        notification.attempts += 1
        if delivery.succeeded:
            notification.status = Notification.Status.SENT
            notification.sent_at = timezone.now()
            notification.error = ""
        elif final:
            notification.status = Notification.Status.FAILED
            notification.error = delivery.error[:500]
        else:
            notification.error = delivery.error[:500]
        notification.save(update_fields=["attempts", "status", "sent_at", "error"])
        if notification.status != Notification.Status.QUEUED:
            audit_record(
                event=f"notification.{notification.status}",
                target=notification,
                data={
                    "kind": notification.kind,
                    "channel": notification.channel,
                    "recipient": notification.recipient,
                    "decisions": notification.decision_ids[:50],
                    "attempts": notification.attempts,
                    "error": notification.error,
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
