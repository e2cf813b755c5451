"""Compromise prevention: login throttling, deploy checks, admin roles, and keys kept secret."""

import base64
import io
import json
import logging
import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from axes.models import AccessAttempt
from django.apps import apps
from django.contrib import admin
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import Resolver404, resolve
from rest_framework.test import APIClient

from agents import keys
from agents.models import ActionType, Agent, AgentKey, BehaviourVersion, Grant
from agents.services import agent_key_issue
from aispm_site.logging import ContextFilter, JSONFormatter
from approvals.models import Decision, Review
from approvals.services import decision_approve
from audit.models import AuditEvent
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    agent_admin,
    auditor,
    reviewer,
)

pytestmark = pytest.mark.django_db

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOGIN = "/accounts/login/"
PASSWORD = "correct horse battery staple"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# Login throttling (django-axes)


@pytest.fixture(autouse=True)
def _axes_on(settings):
    # Pinned here so these tests keep meaning something if test settings ever turn axes off.
    settings.AXES_ENABLED = True


@pytest.fixture
def alice():
    return UserFactory(username="alice", is_staff=True)


def log_in(client, username="alice", password=PASSWORD, url=LOGIN, **extra):
    return client.post(url, {"username": username, "password": password}, **extra)


def fail(client, times, username="alice", **extra):
    return [log_in(client, username, "wrong password", **extra) for _ in range(times)]


def test_four_failed_logins_do_not_lock_the_account(client, alice):
    responses = fail(client, 4)

    assert [r.status_code for r in responses] == [200] * 4
    assert log_in(client).status_code == 302


def test_the_fifth_failed_login_locks_the_account_with_a_clear_message(client, alice):
    responses = fail(client, 5)

    assert [r.status_code for r in responses] == [200, 200, 200, 200, 429]
    html = responses[-1].content.decode()
    assert "Too many failed logins" in html
    assert "locked after 5 failed attempts" in html
    assert "Try again in\n      15 minutes" in html
    assert 'role="alert"' in html
    assert AccessAttempt.objects.get(username="alice").failures_since_start == 5


def test_the_correct_password_fails_while_locked_out(client, alice):
    fail(client, 5)

    response = log_in(client)

    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session
    assert client.get("/")["Location"].startswith(LOGIN)


def test_the_admin_login_is_locked_too(client, alice):
    fail(client, 5)

    response = log_in(client, url="/admin/login/?next=/admin/")

    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_lockout_lifts_after_fifteen_minutes(client, alice):
    with time_machine.travel(START, tick=False) as traveller:
        fail(client, 5)

        traveller.shift(timedelta(minutes=14, seconds=59))
        assert log_in(client).status_code == 429

        # Attempts during the lockout did not extend it.
        traveller.shift(timedelta(seconds=2))
        response = log_in(client)

        assert response.status_code == 302
        assert client.session["_auth_user_id"] == str(alice.pk)


def test_the_lockout_is_per_username_and_address(client, alice):
    UserFactory(username="bob")
    fail(client, 5)

    assert log_in(Client(), REMOTE_ADDR="10.1.2.3").status_code == 302
    assert log_in(Client(), username="bob").status_code == 302
    assert log_in(Client()).status_code == 429


def test_a_successful_login_resets_the_count(client, alice):
    fail(client, 4)
    assert log_in(client).status_code == 302
    client.logout()

    responses = fail(client, 4)

    assert [r.status_code for r in responses] == [200] * 4
    assert log_in(client).status_code == 302


def test_failed_passwords_are_not_stored(client, alice):
    log_in(client, password="hunter2-never-stored")

    attempt = AccessAttempt.objects.get(username="alice")
    assert "hunter2-never-stored" not in attempt.post_data
    assert "password=****" in attempt.post_data


def test_force_login_still_works_with_axes(client, alice):
    client.force_login(alice)

    assert client.get("/").status_code == 200


# Production settings and `check --deploy`

# Variables the test process may carry (test settings turn SSL redirects off, CI sets a
# database) that must not leak into the production-like child process.
CONTROLLED = {
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    # The browser tests set this for Playwright; a deployment never would.
    "DJANGO_ALLOW_ASYNC_UNSAFE",
}


def run_production(*args, **env_vars):
    env = {
        k: v for k, v in os.environ.items() if k not in CONTROLLED and not k.startswith("SECURE_")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="aispm_site.settings",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="aispm.example.com",
        CSRF_TRUSTED_ORIGINS="https://aispm.example.com",
        # A deployment signs audit checkpoints (check --deploy warns without a key).
        AISPM_AUDIT_SIGNING_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        **env_vars,
    )
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("preload", [None, "true"])
def test_check_deploy_is_clean_under_production_settings(preload):
    extra = {"SECURE_HSTS_PRELOAD": preload} if preload else {}

    result = run_production("manage.py", "check", "--deploy", "--fail-level", "WARNING", **extra)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_production_settings_secure_cookies_hsts_and_https():
    script = (
        "import json, django; from django.conf import settings; django.setup(); "
        "print(json.dumps({name: getattr(settings, name) for name in ["
        "'DEBUG', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', "
        "'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_SSL_REDIRECT', "
        "'SECURE_CONTENT_TYPE_NOSNIFF', 'X_FRAME_OPTIONS', 'AUTHENTICATION_BACKENDS', "
        "'MIDDLEWARE', 'AXES_FAILURE_LIMIT', 'AXES_LOCKOUT_PARAMETERS', 'AXES_RESET_ON_SUCCESS']},"
        " default=str))"
    )

    result = run_production("-c", script)

    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert values["AUTHENTICATION_BACKENDS"][0] == "axes.backends.AxesStandaloneBackend"
    assert values["MIDDLEWARE"][0] == "aispm_site.middleware.RequestContextMiddleware"
    assert values["MIDDLEWARE"][-1] == "axes.middleware.AxesMiddleware"
    assert values["AXES_FAILURE_LIMIT"] == 5
    assert values["AXES_LOCKOUT_PARAMETERS"] == [["username", "ip_address"]]
    assert values["AXES_RESET_ON_SUCCESS"] is True


# Admin actions require the right group

DOMAIN_MODELS = [ActionType, Agent, AgentKey, Grant, BehaviourVersion, Decision, Review, AuditEvent]
# Models the admin may write to: people and groups are managed there, and deleting
# an axes access attempt is how an administrator lifts a lockout early.
ADMIN_WRITABLE = {
    "auth.user",
    "auth.group",
    "axes.accessattempt",
    "axes.accesslog",
    "axes.accessfailurelog",
}


def changelist(model):
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/"


@pytest.mark.parametrize("model", DOMAIN_MODELS, ids=lambda m: m.__name__)
def test_staff_without_a_role_cannot_open_domain_changelists(client, model):
    client.force_login(UserFactory(is_staff=True))

    assert client.get(changelist(model)).status_code == 403


def test_staff_without_a_role_sees_no_domain_models_in_the_admin(client):
    client.force_login(UserFactory(is_staff=True))

    response = client.get("/admin/")

    assert response.status_code == 200
    assert response.context["app_list"] == []


@pytest.mark.parametrize(
    ("model", "status"),
    [(Agent, 200), (ActionType, 200), (AgentKey, 403), (Grant, 403), (BehaviourVersion, 403)],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_staff_reviewers_see_only_what_their_role_grants(client, model, status):
    client.force_login(reviewer(is_staff=True))

    assert client.get(changelist(model)).status_code == status


@pytest.mark.parametrize("model", DOMAIN_MODELS, ids=lambda m: m.__name__)
def test_auditors_on_staff_cannot_open_add_pages(client, model):
    client.force_login(auditor(is_staff=True))

    assert client.get(f"{changelist(model)}add/").status_code == 403


def test_no_admin_writes_anything_but_the_intended_models_even_for_a_superuser(rf):
    request = rf.get("/admin/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    registered = {
        model._meta.label_lower: model_admin for model, model_admin in admin.site._registry.items()
    }

    assert {m._meta.label_lower for m in DOMAIN_MODELS} <= set(registered)
    for label, model_admin in registered.items():
        if label in ADMIN_WRITABLE:
            continue
        assert not model_admin.has_add_permission(request), label
        assert not model_admin.has_change_permission(request), label
        assert not model_admin.has_delete_permission(request), label
        assert "delete_selected" not in model_admin.get_actions(request), label
        for inline_class in model_admin.inlines:
            inline = inline_class(model_admin.model, admin.site)
            assert not inline.has_add_permission(request, None), (label, inline_class)
            assert not inline.has_change_permission(request), (label, inline_class)
            assert not inline.has_delete_permission(request), (label, inline_class)
    for label in ADMIN_WRITABLE - {"auth.user", "auth.group"}:
        assert not registered[label].has_add_permission(request), label


# An issued key appears nowhere but in its issue output


def _text(value) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def database_texts():
    for model in apps.get_models(include_auto_created=True):
        names = [field.attname for field in model._meta.concrete_fields]
        for row in model._base_manager.values_list(*names):
            for name, value in zip(names, row, strict=True):
                if value is not None:
                    yield f"{model._meta.label}.{name}", _text(value)


def body(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return f"{headers}\n\n{content.decode('utf-8', 'replace')}"


def url_exists(url: str) -> bool:
    try:
        resolve(url.split("?")[0])
    except Resolver404:
        return False
    return True


@pytest.fixture
def raw_logs(monkeypatch):
    """Every record, formatted without redaction, so that a leak is seen rather than masked."""
    monkeypatch.setattr("aispm_site.logging.redact", lambda text: text)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(ContextFilter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def test_an_issued_key_appears_nowhere_but_in_its_issue_output(client, caplog, raw_logs):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True  # log every SQL statement with its parameters
    admin_user = agent_admin(username="keeper")
    action_type = ActionTypeFactory(key="thing.do")
    agent = AgentFactory(slug="leak-agent", owner=admin_user)
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=1)
    agent.save()
    GrantFactory(agent=agent, action_type=action_type)
    try:
        issued = agent_key_issue(agent=agent, issued_by=admin_user, label="ci")
        secret = issued.secret
        command_out = io.StringIO()
        call_command("issue_agent_key", "leak-agent", stdout=command_out, stderr=io.StringIO())
        command_secret = command_out.getvalue().strip()
        assert keys.is_well_formed(secret) and keys.is_well_formed(command_secret)

        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        submission = {"action": "thing.do", "params": {"what": "x"}, "reasoning": "Because."}
        responses = []

        created = api.post("/api/v1/decisions/", submission, format="json")
        assert created.status_code == 201, created.content
        decision_id = created.json()["id"]
        responses.append(created)
        other = api.post(
            "/api/v1/decisions/", dict(submission, params={"what": "y"}), format="json"
        )
        responses.append(other)
        responses.append(api.post(f"/api/v1/decisions/{other.json()['id']}/cancel/"))
        responses.append(api.get("/api/v1/decisions/"))
        responses.append(api.get(f"/api/v1/decisions/{decision_id}/"))
        responses.append(api.get("/api/v1/behaviour/"))
        decision_approve(
            decision=Decision.objects.get(pk=decision_id), reviewer=reviewer(), comment="Fine"
        )
        responses.append(api.get("/api/v1/feedback/"))
        assert [r.status_code for r in responses] == [201, 201, 200, 200, 200, 200, 200]

        tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        for header in [
            f"Bearer {keys.generate_key()}",
            f"Bearer {tampered}",
            f"Token {secret}",
            f"Bearer {secret} trailing",
        ]:
            failed = APIClient().get("/api/v1/decisions/", HTTP_AUTHORIZATION=header)
            assert failed.status_code == 401
            responses.append(failed)

        client.force_login(admin_user)
        responses.append(client.get("/agents/leak-agent/"))
        feedback_url = "/agents/leak-agent/feedback.jsonl"
        if url_exists(feedback_url):
            feedback = client.get(feedback_url)
            assert feedback.status_code == 200
            responses.append(feedback)
            assert decision_id in body(feedback)
        client.force_login(auditor())
        for export_url in ["/audit/export.csv", "/audit/export.jsonl"]:
            if url_exists(export_url):
                export = client.get(export_url)
                assert export.status_code == 200
                responses.append(export)
                assert decision_id in body(export)
    finally:
        connection.force_debug_cursor = False

    needles = {
        "key": secret,
        "key's random part": secret.split("_")[1],
        "command key": command_secret,
        "command key's random part": command_secret.split("_")[1],
    }
    record_dumps = [repr(record.__dict__) for record in caplog.records]
    assert any("SELECT" in dump for dump in record_dumps)  # the SQL really was logged
    for what, needle in needles.items():
        assert needle not in caplog.text, f"{what} in the captured logs"
        assert not [dump for dump in record_dumps if needle in dump], f"{what} in a log record"
        assert needle not in raw_logs.getvalue(), f"{what} in the JSON logs"
        for response in responses:
            assert needle not in body(response), f"{what} in {response.request['PATH_INFO']}"
        for where, text in database_texts():
            assert needle not in text, f"{what} in {where}"
