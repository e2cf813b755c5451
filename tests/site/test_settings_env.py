"""The settings module reads the environment and fails loudly on a bad value.

Each case imports the real settings in a fresh interpreter, since settings are
read once per process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONTROLLED = ["DATABASE_URL", "CELERY_BROKER_URL", "DEBUG", "SECRET_KEY"]
SECRET = "a-test-secret-key-that-is-long-enough-for-the-check-0123456789"

REPORT = """
import json
import django
from django.conf import settings
django.setup()
print(json.dumps({
    "debug": settings.DEBUG,
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "eager": settings.CELERY_TASK_ALWAYS_EAGER,
    "broker": settings.CELERY_BROKER_URL,
}))
"""


def run_django(script="import django; django.setup()", **env_vars):
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env["DJANGO_SETTINGS_MODULE"] = "aispm_site.settings"
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_with(**env_vars):
    result = run_django(REPORT, **env_vars)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_fails_naming(result, variable):
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr.strip().splitlines()[-1]


def test_it_refuses_to_start_without_secret_key_when_debug_is_off():
    assert_fails_naming(run_django(), "SECRET_KEY")


def test_it_refuses_a_blank_secret_key_when_debug_is_off():
    assert_fails_naming(run_django(SECRET_KEY="   "), "SECRET_KEY")


@pytest.mark.parametrize("url", ["mysql://x/y", "garbage", "sqlite:///db.sqlite3"])
def test_it_refuses_a_database_url_that_is_not_postgresql(url):
    assert_fails_naming(run_django(SECRET_KEY=SECRET, DATABASE_URL=url), "DATABASE_URL")


@pytest.mark.parametrize("url", ["http://x", "redis://", "redis://host:port/0"])
def test_it_refuses_a_broker_url_that_is_not_redis(url):
    assert_fails_naming(run_django(SECRET_KEY=SECRET, CELERY_BROKER_URL=url), "CELERY_BROKER_URL")


def test_it_refuses_a_debug_value_that_is_not_a_boolean():
    assert_fails_naming(run_django(SECRET_KEY=SECRET, DEBUG="maybe"), "DEBUG")


def test_with_only_a_secret_key_it_uses_sqlite_and_eager_tasks():
    values = settings_with(SECRET_KEY=SECRET)

    assert values["debug"] is False
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["eager"] is True


def test_debug_on_needs_no_secret_key():
    values = settings_with(DEBUG="true")

    assert values["debug"] is True


def test_a_postgres_database_url_selects_postgresql():
    values = settings_with(
        SECRET_KEY=SECRET, DATABASE_URL="postgres://postgres@127.0.0.1:5432/aispm"
    )

    assert values["engine"] == "django.db.backends.postgresql"
    assert values["db_name"] == "aispm"


def test_a_redis_broker_url_turns_eager_tasks_off():
    values = settings_with(SECRET_KEY=SECRET, CELERY_BROKER_URL="redis://127.0.0.1:6379/0")

    assert values["eager"] is False
    assert values["broker"] == "redis://127.0.0.1:6379/0"


ROUTES = """
import json
import django
from django.conf import settings
django.setup()
from aispm_site.celery import app
from approvals import tasks
print(json.dumps({
    name: app.amqp.router.route({}, name)["queue"].name
    for name in (tasks.release_decision.name, tasks.notify_agent.name, tasks.sweep_releases.name)
}))
"""


def test_releases_and_callbacks_go_to_the_release_queue_when_one_is_set():
    default = run_django(ROUTES, SECRET_KEY=SECRET)
    assert default.returncode == 0, default.stderr
    assert set(json.loads(default.stdout.strip().splitlines()[-1]).values()) == {"celery"}
    routed = run_django(ROUTES, SECRET_KEY=SECRET, AISPM_RELEASE_QUEUE="release")
    assert routed.returncode == 0, routed.stderr
    assert json.loads(routed.stdout.strip().splitlines()[-1]) == {
        "approvals.tasks.release_decision": "release",
        "approvals.tasks.notify_agent": "release",
        "approvals.tasks.sweep_releases": "celery",
    }


@pytest.mark.parametrize(
    "name",
    # NUL and lone surrogates cannot be put in an environment variable at all.
    ["a b", "-q", "x" * 65, "x" * 100_000, "rel\nease", "=cmd", "\u202erelease", "rel\u200bease"],
)
def test_it_refuses_a_release_queue_that_is_not_a_queue_name(name):
    assert_fails_naming(
        run_django(SECRET_KEY=SECRET, AISPM_RELEASE_QUEUE=name), "AISPM_RELEASE_QUEUE"
    )


@pytest.mark.parametrize(
    "value", ["maybe", "NaN", "2" * 30, "\u202etrue", "tr\u200bue", "1e999", "[" * 10_000]
)
def test_it_refuses_a_prepared_statements_value_that_is_not_a_boolean(value):
    assert_fails_naming(
        run_django(SECRET_KEY=SECRET, DATABASE_PREPARED_STATEMENTS=value),
        "DATABASE_PREPARED_STATEMENTS",
    )


@pytest.mark.parametrize(("value", "prepared"), [("false", False), ("true", True), (None, True)])
def test_prepared_statements_are_on_unless_turned_off(value, prepared):
    env = {"SECRET_KEY": SECRET}
    if value is not None:
        env["DATABASE_PREPARED_STATEMENTS"] = value
    script = (
        "import django; from django.conf import settings; django.setup(); "
        "print(settings.AISPM_DB_PREPARED_STATEMENTS)"
    )
    result = run_django(script, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(prepared)
