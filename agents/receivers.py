"""Answers to other domains' signals."""

from django.dispatch import receiver

from audit.signals import chain_broken

from . import services


@receiver(chain_broken, dispatch_uid="agents.alert_on_broken_chain")
def alert_on_broken_chain(sender, *, report, **kwargs) -> None:
    """The daily verification found the audit chain broken: alert the admins."""
    services.alert_raise(
        severity="critical",
        kind="audit_chain_broken",
        subject=str(report.first_broken_id),
        message=f"The audit chain is broken at event {report.first_broken_id}: {report.problem}",
        evidence={"first_broken_id": report.first_broken_id, "problem": report.problem},
    )
