"""What the posture checks and the report read about the audit trail's anchoring
(signed checkpoints, SIEM sinks, verification) and about sign-in.

Single sign-on settings are read with getattr, so the access checks answer "not
configured" where SSO is not set up."""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from audit import siem
from audit.models import AuditCheckpoint, AuditVerification

DEFAULT_CHECKPOINT_SECONDS = 3600


@dataclass(frozen=True)
class CheckpointInfo:
    created_at: datetime
    seq: int | None
    head_hash: str
    fingerprint: str


def signing_configured() -> bool:
    return bool(getattr(settings, "AISPM_AUDIT_SIGNING_KEY", ""))


def checkpoint_interval_seconds() -> int:
    return int(getattr(settings, "AISPM_AUDIT_CHECKPOINT_SECONDS", DEFAULT_CHECKPOINT_SECONDS))


def retention_days() -> int | None:
    """None while nothing deletes audit events: they are kept for ever."""
    value = getattr(settings, "AISPM_AUDIT_RETENTION_DAYS", None)
    return int(value) if value not in (None, "", 0) else None


def latest_checkpoint(*, at: datetime | None = None) -> CheckpointInfo | None:
    """The newest signed checkpoint (at or before `at`), or None."""
    rows = AuditCheckpoint.objects.all()
    if at is not None:
        rows = rows.filter(created_at__lte=at)
    row = rows.order_by("-last_seq").first()
    if row is None:
        return None
    return CheckpointInfo(
        created_at=row.created_at,
        seq=row.last_seq,
        head_hash=row.head_hash,
        fingerprint=row.key_fingerprint,
    )


def sink_lags(*, now: datetime) -> list[tuple[str, float]]:
    """(sink, seconds behind) for each SIEM sink with sealed events it has not received:
    the time since it last accepted a batch (or since the epoch if it never did)."""
    lags = []
    for row in siem.sink_lag():
        if not row["lag"]:
            continue
        since = row["delivered_at"] or datetime.fromtimestamp(0, tz=UTC)
        lags.append((row["sink"], (now - since).total_seconds()))
    return lags


def last_good_verification() -> AuditVerification | None:
    return AuditVerification.objects.filter(ok=True).order_by("-ran_at").first()


def last_verification(*, at: datetime | None = None) -> AuditVerification | None:
    rows = AuditVerification.objects.all()
    if at is not None:
        rows = rows.filter(ran_at__lte=at)
    return rows.order_by("-ran_at").first()


def sso_configured() -> bool:
    return bool(getattr(settings, "OIDC_ISSUER", ""))


def local_passwords_enabled() -> bool:
    return bool(getattr(settings, "AISPM_LOCAL_LOGIN", True))
