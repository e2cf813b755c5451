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
    from .checkpoints import evidence_verify  # the chain and its signed checkpoints

    report = evidence_verify()
    services.audit_verification_record(
        report=report, duration_ms=int((time.monotonic() - started) * 1000)
    )
    if not report.ok:
        chain_broken.send(sender=services.ChainReport, report=report)
    return report.ok


@shared_task(ignore_result=True)
def checkpoint_audit_chain() -> int | None:
    from . import checkpoints

    if checkpoints.signing_key() is None:
        return None
    checkpoint = checkpoints.checkpoint_create()
    return checkpoint.pk if checkpoint else None


@shared_task(ignore_result=True, soft_time_limit=240, time_limit=270)
def stream_audit_events() -> int:
    from . import siem

    return siem.siem_deliver_all()
