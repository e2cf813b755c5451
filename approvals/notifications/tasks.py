"""Celery tasks for notifications; registered through approvals.tasks."""

import random

from celery import shared_task
from django.conf import settings
from django.utils import timezone

MAX_ATTEMPTS = 5


def _backoff(attempt: int) -> int:
    ceiling = settings.AISPM_RELEASE_BACKOFF_SECONDS * 2 ** max(attempt - 1, 0)
    return max(1, int(random.uniform(ceiling / 2, ceiling)))


@shared_task(ignore_result=True)
def notify_new_decisions() -> int:
    from . import services

    return services.notify_new_decisions()


@shared_task(bind=True, ignore_result=True, acks_late=True, max_retries=MAX_ATTEMPTS - 1)
def send_notification(self, notification_id: str) -> str:
    from . import services

    notification = services.notification_for_sending(notification_id)
    if notification is None:
        return "skipped"
    retries = self.request.retries
    while True:
        delivery = services.notification_deliver(notification=notification)
        final = delivery.succeeded or not delivery.retryable or retries >= self.max_retries
        notification = services.notification_record(
            notification=notification, delivery=delivery, final=final
        )
        if final:
            return notification.status
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            raise self.retry(countdown=_backoff(retries + 1))
        # In-process mode retries at once: a request must not sleep, nor see a Retry.
        # The retry reads the row and its decision again, as a new task would.
        retries += 1
        notification = services.notification_for_sending(notification_id)
        if notification is None:
            return "skipped"


@shared_task(ignore_result=True)
def send_notification_digests() -> int:
    from . import services

    return len(services.digests_due(now=timezone.now()))


@shared_task(ignore_result=True)
def resend_queued_notifications() -> int:
    from . import services

    ids = services.notifications_to_resend(now=timezone.now())
    for notification_id in ids:
        send_notification.delay(str(notification_id))
    return len(ids)
