"""Beat jobs for reviewer capacity (issue 17); registered through approvals.tasks."""

from celery import shared_task
from django.utils import timezone


@shared_task(ignore_result=True)
def insert_canaries() -> int:
    from . import canaries

    return len(canaries.canaries_insert_due(now=timezone.now()))


@shared_task(ignore_result=True)
def escalate_decisions() -> int:
    from . import routing

    return routing.decisions_escalate_due(now=timezone.now())
