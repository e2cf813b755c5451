import time

from celery import shared_task

from . import services
from .signals import chain_broken


@shared_task(ignore_result=True)
def seal_audit_events() -> int:
    return services.audit_seal_all()


# Named as it was in approvals.tasks: beat schedules and queued messages use the name.
@shared_task(name="approvals.tasks.verify_audit_chain", ignore_result=True)
def verify_audit_chain() -> bool:
    """Daily: seal, verify the whole chain, record the run, and say if it is broken."""
    services.audit_seal_all()
    started = time.monotonic()
    report = services.chain_verify()
    services.audit_verification_record(
        report=report, duration_ms=int((time.monotonic() - started) * 1000)
    )
    if not report.ok:
        chain_broken.send(sender=services.ChainReport, report=report)
    return report.ok
