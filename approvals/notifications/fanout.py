"""Who hears about a pending decision, and the Notification rows that say so.

Beat's sweep fans out up to hundreds of decisions at a time. What does not depend on
the decision (the immediate preferences, who is away and who stands in for them, who
may review, a group's members) is worked out once per sweep in an Audience, and the
rows are written with one INSERT per sweep; only the owner check and the risk
threshold are per decision. Escalation, reassignment and digests use the same rules
through a fresh Audience.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.models import RISK_RANK

from ..models import Decision, Notification, NotificationPreference, ReviewerDelegation

log = logging.getLogger(__name__)
Channel = NotificationPreference.Channel
Mode = NotificationPreference.Mode
CHAT_CHANNELS = {Channel.SLACK, Channel.TEAMS, Channel.JSON}
REVIEW_PERMISSION = "approvals.review_decision"
INSERT_BATCH = 1000


def _rank(risk: str) -> int:
    return RISK_RANK.get(risk, 2)


class Audience:
    """The decision-independent part of "who hears", read at most once per instance."""

    def __init__(self, *, now: datetime | None = None):
        self.now = now or timezone.now()
        self._immediate = None
        self._delegates = None
        self._may: dict[int, bool] = {}
        self._preferences: dict[int, list] = {}
        self._members: dict[int, list] = {}

    def immediate(self, group_ids: list[int] | None = None) -> list[NotificationPreference]:
        if self._immediate is None:
            self._immediate = list(
                NotificationPreference.objects.filter(mode=Mode.IMMEDIATE).select_related(
                    "user", "group"
                )
            )
        if group_ids is None:
            return self._immediate
        return [p for p in self._immediate if p.group_id is not None and p.group_id in group_ids]

    def delegate_for(self, user):
        """The person standing in for `user` now, if any (as routing.delegate_for)."""
        if self._delegates is None:
            self._delegates = {}
            running = ReviewerDelegation.objects.filter(
                starts_at__lte=self.now, ends_at__gt=self.now, cancelled_at__isnull=True
            ).select_related("delegate")
            for delegation in running.order_by("-starts_at"):
                self._delegates.setdefault(delegation.user_id, delegation.delegate)
        return self._delegates.get(user.pk)

    def may_review(self, user, decision: Decision | None) -> bool:
        if user.pk not in self._may:
            self._may[user.pk] = user.is_active and user.has_perm(REVIEW_PERMISSION)
        return self._may[user.pk] and (decision is None or decision.agent.owner_id != user.pk)

    def preferences_of(self, person) -> list[NotificationPreference]:
        """A person's own preferences that are not off."""
        if person.pk not in self._preferences:
            preferences = [
                p for p in NotificationPreference.objects.filter(user=person) if p.mode != Mode.OFF
            ]
            for preference in preferences:
                preference.user = person
            self._preferences[person.pk] = preferences
        return self._preferences[person.pk]

    def members(self, preference: NotificationPreference) -> list:
        """A group preference's people: those with their own email preference decide
        for themselves."""
        if preference.group_id not in self._members:
            own = NotificationPreference.objects.filter(
                channel=Channel.EMAIL, user__isnull=False
            ).values("user_id")
            self._members[preference.group_id] = list(preference.group.user_set.exclude(pk__in=own))
        return self._members[preference.group_id]

    def recipients(self, preference: NotificationPreference, decision: Decision | None) -> list:
        """(label, person or None) for one preference, people filtered by role."""
        if preference.channel in CHAT_CHANNELS:
            return [(preference.target_label, preference.user)]
        users = [preference.user] if preference.user_id is not None else self.members(preference)
        return [
            (user.email, user) for user in users if user.email and self.may_review(user, decision)
        ]


def _row(
    *, preference, channel: str, kind: str, recipient: str, user, decision, ids
) -> Notification:
    return Notification(
        preference=preference,
        user=user,
        decision=decision,
        decision_ids=[str(i) for i in ids],
        kind=kind,
        channel=channel,
        recipient=recipient[:255],
    )


def _rows_for(preference, *, decision, kind, audience) -> list[Notification]:
    return [
        _row(
            preference=preference,
            channel=preference.channel,
            kind=kind,
            recipient=label,
            user=user,
            decision=decision,
            ids=[decision.pk],
        )
        for label, user in audience.recipients(preference, decision)
    ]


def decision_rows(
    *, decision: Decision, kind: str, audience: Audience, group_ids: list[int] | None = None
) -> list[Notification]:
    """Unsaved rows for the immediate recipients of one pending decision."""
    if decision.status != Decision.Status.PENDING:
        return []
    rows = []
    for preference in audience.immediate(group_ids):
        if _rank(preference.min_risk) > _rank(decision.risk) and kind == Notification.Kind.NEW:
            continue
        if preference.user_id is not None:
            stand_in = audience.delegate_for(preference.user)
            if stand_in is not None:
                rows += user_rows(decision=decision, users=[stand_in], kind=kind, audience=audience)
                continue
            if not audience.may_review(preference.user, decision):
                continue
        rows += _rows_for(preference, decision=decision, kind=kind, audience=audience)
    return rows


def user_rows(*, decision: Decision, users, kind: str, audience: Audience) -> list[Notification]:
    """Named people, through their own preferences unless off, else by email. Someone
    away is replaced by their delegate."""
    rows, seen = [], set()
    for user in users:
        person = audience.delegate_for(user) or user
        if person.pk in seen or not audience.may_review(person, decision):
            continue
        seen.add(person.pk)
        preferences = audience.preferences_of(person)
        if not preferences and person.email:
            rows.append(
                _row(
                    preference=None,
                    channel=Channel.EMAIL,
                    kind=kind,
                    recipient=person.email,
                    user=person,
                    decision=decision,
                    ids=[decision.pk],
                )
            )
        for preference in preferences:
            rows += _rows_for(preference, decision=decision, kind=kind, audience=audience)
    return rows


def _save(rows: list[Notification]) -> list[Notification]:
    if rows:
        with transaction.atomic():
            Notification.objects.bulk_create(rows, batch_size=INSERT_BATCH)
            _enqueue_sends(rows)
    return rows


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


def notifications_for_decision(
    *, decision: Decision, kind: str = Notification.Kind.NEW, group_ids: list[int] | None = None
) -> list[Notification]:
    """Queue one Notification per immediate recipient of a pending decision.

    `group_ids` limits the audience to those groups (escalation); otherwise every
    immediate preference at or below the decision's risk hears about it. Canary
    decisions are notified like any other, so nothing gives them away.
    """
    rows = decision_rows(decision=decision, kind=kind, audience=Audience(), group_ids=group_ids)
    return _save(rows)


def notifications_for_users(*, decision: Decision, users, kind: str) -> list[Notification]:
    """Tell named people about a decision put in front of them (reassignment, escalation)."""
    return _save(user_rows(decision=decision, users=users, kind=kind, audience=Audience()))


def notifications_for_group_members(*, decision: Decision, group, kind: str) -> list:
    """The group's own chat channels (unless off), then each member as a person."""
    rows = []
    for preference in NotificationPreference.objects.filter(group=group).exclude(mode=Mode.OFF):
        if preference.channel in CHAT_CHANNELS:
            rows.append(
                _row(
                    preference=preference,
                    channel=preference.channel,
                    kind=kind,
                    recipient=preference.target_label,
                    user=None,
                    decision=decision,
                    ids=[decision.pk],
                )
            )
    rows += user_rows(
        decision=decision, users=list(group.user_set.all()), kind=kind, audience=Audience()
    )
    return _save(rows)


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
    if not claimed:
        return 0
    audience = Audience()
    rows = []
    decisions = Decision.objects.filter(pk__in=claimed).select_related("agent", "action_type")
    for decision in decisions:
        rows += decision_rows(decision=decision, kind=Notification.Kind.NEW, audience=audience)
    _save(rows)
    return len(claimed)


def digests_due(*, now) -> list[Notification]:
    """Queue a digest for each digest preference whose interval has passed."""
    queued = []
    audience = Audience()
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
            if preference.user_id is not None and not audience.may_review(preference.user, None):
                continue
            batch = [
                _row(
                    preference=preference,
                    channel=preference.channel,
                    kind=Notification.Kind.DIGEST,
                    recipient=label,
                    user=user,
                    decision=None,
                    ids=ids,
                )
                for label, user in audience.recipients(preference, None)
            ]
            queued += _save(batch)
    return queued
