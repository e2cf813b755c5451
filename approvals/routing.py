"""Who a pending decision is in front of (issue 17): escalation, reassignment, snooze
and out-of-office delegation.

None of these changes who may review. Any reviewer may still act on any pending
decision, with the same checks (the agent's owner never reviews; N approvals need N
distinct people). They add people to the decision and decide who gets notified, and a
snooze only hides a decision from the snoozer's own queue.
"""

from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import audit_record

from .models import Decision, DecisionAssignment, DecisionSnooze, Notification, ReviewerDelegation

REVIEW_PERMISSION = "approvals.review_decision"


class RoutingRefused(Exception):
    pass


def _reviewer_ok(user, decision: Decision | None = None) -> str | None:
    """Why `user` cannot be put in front of a decision, or None."""
    if not user.is_active or not user.has_perm(REVIEW_PERMISSION):
        return f"{user.get_username()} is not a reviewer."
    if decision is not None and decision.agent.owner_id == user.pk:
        return f"{user.get_username()} owns this agent, so cannot review its decisions."
    return None


def delegate_for(user, *, now: datetime):
    """The person standing in for `user` now, if any."""
    delegation = (
        ReviewerDelegation.objects.filter(
            user=user, starts_at__lte=now, ends_at__gt=now, cancelled_at__isnull=True
        )
        .select_related("delegate")
        .first()
    )
    return delegation.delegate if delegation else None


# --- escalation ------------------------------------------------------------------------


def decision_escalate(
    *, decision: Decision, now: datetime | None = None
) -> DecisionAssignment | None:
    """Add the rule's escalation group to a still-pending decision, once, and notify it."""
    now = now or timezone.now()
    group = Group.objects.filter(name=decision.escalate_to).first()
    with transaction.atomic():
        claimed = Decision.objects.filter(
            pk=decision.pk,
            status=Decision.Status.PENDING,
            escalated_at__isnull=True,
            escalate_at__lte=now,
        ).update(escalated_at=now, updated_at=now)
        if claimed != 1:
            return None
        decision.refresh_from_db()
        assignment = None
        if group is not None:
            assignment = DecisionAssignment.objects.create(
                decision=decision,
                kind=DecisionAssignment.Kind.ESCALATED,
                group=group,
                created_at=now,
            )
        audit_record(
            event="decision.escalated",
            target=decision,
            data={
                "group": decision.escalate_to,
                "group_exists": group is not None,
                "pending_since": decision.created_at.isoformat(),
            },
        )
        if group is not None:
            from .notifications.services import notifications_for_group_members

            notifications_for_group_members(
                decision=decision, group=group, kind=Notification.Kind.ESCALATED
            )
    return assignment


def decisions_escalate_due(*, now: datetime | None = None, limit: int = 500) -> int:
    now = now or timezone.now()
    due = Decision.objects.filter(
        status=Decision.Status.PENDING, escalated_at__isnull=True, escalate_at__lte=now
    ).select_related("agent", "action_type")[:limit]
    return sum(decision_escalate(decision=d, now=now) is not None or 0 for d in due)


# --- reassignment ----------------------------------------------------------------------


def decision_reassign(
    *, decision: Decision, by, note: str, user=None, group: Group | None = None
) -> DecisionAssignment:
    """Put a pending decision in front of a named reviewer or a group, with a note.

    The target gets no new rights: it must already be a reviewer (or a group), and an
    agent's owner cannot be made its reviewer. A person who is away is replaced by
    their delegate.
    """
    if (user is None) == (group is None):
        raise RoutingRefused("Choose one reviewer or one group.")
    if problem := _reviewer_ok(by, decision):
        raise RoutingRefused(problem)
    now = timezone.now()
    if user is not None:
        user = delegate_for(user, now=now) or user
        if problem := _reviewer_ok(user, decision):
            raise RoutingRefused(problem)
        if user.pk == by.pk:
            raise RoutingRefused("Reassign to someone else.")
    with transaction.atomic():
        locked = Decision.objects.select_for_update().get(pk=decision.pk)
        if locked.status != Decision.Status.PENDING:
            raise RoutingRefused(f"The decision is {locked.status}.")
        assignment = DecisionAssignment.objects.create(
            decision=locked,
            kind=DecisionAssignment.Kind.REASSIGNED,
            user=user,
            group=group,
            note=note,
            by=by,
            created_at=now,
        )
        audit_record(
            event="decision.reassigned",
            actor=by,
            target=locked,
            data={
                "to_user": user.get_username() if user else None,
                "to_group": group.name if group else None,
                "note": note,
            },
        )
        from .notifications.services import notifications_for_group_members, notifications_for_users

        if user is not None:
            notifications_for_users(decision=locked, users=[user], kind=Notification.Kind.NEW)
        else:
            notifications_for_group_members(
                decision=locked, group=group, kind=Notification.Kind.NEW
            )
    return assignment


# --- snooze ---------------------------------------------------------------------------


def decision_snooze(*, decision: Decision, user, until: datetime) -> DecisionSnooze:
    """Hide a pending decision from `user`'s own queue until `until`, never past expiry."""
    now = timezone.now()
    if problem := _reviewer_ok(user):
        raise RoutingRefused(problem)
    if until <= now:
        raise RoutingRefused("Snooze until a time in the future.")
    if decision.expires_at is not None and until >= decision.expires_at:
        raise RoutingRefused(
            "A decision cannot be snoozed past its expiry "
            f"({decision.expires_at:%Y-%m-%d %H:%M} UTC)."
        )
    with transaction.atomic():
        if not Decision.objects.filter(pk=decision.pk, status=Decision.Status.PENDING).exists():
            raise RoutingRefused("Only pending decisions can be snoozed.")
        snooze, _created = DecisionSnooze.objects.update_or_create(
            decision=decision, user=user, defaults={"until": until, "created_at": now}
        )
        audit_record(
            event="decision.snoozed",
            actor=user,
            target=decision,
            data={"until": until.isoformat()},
        )
    return snooze


def decision_unsnooze(*, decision: Decision, user) -> DecisionSnooze:
    """Put a decision `user` snoozed back in their own queue now. Only the snoozer's own
    running snooze can be undone; an ended one has nothing left to undo."""
    now = timezone.now()
    with transaction.atomic():
        snooze = (
            DecisionSnooze.objects.select_for_update()
            .filter(decision=decision, user=user, until__gt=now)
            .first()
        )
        if snooze is None:
            raise RoutingRefused("You have not snoozed this decision.")
        snooze.delete()
        audit_record(
            event="decision.unsnoozed",
            actor=user,
            target=decision,
            data={"until": snooze.until.isoformat()},
        )
    return snooze


def snoozes_running(*, user, now: datetime):
    """`user`'s snoozes that still hide a pending decision, the soonest to end first."""
    return (
        DecisionSnooze.objects.filter(
            user=user, until__gt=now, decision__status=Decision.Status.PENDING
        )
        .select_related("decision", "decision__agent", "decision__action_type")
        .order_by("until", "pk")
    )


def snoozed_for(user, *, now: datetime) -> Q:
    """A filter on Decision for what `user` has snoozed now."""
    return Q(snoozes__user=user, snoozes__until__gt=now)


# --- out of office ----------------------------------------------------------------------


def delegation_create(
    *, user, delegate, starts_at: datetime, ends_at: datetime
) -> ReviewerDelegation:
    if delegate.pk == user.pk:
        raise RoutingRefused("Name someone else as your delegate.")
    if problem := _reviewer_ok(delegate):
        raise RoutingRefused(problem)
    if ends_at <= starts_at:
        raise RoutingRefused("The end must be after the start.")
    if ends_at <= timezone.now():
        raise RoutingRefused("The range has already ended.")
    # A chain (A to B while B is away to A) would send nothing anywhere useful.
    if delegate_for(delegate, now=max(starts_at, timezone.now())) is not None:
        raise RoutingRefused(f"{delegate.get_username()} is away then too.")
    with transaction.atomic():
        delegation = ReviewerDelegation.objects.create(
            user=user, delegate=delegate, starts_at=starts_at, ends_at=ends_at
        )
        audit_record(
            event="reviewer.delegated",
            actor=user,
            target=delegation,
            data={
                "delegate": delegate.get_username(),
                "starts_at": starts_at.isoformat(),
                "ends_at": ends_at.isoformat(),
            },
        )
    return delegation


def delegation_cancel(*, delegation: ReviewerDelegation, user) -> ReviewerDelegation:
    with transaction.atomic():
        updated = ReviewerDelegation.objects.filter(
            pk=delegation.pk, user=user, cancelled_at__isnull=True
        ).update(cancelled_at=timezone.now())
        if updated != 1:
            raise RoutingRefused("No such delegation.")
        delegation.refresh_from_db()
        audit_record(event="reviewer.delegation_cancelled", actor=user, target=delegation)
    return delegation


def reviewers_to_choose() -> list:
    """Active reviewers, for reassignment and delegation forms."""
    users = get_user_model().objects.filter(is_active=True).order_by("username")
    return [u for u in users if u.has_perm(REVIEW_PERMISSION)][:500]
