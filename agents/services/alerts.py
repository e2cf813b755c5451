import logging

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record

from ..models import Agent, Alert
from ._common import _user_or_none

log = logging.getLogger(__name__)


def alert_raise(
    *,
    severity: str,
    kind: str,
    message: str,
    agent: Agent | None = None,
    subject: str = "",
    evidence: dict | None = None,
) -> Alert:
    """Raise an alert for agent admins. Runs inside the caller's transaction."""
    with transaction.atomic():
        alert = Alert.objects.create(
            severity=severity,
            kind=kind,
            agent=agent,
            message=message,
            subject=subject,
            evidence=evidence or {},
        )
        audit_record(
            event="alert.raised",
            target=alert,
            data={"severity": severity, "kind": kind, "message": message, "subject": subject},
        )
        if severity in (Alert.Severity.HIGH, Alert.Severity.CRITICAL):
            transaction.on_commit(lambda: _email_admins(alert))
    return alert


def _email_admins(alert: Alert) -> None:
    """Tell agent admins about a high-severity alert; a mail failure is only logged."""
    from django.contrib.auth import get_user_model

    recipients = list(
        get_user_model()
        .objects.filter(groups__name="Agent admins", is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
        .distinct()
    )
    if not recipients:
        return
    subject = f"[aispm] {alert.get_severity_display()} alert: {alert.kind}"
    body = (
        f"{alert.message}\n\nAgent: {alert.agent.slug if alert.agent else '-'}\n"
        f"Raised: {alert.created_at:%Y-%m-%d %H:%M} UTC\n"
    )
    try:
        send_mail(subject.replace("\n", " ")[:200], body, None, recipients)
    except Exception:  # noqa: BLE001 - alerting must not fail the change that raised it
        log.exception("could not email alert %s", alert.pk)


def alert_acknowledge(*, alert: Alert, actor, comment: str = "") -> Alert:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.acknowledged_at is not None:
            return alert
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = _user_or_none(actor)
        alert.acknowledgement = comment
        alert.save(update_fields=["acknowledged_at", "acknowledged_by", "acknowledgement"])
        audit_record(
            event="alert.acknowledged", actor=actor, target=alert, data={"comment": comment}
        )
    return alert
