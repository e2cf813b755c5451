import io
import json
import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from agents import keys as agent_keys
from agents.models import Agent, AgentKey, Alert, GlobalStop, Grant
from agents.services import agent_key_issue, agent_key_revoke, alert_raise
from approvals.models import Decision
from audit.models import AuditEvent
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    DecisionFactory,
    UserFactory,
    agent_admin,
    auditor,
    reviewer,
)

pytestmark = pytest.mark.django_db

KEY_PATTERN = re.compile(r"aispm_[0-9A-Za-z]{32}_[0-9A-Za-z]{6}")
SLUG = "sdr-agent"
BASE = f"/security/agents/{SLUG}"


@pytest.fixture
def admin(client):
    user = agent_admin(username="ada")
    client.force_login(user)
    return user


@pytest.fixture
def root():
    return UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def crm_action(db):
    return ActionTypeFactory(key="crm.update", summary_template="Set {field}", params_schema={})


@pytest.fixture
def issued(agent):
    return agent_key_issue(agent=agent, label="worker")


@pytest.fixture
def an_alert(agent):
    return alert_raise(severity="medium", kind="rate_spike", agent=agent, message="Odd burst")


def api_for(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def behaviour_status(secret: str) -> int:
    return api_for(secret).get("/api/v1/behaviour/").status_code


def events(name: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event=name))


def shown_key(response) -> str:
    found = KEY_PATTERN.findall(response.content.decode())
    assert len(set(found)) == 1, found
    return found[0]


def row_html(html: str, attribute: str) -> str:
    match = re.search(rf"<tr {attribute}.*?</tr>", html, re.S)
    assert match, attribute
    return match.group(0)


def assert_no_inline_code(html: str):
    assert "<style" not in html
    assert not re.search(r"<[^>]+\sstyle=", html)
    assert not re.search(r"<[^>]+\son[a-z]+=", html)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)


# --- who may do what -----------------------------------------------------------------

ADMIN_URLS = [
    ("get", f"{BASE}/keys/"),
    ("post", f"{BASE}/keys/issue/"),
    ("get", f"{BASE}/keys/{{key}}/rotate/"),
    ("post", f"{BASE}/keys/{{key}}/rotate/"),
    ("get", f"{BASE}/keys/{{key}}/revoke/"),
    ("post", f"{BASE}/keys/{{key}}/revoke/"),
    ("get", f"{BASE}/scopes/"),
    ("post", f"{BASE}/scopes/grant/"),
    ("get", f"{BASE}/scopes/email.send/edit/"),
    ("post", f"{BASE}/scopes/email.send/edit/"),
    ("get", f"{BASE}/scopes/email.send/remove/"),
    ("post", f"{BASE}/scopes/email.send/remove/"),
    ("get", "/security/alerts/"),
    ("post", "/security/alerts/{alert}/acknowledge/"),
    ("get", f"{BASE}/suspend/"),
    ("post", f"{BASE}/suspend/"),
    ("post", f"{BASE}/resume/"),
]
STOP_URLS = [("get", "/security/global-stop/"), ("post", "/security/global-stop/")]
EVERYTHING = {
    "reason": "because",
    "comment": "seen",
    "overlap_hours": "1",
    "expires_in_days": "30",
    "action_type": "crm.update",
    "limit_per_hour": "1",
    "action": "engage",
}


def _url(template, issued, an_alert):
    return template.format(key=issued.key.pk, alert=an_alert.pk)


def _state():
    return (
        AgentKey.objects.count(),
        AgentKey.objects.filter(revoked_at__isnull=False).count(),
        Grant.objects.count(),
        Alert.objects.filter(acknowledged_at__isnull=False).count(),
        Agent.objects.filter(status=Agent.Status.SUSPENDED).count(),
        GlobalStop.objects.filter(engaged=True).count(),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize("make_user", [reviewer, auditor])
@pytest.mark.parametrize(("method", "url"), ADMIN_URLS + STOP_URLS)
def test_reviewers_and_auditors_are_forbidden(
    client, issued, an_alert, crm_action, make_user, method, url
):
    client.force_login(make_user())
    before = _state()
    response = getattr(client, method)(_url(url, issued, an_alert), EVERYTHING)
    assert response.status_code == 403
    assert _state() == before


@pytest.mark.parametrize(("method", "url"), ADMIN_URLS + STOP_URLS)
def test_anonymous_users_are_sent_to_login(client, issued, an_alert, method, url):
    before = _state()
    response = getattr(client, method)(_url(url, issued, an_alert), EVERYTHING)
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")
    assert _state() == before


@pytest.mark.parametrize(("method", "url"), STOP_URLS)
def test_agent_admins_who_are_not_superusers_cannot_touch_the_global_stop(
    client, admin, method, url
):
    response = getattr(client, method)(url, {"action": "engage", "reason": "panic"})
    assert response.status_code == 403
    assert not GlobalStop.objects.filter(engaged=True).exists()
    assert not events("global_stop.engaged")


@pytest.mark.parametrize(("method", "url"), [u for u in ADMIN_URLS if u[0] == "get"])
def test_agent_admins_and_superusers_open_every_agent_screen(
    client, issued, an_alert, root, method, url
):
    for user in (agent_admin(), root):
        client.force_login(user)
        response = client.get(_url(url, issued, an_alert))
        assert response.status_code == 200
        assert_no_inline_code(response.content.decode())


def test_wrong_methods_get_405(client, admin, issued, an_alert):
    key = issued.key.pk
    assert client.post(f"{BASE}/keys/").status_code == 405
    assert client.get(f"{BASE}/keys/issue/").status_code == 405
    assert client.get(f"{BASE}/scopes/grant/").status_code == 405
    assert client.post(f"{BASE}/scopes/").status_code == 405
    assert client.get(f"{BASE}/resume/").status_code == 405
    assert client.post("/security/alerts/").status_code == 405
    assert client.get(f"/security/alerts/{an_alert.pk}/acknowledge/").status_code == 405
    assert client.delete(f"{BASE}/keys/{key}/revoke/").status_code == 405
    assert client.put(f"{BASE}/suspend/").status_code == 405
    assert client.delete("/security/global-stop/").status_code == 405


def test_unknown_things_get_404(client, admin, issued, email_action, crm_action):
    other = agent_key_issue(agent=AgentFactory(slug="other"))
    assert client.get("/security/agents/nobody/keys/").status_code == 404
    assert client.get("/security/agents/nobody/scopes/").status_code == 404
    assert client.get("/security/agents/nobody/suspend/").status_code == 404
    assert client.post("/security/agents/nobody/resume/").status_code == 404
    assert client.post("/security/agents/nobody/keys/issue/").status_code == 404
    assert client.get(f"{BASE}/keys/999999/rotate/").status_code == 404
    # Another agent's key is not reachable through this agent's URLs.
    assert client.get(f"{BASE}/keys/{other.key.pk}/revoke/").status_code == 404
    response = client.post(f"{BASE}/keys/{other.key.pk}/revoke/", {"reason": "x"})
    assert response.status_code == 404
    assert behaviour_status(other.secret) != 401
    assert client.get(f"{BASE}/scopes/no.such/edit/").status_code == 404
    assert client.get(f"{BASE}/scopes/crm.update/edit/").status_code == 404  # not granted
    assert client.post(f"{BASE}/scopes/crm.update/remove/").status_code == 404
    assert client.post("/security/alerts/999999/acknowledge/", {"comment": "x"}).status_code == 404


# --- keys ----------------------------------------------------------------------------


def test_the_key_list_shows_prefixes_states_and_last_use_but_never_a_hash(
    client, admin, agent, issued
):
    with time_machine.travel(timezone.now(), tick=False):
        used = api_for(issued.secret).get("/api/v1/behaviour/", REMOTE_ADDR="203.0.113.7")
        assert used.status_code == 200
    rotating = agent_key_issue(agent=agent, label="old laptop")
    AgentKey.objects.filter(pk=rotating.key.pk).update(
        revoked_at=timezone.now() + timedelta(hours=3)
    )
    revoked = agent_key_revoke(key=agent_key_issue(agent=agent).key, reason="leak")
    expired = agent_key_issue(agent=agent, expires_in_days=1).key
    AgentKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))

    response = client.get(f"{BASE}/keys/")

    html = response.content.decode()
    states = {row.key.pk: row.state for row in response.context["rows"]}
    assert states == {
        issued.key.pk: "active",
        rotating.key.pk: "rotating",
        revoked.pk: "revoked",
        expired.pk: "expired",
    }
    active_row = row_html(html, f'data-key-id="{issued.key.pk}"')
    assert f"{issued.key.prefix}…" in active_row
    assert "worker" in active_row
    assert "203.0.113.7" in active_row
    assert "Rotate…" in active_row and "Revoke…" in active_row
    assert "until" in row_html(html, f'data-key-id="{rotating.key.pk}"')
    assert "Revoke…" not in row_html(html, f'data-key-id="{revoked.pk}"')
    assert "Rotate…" not in row_html(html, f'data-key-id="{expired.pk}"')
    for key in AgentKey.objects.all():
        assert key.key_hash not in html
    assert issued.secret not in html


def test_issuing_shows_the_key_once_and_stores_only_its_hash(client, admin, agent):
    response = client.post(f"{BASE}/keys/issue/", {"label": "prod", "expires_in_days": "30"})

    assert response.status_code == 200
    secret = shown_key(response)
    html = response.content.decode()
    assert "will not be shown again" in html
    assert 'data-copy-target="new-key"' in html and "<button" in html
    assert '<script src="/static/security.js" defer></script>' in html
    assert_no_inline_code(html)
    assert "no-store" in response["Cache-Control"]
    assert not response.has_header("Location")

    key = AgentKey.objects.get(agent=agent, label="prod")
    assert key.key_hash == agent_keys.hash_key(secret)
    assert key.prefix == secret[: len(key.prefix)] and len(key.prefix) < 20
    assert key.created_by == admin
    assert timedelta(days=29) < key.expires_at - timezone.now() <= timedelta(days=30)
    (event,) = events("agent_key.issued")
    assert event.actor_user_id == admin.pk and event.data["prefix"] == key.prefix
    assert behaviour_status(secret) == 200

    # Not in the session, a message, a URL or any database row.
    assert secret not in json.dumps(dict(client.session.items()), default=str)
    assert all(secret not in str(m) for m in get_messages(response.wsgi_request))
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert secret not in dump.getvalue()
    for row in AgentKey.objects.values():
        assert all(secret not in str(value) for value in row.values())
    assert all(secret not in json.dumps(e.data) for e in AuditEvent.objects.all())

    again = client.get(f"{BASE}/keys/")
    assert secret not in again.content.decode()
    assert key.prefix in again.content.decode()
    assert all(secret not in str(m) for m in again.context["messages"])


def test_an_invalid_issue_form_issues_nothing(client, admin, agent):
    response = client.post(f"{BASE}/keys/issue/", {"expires_in_days": "0"})
    assert response.status_code == 400
    assert not KEY_PATTERN.search(response.content.decode())
    assert not AgentKey.objects.exists()
    assert not events("agent_key.issued")


def test_the_rotate_form_defaults_to_the_configured_overlap(client, admin, issued, settings):
    settings.AISPM_KEY_ROTATION_OVERLAP_HOURS = 6
    response = client.get(f"{BASE}/keys/{issued.key.pk}/rotate/")
    assert response.status_code == 200
    assert re.search(r'name="overlap_hours"[^>]*value="6"', response.content.decode())


def test_rotation_keeps_the_old_key_working_for_the_overlap_only(client, admin, agent, issued):
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=False):
        response = client.post(f"{BASE}/keys/{issued.key.pk}/rotate/", {"overlap_hours": "2"})

    assert response.status_code == 200
    new_secret = shown_key(response)
    assert new_secret != issued.secret
    html = response.content.decode()
    stops = start + timedelta(hours=2)
    assert "will not be shown again" in html
    assert f"{stops:%Y-%m-%d %H:%M} UTC" in html
    assert "no-store" in response["Cache-Control"]
    old = AgentKey.objects.get(pk=issued.key.pk)
    assert old.revoked_at == stops
    new = AgentKey.objects.get(key_hash=agent_keys.hash_key(new_secret))
    assert new.label == "worker" and new.created_by == admin
    (event,) = events("agent_key.rotated")
    assert event.actor_user_id == admin.pk
    assert event.data["old_key_id"] == old.pk and event.data["new_key_id"] == new.pk
    assert all(new_secret not in json.dumps(e.data) for e in AuditEvent.objects.all())

    with time_machine.travel(start + timedelta(hours=1, minutes=59), tick=False):
        assert behaviour_status(issued.secret) == 200
        assert behaviour_status(new_secret) == 200
        listing = client.get(f"{BASE}/keys/")
        assert {r.key.pk: r.state for r in listing.context["rows"]}[old.pk] == "rotating"
        assert new_secret not in listing.content.decode()
    with time_machine.travel(start + timedelta(hours=2, seconds=1), tick=False):
        refused = api_for(issued.secret).get("/api/v1/behaviour/")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert behaviour_status(new_secret) == 200


def test_a_revoked_key_cannot_be_rotated(client, admin, issued):
    agent_key_revoke(key=issued.key, reason="gone")
    response = client.post(f"{BASE}/keys/{issued.key.pk}/rotate/", {"overlap_hours": "1"})
    assert response.status_code == 409
    assert not KEY_PATTERN.search(response.content.decode())
    assert AgentKey.objects.count() == 1
    assert not events("agent_key.rotated")


def test_revoking_asks_for_a_reason_then_takes_effect_at_once(client, admin, issued):
    page = client.get(f"{BASE}/keys/{issued.key.pk}/revoke/")
    assert page.status_code == 200
    assert "stops working at once" in page.content.decode()

    refused = client.post(f"{BASE}/keys/{issued.key.pk}/revoke/", {"reason": "  "})
    assert refused.status_code == 400
    assert "Say why the key is revoked." in refused.content.decode()
    assert behaviour_status(issued.secret) == 200

    response = client.post(f"{BASE}/keys/{issued.key.pk}/revoke/", {"reason": "leaked in a log"})

    assert response.status_code == 302 and response.url == f"{BASE}/keys/"
    issued.key.refresh_from_db()
    assert issued.key.revoked_at is not None and issued.key.revoked_at <= timezone.now()
    (event,) = events("agent_key.revoked")
    assert event.actor_user_id == admin.pk and event.data["reason"] == "leaked in a log"
    assert behaviour_status(issued.secret) == 401


def test_revoking_a_rotating_key_ends_its_overlap_now(client, admin, issued):
    AgentKey.objects.filter(pk=issued.key.pk).update(revoked_at=timezone.now() + timedelta(hours=5))
    client.post(f"{BASE}/keys/{issued.key.pk}/revoke/", {"reason": "no need to wait"})
    assert behaviour_status(issued.secret) == 401


# --- scopes --------------------------------------------------------------------------


def test_the_scope_editor_shows_effective_permissions_and_flags_excess_privilege(
    client, admin, agent, email_action, payment_action, crm_action
):
    DecisionFactory(agent=agent, action_type=email_action)
    DecisionFactory(agent=agent, action_type=email_action)
    old = DecisionFactory(agent=agent, action_type=payment_action)
    Decision.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    DecisionFactory(agent=AgentFactory(slug="someone-else"), action_type=payment_action)

    response = client.get(f"{BASE}/scopes/")

    assert response.status_code == 200
    rows = {row.action_type.key: row for row in response.context["rows"]}
    assert set(rows) == {"email.send", "payment.transfer", "crm.update"}
    assert rows["email.send"].uses == 2 and not rows["email.send"].excess
    assert rows["payment.transfer"].grant and rows["payment.transfer"].uses == 0
    assert rows["payment.transfer"].excess
    assert rows["crm.update"].grant is None and not rows["crm.update"].excess
    html = response.content.decode()
    email = row_html(html, 'data-action="email.send"')
    assert "yes" in email and "1000" in email and "size(params.to) &lt;= 50" in email
    assert "excess privilege" not in email
    assert "excess privilege" in row_html(html, 'data-action="payment.transfer"')
    crm = row_html(html, 'data-action="crm.update"')
    assert ">no<" in crm and "excess privilege" not in crm


def test_granting_an_action_records_it(client, admin, agent, crm_action):
    scope_version = agent.scope_version
    response = client.post(
        f"{BASE}/scopes/grant/",
        {"action_type": "crm.update", "limit_per_hour": "10", "constraint": "params.x == 1"},
    )
    assert response.status_code == 302 and response.url == f"{BASE}/scopes/"
    grant = Grant.objects.get(agent=agent, action_type=crm_action)
    assert grant.limit_per_hour == 10 and grant.constraint == "params.x == 1"
    (event,) = events("grant.created")
    assert event.actor_user_id == admin.pk and event.data["action"] == "crm.update"
    agent.refresh_from_db()
    assert agent.scope_version > scope_version


def test_editing_a_grant_saves_limit_and_constraint(client, admin, agent, email_action):
    page = client.get(f"{BASE}/scopes/email.send/edit/")
    assert "size(params.to) &lt;= 50" in page.content.decode()

    response = client.post(
        f"{BASE}/scopes/email.send/edit/",
        {"limit_per_hour": "", "constraint": "size(params.to) <= 5"},
    )

    assert response.status_code == 302
    grant = Grant.objects.get(agent=agent, action_type=email_action)
    assert grant.limit_per_hour is None and grant.constraint == "size(params.to) <= 5"
    (event,) = events("grant.updated")
    assert event.actor_user_id == admin.pk
    assert set(event.data["changed"]) == {"limit_per_hour", "constraint"}


@pytest.mark.parametrize(
    ("url", "data"),
    [
        (f"{BASE}/scopes/email.send/edit/", {"limit_per_hour": "5"}),
        (f"{BASE}/scopes/grant/", {"action_type": "crm.update"}),
    ],
)
def test_invalid_cel_is_shown_with_the_field_and_changes_nothing(
    client, admin, agent, crm_action, url, data
):
    before = list(Grant.objects.values())
    response = client.post(url, {**data, "constraint": "size(params.to) <="})

    assert response.status_code == 400
    html = response.content.decode()
    field = re.search(r'<textarea name="constraint".*?</div>', html, re.S).group(0)
    assert 'aria-invalid="true"' in field
    assert re.search(r'class="field-error" role="alert">CEL syntax error', field)
    assert list(Grant.objects.values()) == before
    assert not events("grant.updated") and not events("grant.created")


def test_a_zero_limit_is_refused(client, admin, agent):
    response = client.post(f"{BASE}/scopes/email.send/edit/", {"limit_per_hour": "0"})
    assert response.status_code == 400
    assert Grant.objects.get(agent=agent, action_type__key="email.send").limit_per_hour == 1000


def test_removing_a_grant_confirms_first_then_puts_the_action_out_of_scope(
    client, admin, agent, api, email_body
):
    page = client.get(f"{BASE}/scopes/email.send/remove/")
    assert page.status_code == 200
    assert "out_of_scope" in page.content.decode()
    assert Grant.objects.filter(agent=agent, action_type__key="email.send").exists()

    response = client.post(f"{BASE}/scopes/email.send/remove/")

    assert response.status_code == 302 and response.url == f"{BASE}/scopes/"
    assert not Grant.objects.filter(agent=agent, action_type__key="email.send").exists()
    (event,) = events("grant.removed")
    assert event.actor_user_id == admin.pk and event.data["action"] == "email.send"
    refused = api.post("/api/v1/decisions/", email_body, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "out_of_scope"


# --- alerts --------------------------------------------------------------------------


@pytest.fixture
def alerts(agent):
    other = AgentFactory(slug="billing")
    return {
        "spike": alert_raise(severity="medium", kind="rate_spike", agent=agent, message="Burst"),
        "scope": alert_raise(
            severity="high", kind="out_of_scope", agent=agent, message="Tried payment"
        ),
        "billing": alert_raise(severity="low", kind="key_expiring", agent=other, message="Soon"),
    }


def _listed(response) -> set[int]:
    return {alert.pk for alert in response.context["page"]}


def test_alerts_list_the_open_ones_with_their_details(client, admin, alerts):
    response = client.get("/security/alerts/")
    assert response.status_code == 200
    assert _listed(response) == {a.pk for a in alerts.values()}
    html = response.content.decode()
    assert "rate_spike" in html and "Tried payment" in html and "High" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"severity": "high"}, {"scope"}),
        ({"agent": "billing"}, {"billing"}),
        ({"kind": "rate_spike"}, {"spike"}),
        ({"agent": SLUG, "severity": "medium"}, {"spike"}),
        ({"severity": "bogus"}, {"spike", "scope", "billing"}),
    ],
)
def test_alert_filters(client, admin, alerts, query, expected):
    response = client.get("/security/alerts/", query)
    assert _listed(response) == {alerts[name].pk for name in expected}


def test_alert_filters_are_kept_in_the_url_and_htmx_gets_the_fragment(client, admin, alerts):
    response = client.get(
        "/security/alerts/", {"severity": "high", "state": "all"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="alerts"')
    assert "<html" not in html and 'id="alert-filters"' not in html
    assert _listed(response) == {alerts["scope"].pk}
    form = re.search(r'<form class="ack-form".*?</form>', html, re.S).group(0)
    assert '<input type="hidden" name="severity" value="high">' in form
    assert '<input type="hidden" name="state" value="all">' in form


def test_acknowledging_records_who_when_and_why(client, admin, alerts):
    alert = alerts["scope"]
    response = client.post(
        f"/security/alerts/{alert.pk}/acknowledge/",
        {"comment": "Expected: new payee", "severity": "high"},
    )

    assert response.status_code == 302
    assert response.url == "/security/alerts/?severity=high"
    alert.refresh_from_db()
    assert alert.acknowledged_by == admin and alert.acknowledged_at is not None
    assert alert.acknowledgement == "Expected: new payee"
    (event,) = events("alert.acknowledged")
    assert event.actor_user_id == admin.pk and event.data["comment"] == "Expected: new payee"

    assert alert.pk not in _listed(client.get("/security/alerts/"))
    done = client.get("/security/alerts/", {"state": "acknowledged"})
    assert _listed(done) == {alert.pk}
    html = done.content.decode()
    assert "Acknowledged by <strong>ada</strong>" in html and "Expected: new payee" in html


def test_acknowledging_needs_a_comment(client, admin, alerts):
    alert = alerts["spike"]
    response = client.post(f"/security/alerts/{alert.pk}/acknowledge/", {"comment": " "})
    assert response.status_code == 400
    assert "Say what you found or did." in response.content.decode()
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    assert not events("alert.acknowledged")


def test_acknowledging_over_htmx_returns_the_list_fragment(client, admin, alerts):
    alert = alerts["spike"]
    response = client.post(
        f"/security/alerts/{alert.pk}/acknowledge/",
        {"comment": "Looked; fine", "kind": "rate_spike"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="alerts"') and "<html" not in html
    assert "Acknowledged the medium rate_spike alert." in html
    assert _listed(response) == set()
    alert.refresh_from_db()
    assert alert.acknowledged_by == admin


def test_hostile_text_in_alerts_is_escaped_and_kept_away_from_htmx(client, admin, agent):
    alert_raise(
        severity="high",
        kind="anomaly",
        agent=agent,
        message='<img src=x onerror="alert(1)"> burst',
        evidence={
            "reasoning": "<script>alert('pwned')</script>",
            "trap": '<a hx-get="/security/global-stop/" hx-trigger="load">x</a>',
        },
    )

    html = client.get("/security/alerts/").content.decode()

    assert "<script>alert(" not in html
    assert "<img src=x" not in html
    assert '<a hx-get="/security/global-stop/"' not in html
    body = html.split('<div class="untrusted alert-body" hx-disable>', 1)[1].split("</details>")[0]
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; burst" in body
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in body
    assert "&lt;a hx-get=" in body

    alert = Alert.objects.get(kind="anomaly")
    response = client.post(
        f"/security/alerts/{alert.pk}/acknowledge/", {"comment": "<i>ok</i>"}, follow=True
    )
    html = response.content.decode()
    assert "<img src=x" not in html and "<i>ok</i>" not in html
    assert "&lt;img src=x onerror" not in html  # the message is not echoed outside hx-disable


# --- kill switches -------------------------------------------------------------------


def test_the_suspend_page_explains_the_effect(client, admin, agent, email_action):
    DecisionFactory(agent=agent, action_type=email_action)
    DecisionFactory(agent=agent, action_type=email_action, status=Decision.Status.APPROVED)
    response = client.get(f"{BASE}/suspend/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "agent_suspended" in html and "blocked" in html and "frozen" in html
    assert response.context["pending"] == 1 and response.context["queued"] == 1
    agent.refresh_from_db()
    assert agent.status == Agent.Status.ACTIVE


def test_suspension_needs_a_reason(client, admin, agent):
    response = client.post(f"{BASE}/suspend/", {"reason": ""})
    assert response.status_code == 400
    assert "Say why the agent is suspended." in response.content.decode()
    agent.refresh_from_db()
    assert agent.status == Agent.Status.ACTIVE
    assert not events("agent.suspended")


def test_suspending_stops_submissions_and_resuming_lets_them_through(
    client, admin, agent, api, email_body
):
    response = client.post(f"{BASE}/suspend/", {"reason": "Sending odd emails"})

    assert response.status_code == 302 and response.url == f"{BASE}/suspend/"
    agent.refresh_from_db()
    assert agent.status == Agent.Status.SUSPENDED
    assert agent.suspended_reason == "Sending odd emails"
    (event,) = events("agent.suspended")
    assert event.actor_user_id == admin.pk and event.data["reason"] == "Sending odd emails"
    refused = api.post("/api/v1/decisions/", email_body, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "agent_suspended"
    page = client.get(f"{BASE}/suspend/").content.decode()
    assert "Resume agent" in page and "Sending odd emails" in page

    response = client.post(f"{BASE}/resume/", {"reason": "Fixed the prompt"})

    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.status == Agent.Status.ACTIVE
    (event,) = events("agent.resumed")
    assert event.actor_user_id == admin.pk and event.data["reason"] == "Fixed the prompt"
    assert api.post("/api/v1/decisions/", email_body, format="json").status_code == 201


def test_resuming_an_active_agent_changes_nothing(client, admin, agent):
    response = client.post(f"{BASE}/resume/")
    assert response.status_code == 302
    assert not events("agent.resumed")


def test_a_superuser_engages_and_lifts_the_global_stop(client, root):
    client.force_login(root)
    page = client.get("/security/global-stop/")
    assert page.status_code == 200
    assert 'data-global-stop="lifted"' in page.content.decode()

    refused = client.post("/security/global-stop/", {"action": "engage", "reason": ""})
    assert refused.status_code == 400
    assert not GlobalStop.objects.filter(engaged=True).exists()

    response = client.post("/security/global-stop/", {"action": "engage", "reason": "Incident 42"})

    assert response.status_code == 302 and response.url == "/security/global-stop/"
    stop = GlobalStop.objects.get()
    assert stop.engaged and stop.reason == "Incident 42" and stop.changed_by == root
    (event,) = events("global_stop.engaged")
    assert event.actor_user_id == root.pk and event.data["reason"] == "Incident 42"
    html = client.get("/security/global-stop/").content.decode()
    assert 'data-global-stop="engaged"' in html and "Incident 42" in html
    assert "Lift global stop" in html

    client.post("/security/global-stop/", {"action": "lift", "reason": "Resolved"})

    stop.refresh_from_db()
    assert not stop.engaged
    (event,) = events("global_stop.lifted")
    assert event.actor_user_id == root.pk
