"""Database connections persist across requests, for as long as DATABASE_CONN_MAX_AGE says."""

from tests.site.test_settings_env import SECRET, assert_fails_naming, run_django

REPORT = """
import django
from django.conf import settings
django.setup()
print(settings.DATABASES["default"]["CONN_MAX_AGE"])
"""
URL = "postgres://postgres@127.0.0.1:5432/aispm"


def conn_max_age(**env_vars) -> int:
    result = run_django(REPORT, SECRET_KEY=SECRET, DATABASE_URL=URL, **env_vars)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


def test_postgresql_connections_persist_for_ten_minutes_by_default():
    assert conn_max_age() == 600


def test_database_conn_max_age_sets_how_long():
    assert conn_max_age(DATABASE_CONN_MAX_AGE="0") == 0
    assert conn_max_age(DATABASE_CONN_MAX_AGE="60") == 60


def test_a_database_conn_max_age_that_is_not_a_whole_number_is_refused():
    result = run_django(SECRET_KEY=SECRET, DATABASE_URL=URL, DATABASE_CONN_MAX_AGE="forever")
    assert_fails_naming(result, "DATABASE_CONN_MAX_AGE")
