"""Run Celery tasks in-process for tests that follow one through, also when the suite
runs with CELERY_BROKER_URL set (then the app would publish to Redis instead)."""

import pytest

from aispm_site.celery import app


@pytest.fixture(autouse=True)
def eager_tasks(settings):
    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    settings.CELERY_TASK_ALWAYS_EAGER = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved
