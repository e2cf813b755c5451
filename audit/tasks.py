from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def seal_audit_events() -> int:
    sealed = 0
    while batch := services.audit_seal():
        sealed += batch
    return sealed
