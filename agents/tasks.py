from celery import shared_task


# Named as it was in approvals.tasks: beat schedules and queued messages use the name.
@shared_task(name="approvals.tasks.check_key_ages", ignore_result=True)
def check_key_ages() -> int:
    from . import services

    return len(services.key_age_alerts())
