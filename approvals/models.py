import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from agents.models import ActionType, Agent, AgentKey, Outcome, Risk


class CurrentTransactionId(models.Func):
    """The inserting transaction's id on PostgreSQL, 0 elsewhere (see feedback_for_agent)."""

    output_field = models.BigIntegerField()

    def as_sql(self, compiler, connection, **extra_context):
        return "0", []

    def as_postgresql(self, compiler, connection, **extra_context):
        return "(pg_current_xact_id()::text::bigint)", []


class Decision(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending review"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied by policy"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"
        RELEASING = "releasing", "Releasing"
        RELEASED = "released", "Released"
        FAILED = "failed", "Failed"
        BLOCKED = "blocked", "Blocked"

    class Approval(models.TextChoices):
        AUTO = "auto", "Automatic (policy allow)"
        HUMAN = "human", "Human reviewers"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="decisions")
    action_type = models.ForeignKey(ActionType, on_delete=models.PROTECT, related_name="decisions")
    key = models.ForeignKey(
        AgentKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    approval = models.CharField(max_length=10, choices=Approval.choices, blank=True)

    summary = models.TextField(blank=True)
    params = models.JSONField(default=dict)
    approved_params = models.JSONField(null=True, blank=True)
    reasoning = models.TextField()
    evidence = models.JSONField(default=dict, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # NULL, not "", so that the per-agent unique constraint skips absent keys.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_hash = models.CharField(max_length=64, blank=True)
    external_ref = models.CharField(max_length=255, blank=True)

    policy_outcome = models.CharField(max_length=10, choices=Outcome.choices)
    policy_rule = models.CharField(max_length=200, blank=True)
    policy_explanation = models.TextField(blank=True)
    risk = models.CharField(max_length=10, choices=Risk.choices, default=Risk.MEDIUM)
    risk_rank = models.GeneratedField(
        expression=Case(
            When(risk=Risk.CRITICAL, then=Value(4)),
            When(risk=Risk.HIGH, then=Value(3)),
            When(risk=Risk.MEDIUM, then=Value(2)),
            default=Value(1),
        ),
        output_field=models.SmallIntegerField(),
        db_persist=True,
    )
    bulk_allowed = models.BooleanField(default=False)
    # Anomaly signals that fired on this decision: [{"rule": ..., "message": ...}].
    anomalies = models.JSONField(default=list, blank=True)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    behaviour_version = models.PositiveIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    status_reason = models.TextField(blank=True)

    release_attempts = models.PositiveIntegerField(default=0)
    # While releasing, the time until which one worker owns the release. A worker
    # that dies leaves the lease to run out, and the sweeper hands the decision on.
    release_lease_until = models.DateTimeField(null=True, blank=True)
    release_result = models.JSONField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="decision_unique_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | Q(confidence__gte=0, confidence__lte=1),
                name="decision_confidence_0_1",
            ),
            models.CheckConstraint(
                condition=Q(required_approvals__gte=1), name="decision_approvals_positive"
            ),
        ]
        indexes = [
            models.Index(
                fields=["-risk_rank", "expires_at", "id"],
                condition=Q(status="pending"),
                name="decision_inbox",
            ),
            models.Index(fields=["agent", "-created_at"], name="decision_agent_recent"),
            models.Index(fields=["status", "created_at"], name="decision_status_created"),
            # Index-only answers for the inbox counter and an agent's review record,
            # which otherwise read every pending (or every one of the agent's) rows.
            models.Index(
                fields=["created_at"],
                include=["id"],
                condition=Q(status="pending"),
                name="decision_pending_created",
            ),
            models.Index(
                fields=["agent", "status", "approval"],
                include=["id"],
                name="decision_agent_outcome",
            ),
            # Newest-first keyset pages for auditors and the CSV export's chunks.
            models.Index(fields=["-created_at", "-id"], name="decision_recent"),
        ]
        permissions = [("review_decision", "Can approve, reject and edit decisions")]

    def __str__(self):
        return f"{self.action_type.key} {self.id} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == self.Status.PENDING


class Review(models.Model):
    class Verdict(models.TextChoices):
        APPROVE = "approve", "Approved"
        EDIT_APPROVE = "edit_approve", "Edited and approved"
        REJECT = "reject", "Rejected"

    decision = models.ForeignKey(Decision, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews"
    )
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    comment = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    params_before = models.JSONField(null=True, blank=True)
    params_after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Feedback is read in (txid, id) order: see approvals.selectors.feedback_for_agent.
    txid = models.BigIntegerField(db_default=CurrentTransactionId(), editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["txid", "id"], name="review_feedback_order")]
        constraints = [
            # One review per person per decision: N approvals need N distinct people.
            models.UniqueConstraint(
                fields=["decision", "reviewer"], name="review_one_per_reviewer"
            ),
            models.CheckConstraint(
                condition=~Q(verdict="reject") | ~Q(comment=""),
                name="review_reject_needs_reason",
            ),
        ]

    def __str__(self):
        return f"{self.verdict} by {self.reviewer} on {self.decision_id}"


class ReleaseAttempt(models.Model):
    """One try at carrying out an approved decision through its connector."""

    decision = models.ForeignKey(Decision, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    connector = models.CharField(max_length=20)
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    succeeded = models.BooleanField()
    retryable = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["decision", "number"]
        constraints = [
            models.UniqueConstraint(fields=["decision", "number"], name="attempt_unique_number"),
        ]

    def __str__(self):
        return f"{self.decision_id} attempt {self.number}"


class Finding(models.Model):
    """A weakness in the governance configuration that a posture check found.

    A check opens a finding for each subject it flags and resolves it once the subject
    passes again; see approvals.posture. At most one finding per check and subject is open.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    class Severity(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"
        CRITICAL = "critical", "Critical"

    class Question(models.TextChoices):
        PREVENT = "prevent", "How do you prevent bad decisions?"
        AUDIT = "audit", "How do you audit actions?"
        COMPROMISE = "compromise", "How do you prevent compromise?"
        UPDATE = "update", "How do you update behaviour?"

    check_id = models.CharField(max_length=100)
    subject = models.CharField(max_length=200)
    question = models.CharField(max_length=12, choices=Question.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    title = models.CharField(max_length=300)
    message = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    fix_url = models.CharField(max_length=500, blank=True)
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="findings"
    )
    opened_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["check_id", "subject"],
                condition=Q(status="open"),
                name="finding_one_open_per_subject",
            ),
        ]
        indexes = [models.Index(fields=["status", "opened_at"], name="finding_status_opened")]

    def __str__(self):
        return f"[{self.severity}] {self.check_id} {self.subject} ({self.status})"


from .passkey_models import Passkey, ReviewSignature  # noqa: E402,F401 - registered with this app
