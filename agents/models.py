import uuid

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Outcome(models.TextChoices):
    ALLOW = "allow", "Allow"
    REVIEW = "review", "Review"
    DENY = "deny", "Deny"


class Risk(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


RISK_RANK = {Risk.LOW: 1, Risk.MEDIUM: 2, Risk.HIGH: 3, Risk.CRITICAL: 4}


class ActionType(models.Model):
    class Connector(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        EMAIL = "email", "Email"
        NONE = "none", "None (agent acts itself)"

    key = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    summary_template = models.CharField(max_length=500, blank=True)
    params_schema = models.JSONField(default=dict, blank=True)
    irreversible = models.BooleanField(default=False)
    risk = models.CharField(max_length=10, choices=Risk.choices, blank=True)
    default_outcome = models.CharField(
        max_length=10, choices=Outcome.choices, default=Outcome.REVIEW
    )
    connector_type = models.CharField(
        max_length=10, choices=Connector.choices, default=Connector.NONE
    )
    connector_config = models.JSONField(default=dict, blank=True)
    anomaly_rules = models.JSONField(default=list, blank=True)
    # Fernet token of an inline or generated connector secret; never clear text.
    connector_secret_encrypted = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(irreversible=True, default_outcome="allow"),
                name="actiontype_irreversible_never_default_allow",
            ),
        ]

    def __str__(self):
        return self.key

    @property
    def effective_risk(self) -> str:
        if self.risk:
            return self.risk
        return Risk.HIGH if self.irreversible else Risk.MEDIUM


class Agent(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    owner = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_agents",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    suspended_reason = models.TextField(blank=True)
    callback_url = models.URLField(max_length=500, blank=True)
    # Fernet token of the Standard Webhooks secret that signs status callbacks.
    callback_secret_encrypted = models.TextField(blank=True)
    active_behaviour = models.ForeignKey(
        "BehaviourVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    behaviour_activated_at = models.DateTimeField(null=True, blank=True)
    # Bumped whenever the agent's grants or a granted action type change, so that
    # per-process scope caches can tell, from the key lookup alone, that they are stale.
    scope_version = models.PositiveIntegerField(default=1)
    anomaly_rules = models.JSONField(default=list, blank=True)
    # Set by a force_review anomaly: until then nothing of this agent is auto-allowed.
    force_review_until = models.DateTimeField(null=True, blank=True)
    force_review_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]
        permissions = [("manage_agents", "Can manage agents, scopes, keys and behaviour")]

    def __str__(self):
        return self.slug

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class AgentKey(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "active"
        ROTATING = "rotating", "rotating"  # rotated: still valid until revoked_at
        EXPIRED = "expired", "expired"
        REVOKED = "revoked", "revoked"

        @property
        def usable(self) -> bool:
            return self in (AgentKey.State.ACTIVE, AgentKey.State.ROTATING)

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="keys")
    # The first characters of the key, safe to show, so admins can tell keys apart.
    prefix = models.CharField(max_length=20)
    key_hash = models.CharField(max_length=64, unique=True)
    label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.prefix}… ({self.agent.slug})"

    def state_at(self, now) -> "AgentKey.State":
        if self.revoked_at is not None and self.revoked_at <= now:
            return self.State.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return self.State.EXPIRED
        if self.revoked_at is not None:
            return self.State.ROTATING
        return self.State.ACTIVE

    def is_usable(self, at=None) -> bool:
        return self.state_at(at or timezone.now()).usable


class Grant(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="grants")
    action_type = models.ForeignKey(ActionType, on_delete=models.PROTECT, related_name="grants")
    constraint = models.TextField(blank=True)
    limit_per_hour = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["agent__slug", "action_type__key"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "action_type"], name="grant_unique_scope"),
        ]

    def __str__(self):
        return f"{self.agent.slug} → {self.action_type.key}"


class BehaviourVersion(models.Model):
    """An immutable snapshot of an agent's instructions, settings and policy."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="behaviour_versions")
    number = models.PositiveIntegerField()
    instructions = models.TextField(blank=True)
    settings = models.JSONField(default=dict, blank=True)
    policy = models.JSONField(default=list, blank=True)
    content_hash = models.CharField(max_length=64)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["agent", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="behaviour_unique_number"),
            models.CheckConstraint(condition=Q(number__gte=1), name="behaviour_number_positive"),
        ]

    def __str__(self):
        return f"{self.agent.slug} v{self.number}"


class Alert(models.Model):
    """Something an agent admin should look at: a failed release, an anomaly, a key."""

    class Severity(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"
        CRITICAL = "critical", "Critical"

    severity = models.CharField(max_length=10, choices=Severity.choices)
    kind = models.CharField(max_length=100)
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    message = models.TextField()
    evidence = models.JSONField(default=dict, blank=True)
    # What the alert is about, e.g. a decision id, so repeats can be recognised.
    subject = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    acknowledgement = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"[{self.severity}] {self.kind}: {self.message[:60]}"


class GlobalStop(models.Model):
    """The global kill switch: while a row is engaged, nothing is released."""

    engaged = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    changed_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "global stop"

    def __str__(self):
        return "engaged" if self.engaged else "lifted"


class SeenDestination(models.Model):
    """A destination (email domain or URL host) a reviewer has approved for an agent."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="destinations")
    value = models.CharField(max_length=255)
    first_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "value"], name="destination_unique"),
        ]

    def __str__(self):
        return f"{self.agent.slug} → {self.value}"


class SeenAddress(models.Model):
    """An IP address an agent's keys have been used from."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="addresses")
    ip = models.GenericIPAddressField()
    first_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "ip"], name="address_unique")]

    def __str__(self):
        return f"{self.agent.slug} from {self.ip}"
