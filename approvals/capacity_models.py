"""The reviewer-capacity models: notification preferences and deliveries, attention
measurements, canary templates, reassignment, snoozes, out-of-office delegation and
standing approvals. Registered with the approvals app through approvals.models."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from agents.models import ActionType, Agent, Risk

from .models import Decision, Review


class NotificationPreference(models.Model):
    """How one user, or one group, hears about decisions waiting for review.

    A chat webhook URL is a credential (it lets anyone post), so it is stored only
    encrypted; `target_label` is the host, safe to show and log.
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SLACK = "slack", "Slack (incoming webhook)"
        TEAMS = "teams", "Microsoft Teams (incoming webhook)"
        JSON = "json", "Generic JSON webhook"

    class Mode(models.TextChoices):
        IMMEDIATE = "immediate", "On each new decision"
        DIGEST = "digest", "As a digest"
        OFF = "off", "Off"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notification_preferences",
    )
    group = models.ForeignKey(
        "auth.Group",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notification_preferences",
    )
    channel = models.CharField(max_length=10, choices=Channel.choices)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.IMMEDIATE)
    min_risk = models.CharField(max_length=10, choices=Risk.choices, default=Risk.HIGH)
    digest_minutes = models.PositiveSmallIntegerField(default=60)
    webhook_url_encrypted = models.TextField(blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    last_digest_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["channel", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=True, group__isnull=False)
                | Q(user__isnull=False, group__isnull=True),
                name="notificationpref_user_xor_group",
            ),
            models.CheckConstraint(
                condition=Q(digest_minutes__gte=5, digest_minutes__lte=1440),
                name="notificationpref_digest_5_1440",
            ),
            models.UniqueConstraint(
                fields=["user", "channel"],
                condition=Q(user__isnull=False),
                name="notificationpref_one_per_user_channel",
            ),
            models.UniqueConstraint(
                fields=["group", "channel"],
                condition=Q(group__isnull=False),
                name="notificationpref_one_per_group_channel",
            ),
        ]

    def __str__(self):
        owner = self.user or self.group
        return f"{owner}: {self.channel} {self.mode}"


class Notification(models.Model):
    """One message to one recipient, and what became of it. Never holds a secret."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    class Kind(models.TextChoices):
        NEW = "new", "New decision"
        DIGEST = "digest", "Digest"
        ESCALATED = "escalated", "Escalated"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    preference = models.ForeignKey(
        NotificationPreference, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision = models.ForeignKey(
        Decision, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    decision_ids = models.JSONField(default=list, blank=True)
    # The person the message is for, when it is for a person (not a group's channel):
    # the send checks they may still review.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.NEW)
    channel = models.CharField(max_length=10, choices=NotificationPreference.Channel.choices)
    recipient = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"], name="notification_status")]

    def __str__(self):
        return f"{self.kind} {self.channel} to {self.recipient} ({self.status})"


class ReviewAttention(models.Model):
    """What was measured while a reviewer looked at a decision they approved (a signal
    only), and the way they approved it. One per approving review, whatever the path."""

    class Via(models.TextChoices):
        INBOX = "inbox", "Inbox"
        PASSKEY = "passkey", "Inbox, signed with a passkey"
        EDIT = "edit", "Edit and approve"
        BULK = "bulk", "Bulk approval"
        CHAT = "chat", "Chat link"

    review = models.OneToOneField(Review, on_delete=models.CASCADE, related_name="attention")
    via = models.CharField(max_length=16, choices=Via.choices, default=Via.INBOX)
    seconds_on_screen = models.FloatField(null=True, blank=True)
    params_expanded = models.BooleanField(null=True, blank=True)
    params_long = models.BooleanField(default=False)

    def __str__(self):
        return f"attention for review {self.review_id}"


class CanaryTemplate(models.Model):
    """A synthetic decision an agent admin defines, one that should clearly be rejected.

    Canary decisions are marked only by `Decision.canary`; nothing on screen shows it.
    """

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="canary_templates")
    action_type = models.ForeignKey(ActionType, on_delete=models.CASCADE, related_name="+")
    params = models.JSONField(default=dict)
    reasoning = models.TextField()
    evidence = models.JSONField(default=dict, blank=True)
    # The chance, per beat run, that one canary is inserted for this template.
    rate_percent = models.PositiveSmallIntegerField(default=5)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["agent", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(rate_percent__gte=1, rate_percent__lte=100),
                name="canarytemplate_rate_1_100",
            ),
        ]

    def __str__(self):
        return f"canary for {self.agent_id}: {self.action_type_id}"


class DecisionAssignment(models.Model):
    """A person or group a pending decision was put in front of: by escalation, or by a
    reviewer who reassigned it. Assignment adds people; it never takes rights away."""

    class Kind(models.TextChoices):
        ESCALATED = "escalated", "Escalated"
        REASSIGNED = "reassigned", "Reassigned"

    decision = models.ForeignKey(Decision, on_delete=models.CASCADE, related_name="assignments")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    note = models.TextField(blank=True)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=True, group__isnull=False)
                | Q(user__isnull=False, group__isnull=True),
                name="assignment_user_xor_group",
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.decision_id} to {self.user or self.group}"


class DecisionSnooze(models.Model):
    """A reviewer put a decision out of their own queue until a time (never past expiry)."""

    decision = models.ForeignKey(Decision, on_delete=models.CASCADE, related_name="snoozes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    until = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["decision", "user"], name="snooze_one_per_user"),
        ]

    def __str__(self):
        return f"{self.decision_id} snoozed by {self.user_id} until {self.until}"


class ReviewerDelegation(models.Model):
    """Out of office: while it runs, what would reach `user` reaches `delegate` too."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="delegations"
    )
    delegate = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="delegated_to_me"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="delegation_ends_after_start"
            ),
            models.CheckConstraint(
                condition=~Q(user=models.F("delegate")), name="delegation_not_to_self"
            ),
        ]

    def __str__(self):
        return f"{self.user_id} -> {self.delegate_id} from {self.starts_at:%Y-%m-%d}"


class StandingApproval(models.Model):
    """A reviewer's time-boxed, narrowed "allow similar": the same agent and action, a
    CEL condition over params, at most `max_count` uses, ending within 7 days."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="standing_approvals")
    action_type = models.ForeignKey(ActionType, on_delete=models.CASCADE, related_name="+")
    condition = models.TextField()
    max_count = models.PositiveIntegerField()
    used_count = models.PositiveIntegerField(default=0)
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    from_decision = models.ForeignKey(
        Decision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("grant_standing_approval", "Can approve and allow similar decisions for a while"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(used_count__lte=models.F("max_count")), name="standing_within_count"
            ),
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="standing_ends_after_start"
            ),
            models.CheckConstraint(condition=Q(max_count__gte=1), name="standing_count_positive"),
        ]
        indexes = [
            models.Index(
                fields=["agent", "action_type", "ends_at"],
                condition=Q(revoked_at__isnull=True),
                name="standing_active",
            ),
        ]

    def __str__(self):
        return f"standing {self.agent_id}/{self.action_type_id}: {self.condition}"

    def is_active_at(self, now) -> bool:
        return (
            self.revoked_at is None
            and self.starts_at <= now < self.ends_at
            and self.used_count < self.max_count
        )
