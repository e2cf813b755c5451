"""A Celery worker keeps its database connection from one task to the next."""

from types import SimpleNamespace

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from aispm_site import celery as aispm_celery
from aispm_site.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


def worker_task():
    return SimpleNamespace(request=SimpleNamespace(is_eager=False))


def test_the_worker_fixup_keeps_the_connection_between_tasks():
    fixup = DjangoWorkerFixup(app)
    connection.ensure_connection()
    before = connection.connection

    for _ in range(5):
        fixup.on_task_prerun(sender=worker_task())
        aispm_celery.close_unusable_connections(sender=worker_task())
        connection.ensure_connection()
        fixup.on_task_postrun(sender=worker_task())

    assert connection.connection is before


@pytest.mark.postgres  # SQLite's in-memory test database never closes
def test_a_connection_past_its_max_age_is_closed_before_the_next_task():
    connection.ensure_connection()
    connection.close_at = 0  # as if DATABASE_CONN_MAX_AGE had run out

    aispm_celery.close_unusable_connections(sender=worker_task())

    assert connection.connection is None


def test_an_eager_task_never_closes_the_callers_connection():
    connection.ensure_connection()
    connection.close_at = 0

    aispm_celery.close_unusable_connections(
        sender=SimpleNamespace(request=SimpleNamespace(is_eager=True))
    )

    assert connection.connection is not None
