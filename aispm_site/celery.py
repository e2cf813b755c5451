import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aispm_site.settings")

app = Celery("aispm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def close_unusable_connections(sender=None, **kwargs) -> None:
    """Before each task on a worker, close a database connection that broke or outlived
    DATABASE_CONN_MAX_AGE, as Django does at each request (see CELERY_DB_REUSE_MAX)."""
    if sender is not None and not getattr(sender.request, "is_eager", False):
        from django.db import close_old_connections

        close_old_connections()
