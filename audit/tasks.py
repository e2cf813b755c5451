from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def seal_audit_events() -> int:
    sealed = 0
    while batch := services.audit_seal():
        sealed += batch
    return sealed


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


# Verifying a large chain takes minutes, not the default 30 seconds.
@shared_task(ignore_result=True, acks_late=True, soft_time_limit=240, time_limit=270)
def verify_audit_evidence() -> int:
    from . import checkpoints

    return checkpoints.evidence_verify_and_record().pk
