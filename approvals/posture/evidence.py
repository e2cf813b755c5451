"""What the posture checks and the report read about the audit trail's anchoring.

Signed checkpoints, the witness and the SIEM sink (issue 12) and single sign-on (issue
16) are being built on other branches. These selectors read their settings with
getattr and their models through the app registry, so the checks that use them light
up when they land; until then they answer "not configured" or "nothing recorded".
"""

from dataclasses import dataclass
from datetime import datetime

from django.apps import apps
from django.conf import settings

from audit.models import AuditVerification

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


def _first(obj, *names, default=None):
    for name in names:
        value = getattr(obj, name, None)
        if value not in (None, ""):
            return value
    return default


def latest_checkpoint(*, at: datetime | None = None) -> CheckpointInfo | None:
    """The newest signed checkpoint (at or before `at`), or None without the model."""
    try:
        model = apps.get_model("audit", "Checkpoint")
    except LookupError:
        return None
    field = next((f for f in ("created_at", "signed_at", "at") if _has_field(model, f)), None)
    if field is None:
        return None
    rows = model.objects.all()
    if at is not None:
        rows = rows.filter(**{f"{field}__lte": at})
    row = rows.order_by(f"-{field}").first()
    if row is None:
        return None
    return CheckpointInfo(
        created_at=getattr(row, field),
        seq=_first(row, "head_seq", "seq"),
        head_hash=str(_first(row, "head_hash", "hash", default="")),
        fingerprint=str(_first(row, "key_fingerprint", "public_key_fingerprint", default="")),
    )


def _has_field(model, name: str) -> bool:
    return any(field.name == name for field in model._meta.get_fields())


def sink_lags(*, now: datetime) -> list[tuple[str, float]]:
    """(sink, seconds behind the chain head) for the witness and SIEM sinks.

    Empty until issue 12 records sink deliveries."""
    return []


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
