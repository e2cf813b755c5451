import os
import socket
from importlib import import_module
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from rest_framework.test import APIClient

from agents.services import agent_key_issue
from tests.factories import (
    EMAIL_SCHEMA,
    PAYMENT_SCHEMA,
    SDR_POLICY,
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
)
from tests.oidc import provider, provider_keys, sso  # noqa: E402,F401 - fixtures for SSO tests

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _redis_reachable() -> bool:
    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url:
        return False
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=1):
            return True
    except OSError:
        return False


def _missing(item) -> str | None:
    if item.get_closest_marker("postgres") and (
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql"
    ):
        return "needs PostgreSQL: set DATABASE_URL"
    if item.get_closest_marker("redis") and not _redis_reachable():
        return "needs Redis: set CELERY_BROKER_URL to a running Redis"
    return None


# Tables whose append-only triggers refuse TRUNCATE, and those triggers.
APPEND_ONLY_TRUNCATE_TRIGGERS = {
    "audit_auditevent": "audit_event_no_truncate",
    "audit_auditcheckpoint": "audit_checkpoint_no_truncate",
    "audit_auditarchive": "audit_archive_no_truncate",
}


@receiver(connection_created)
def _flush_past_append_only_triggers(sender, connection, **kwargs):
    """Transactional tests empty the database with TRUNCATE, which the audit table's
    trigger refuses. The suite connects as the table's owner (a superuser), so its
    flush disables those triggers with ALTER TABLE inside the flush's transaction;
    an application role that owns no table cannot (see the README's roles)."""
    if connection.vendor != "postgresql" or getattr(connection.ops, "_flush_wrapped", False):
        return
    execute_sql_flush = connection.ops.execute_sql_flush

    def flush(sql_list):
        tables = [
            (table, trigger)
            for table, trigger in APPEND_ONLY_TRUNCATE_TRIGGERS.items()
            if any(table in sql for sql in sql_list)
        ]
        disable = [f'ALTER TABLE "{t}" DISABLE TRIGGER "{g}"' for t, g in tables]
        enable = [f'ALTER TABLE "{t}" ENABLE TRIGGER "{g}"' for t, g in tables]
        execute_sql_flush([*disable, *sql_list, *enable])

    connection.ops.execute_sql_flush = flush
    connection.ops._flush_wrapped = True


def pytest_runtest_setup(item):
    reason = _missing(item)
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and a required service is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _role_groups(request):
    """Put back the role groups after an earlier transactional test flushed them.

    A data migration creates the groups and a flush between transactional tests
    deletes them (serialized_rollback clashes with the content types a flush
    recreates), so replay that migration's function. pytest-django runs
    transactional tests last, so only they can find the groups gone.
    """
    marker = request.node.get_closest_marker("django_db")
    if marker is None or not marker.kwargs.get("transaction"):
        return
    request.getfixturevalue("transactional_db")
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from aispm_site import roles

    if Group.objects.filter(name=roles.REVIEWERS).exists():
        return
    state = MigrationExecutor(connection).loader.project_state(("approvals", "0002_roles"))
    import_module("approvals.migrations.0002_roles").create_roles(state.apps, None)


# The sdr-agent with an email and a payment action, its key and an API client.


@pytest.fixture
def email_action(db):
    return ActionTypeFactory(
        key="email.send",
        summary_template="Email to {to}: {subject}",
        params_schema=EMAIL_SCHEMA,
        irreversible=True,
    )


@pytest.fixture
def payment_action(db):
    return ActionTypeFactory(
        key="payment.transfer",
        summary_template="Pay {amount} to {to}",
        params_schema=PAYMENT_SCHEMA,
    )


@pytest.fixture
def agent(db, email_action, payment_action):
    agent = AgentFactory(slug="sdr-agent", owner=UserFactory(username="owner"))
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=1, policy=SDR_POLICY)
    agent.save()
    GrantFactory(
        agent=agent,
        action_type=email_action,
        limit_per_hour=1000,
        constraint="size(params.to) <= 50",
    )
    GrantFactory(agent=agent, action_type=payment_action)
    return agent


@pytest.fixture
def agent_key(agent):
    return agent_key_issue(agent=agent).secret


@pytest.fixture
def api(agent_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key}")
    return client


@pytest.fixture
def email_body():
    return {
        "action": "email.send",
        "params": {"to": ["lead@example.com"], "subject": "Pricing", "body": "Hi"},
        "reasoning": "The prospect asked for pricing.",
        "evidence": {"signal": "reply"},
        "confidence": 0.8,
    }
