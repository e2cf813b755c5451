"""Agent admins set how a group hears about decisions waiting for review (issue 17): the
screen for what `manage.py notification_preference` does."""

import json
import logging
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from agents import crypto
from approvals.models import NotificationPreference
from audit.models import AuditEvent
from tests.factories import UserFactory, agent_admin, auditor, reviewer
from tests.site.test_hostile_sweep import HOSTILE

pytestmark = pytest.mark.django_db
URL = "/agents/group-notifications/"
SECRET = "T000/B000/XXXXsecretXXXX"
HOOK = f"http://127.0.0.1:9/services/{SECRET}"


@pytest.fixture
def ada(client, settings):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = True  # the loopback webhook below
    user = agent_admin(username="ada")
    client.force_login(user)
    return user


@pytest.fixture
def managers():
    return Group.objects.create(name="Managers")


def _post(client, **fields):
    data = {
        "group": "Managers",
        "channel": "slack",
        "mode": "immediate",
        "min_risk": "high",
        "digest_minutes": 60,
        "webhook_url": HOOK,
    }
    data.update(fields)
    return client.post(URL, {k: v for k, v in data.items() if v is not None})


def test_an_agent_admin_sets_a_groups_chat_webhook_which_is_masked_and_audited(
    client, ada, managers, caplog
):
    page = client.get(URL)
    assert page.status_code == 200
    assert '<option value="Managers"' in page.content.decode()
    with caplog.at_level(logging.DEBUG):
        response = _post(client, min_risk="medium")
    assert response.status_code == 302
    assert response["Location"] == URL
    preference = NotificationPreference.objects.get(group=managers)
    assert (preference.channel, preference.mode, preference.min_risk) == (
        "slack",
        "immediate",
        "medium",
    )
    assert preference.user is None
    assert SECRET not in preference.webhook_url_encrypted
    assert crypto.decrypt_secret(preference.webhook_url_encrypted) == HOOK
    event = AuditEvent.objects.get(event="notification.preference_saved")
    assert event.actor_user == ada
    assert event.data["owner"] == f"group:{managers.pk}"
    assert SECRET not in json.dumps(event.data)
    listing = client.get(URL).content.decode()
    assert "Managers" in listing and "127.0.0.1/…" in listing
    assert SECRET not in listing and "services/" not in listing
    assert SECRET not in caplog.text


def test_a_group_is_set_to_a_digest_or_off_by_email(client, ada, managers):
    response = _post(client, channel="email", mode="digest", digest_minutes=30, webhook_url="")
    assert response.status_code == 302
    preference = NotificationPreference.objects.get(group=managers, channel="email")
    assert (preference.mode, preference.digest_minutes) == ("digest", 30)
    assert _post(client, channel="email", mode="off", webhook_url="").status_code == 302
    preference.refresh_from_db()
    assert preference.mode == "off"
    assert AuditEvent.objects.filter(event="notification.preference_saved").count() == 2


def test_a_blank_url_keeps_the_stored_webhook(client, ada, managers):
    assert _post(client, channel="teams").status_code == 302
    assert _post(client, channel="teams", mode="digest", webhook_url="").status_code == 302
    preference = NotificationPreference.objects.get(group=managers, channel="teams")
    assert preference.mode == "digest"
    assert crypto.decrypt_secret(preference.webhook_url_encrypted) == HOOK


def test_the_form_opens_on_a_saved_preference_without_its_url(client, ada, managers):
    _post(client, channel="json", mode="digest", digest_minutes=45)
    page = client.get(URL, {"group": "Managers", "channel": "json"}).content.decode()
    assert '<option value="json" selected>' in page
    assert '<option value="digest" selected>' in page
    assert 'value="45"' in page
    assert SECRET not in page


def test_a_chat_channel_needs_its_webhook_the_first_time(client, ada, managers):
    response = _post(client, channel="slack", webhook_url="")
    assert response.status_code == 400
    assert b"needs its incoming webhook URL" in response.content
    assert not NotificationPreference.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        f"https://169.254.169.254/latest/{SECRET}",
        f"https://127.0.0.1/{SECRET}",
        f"https://10.0.0.8/{SECRET}",
        f"http://93.184.215.14/{SECRET}",
        f"https://user:pw@93.184.215.14/{SECRET}",
        f"ftp://93.184.215.14/{SECRET}",
    ],
)
def test_private_plain_or_odd_webhooks_are_refused_and_never_echoed(
    client, ada, managers, settings, url, caplog
):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = False
    with caplog.at_level(logging.DEBUG):
        response = _post(client, webhook_url=url)
    assert response.status_code == 400
    assert response.context["form"].errors["webhook_url"]
    assert SECRET not in response.content.decode()
    assert SECRET not in caplog.text
    assert not NotificationPreference.objects.exists()
    assert not AuditEvent.objects.filter(event="notification.preference_saved").exists()


def test_a_refused_form_does_not_echo_the_webhook_url(client, ada, managers):
    response = _post(client, digest_minutes=1)
    assert response.status_code == 400
    assert response.context["form"].errors["digest_minutes"]
    assert SECRET not in response.content.decode()


def test_an_unknown_group_is_a_field_error(client, ada, managers):
    response = _post(client, group="Nobody")
    assert response.status_code == 400
    assert response.context["form"].errors["group"]
    assert not NotificationPreference.objects.exists()


@pytest.mark.parametrize("make", [reviewer, auditor])
def test_reviewers_and_auditors_cannot_set_group_notifications(client, managers, make):
    client.force_login(make(username="outsider"))
    assert client.get(URL).status_code == 403
    assert _post(client).status_code == 403
    assert not NotificationPreference.objects.exists()


def test_anonymous_users_are_sent_to_log_in_and_other_methods_refused(client, managers):
    for response in (client.get(URL), _post(client)):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    client.force_login(agent_admin(username="ada"))
    assert client.put(URL).status_code == 405
    assert not NotificationPreference.objects.exists()


def test_saving_needs_the_csrf_token(managers, settings):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = True
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(agent_admin(username="ada"))
    response = strict.post(
        URL, {"group": "Managers", "channel": "email", "mode": "off", "min_risk": "high"}
    )
    assert response.status_code == 403
    assert not NotificationPreference.objects.exists()


def test_a_hostile_group_name_is_shown_inert(client, ada):
    name = '<script>alert(1)</script> <b hx-get="/x">=cmd</b>\r\n@SUM'
    Group.objects.create(name=name)
    assert _post(client, group=name, channel="email", webhook_url="").status_code == 302
    page = client.get(URL).content.decode()
    assert "<script>alert(1)" not in page and 'hx-get="/x"' not in page
    assert "&lt;script&gt;" in page


FIELDS = ["group", "channel", "mode", "min_risk", "digest_minutes", "webhook_url"]


@pytest.mark.parametrize("field", FIELDS)
def test_no_hostile_value_in_any_field_gives_a_server_error(client, ada, managers, field, caplog):
    client.raise_request_exception = False
    base = {
        "group": "Managers",
        "channel": "slack",
        "mode": "digest",
        "min_risk": "high",
        "digest_minutes": "60",
        "webhook_url": HOOK,
    }
    with caplog.at_level(logging.WARNING):
        for label, value in HOSTILE.items():
            body = urlencode(dict(base, **{field: value}), errors="surrogatepass")
            response = client.post(URL, body, content_type="application/x-www-form-urlencoded")
            assert response.status_code < 500, f"{label} in {field}"
            query = urlencode({"group": value, "channel": value}, errors="surrogatepass")
            assert client.get(f"{URL}?{query}").status_code < 500, f"{label} in ?{field}"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    # Only the values a field accepts as they are were saved; the URL never leaked.
    for preference in NotificationPreference.objects.all():
        assert preference.group == managers
    assert SECRET not in caplog.text


def test_the_agents_page_and_the_notifications_profile_link_here(client, ada):
    assert f'href="{URL}"' in client.get("/agents/").content.decode()
    ada.groups.add(Group.objects.get(name="Reviewers"))
    assert f'href="{URL}"' in client.get("/inbox/profile/").content.decode()
    client.force_login(reviewer(username="rita"))
    assert f'href="{URL}"' not in client.get("/inbox/profile/").content.decode()


def test_the_profile_page_does_not_echo_a_refused_webhook_url(client, settings):
    settings.AISPM_ALLOW_PRIVATE_TARGETS = False
    client.force_login(UserFactory(username="rev", groups=["Reviewers"]))
    response = client.post(
        "/inbox/profile/",
        {
            "channel": "slack",
            "mode": "immediate",
            "min_risk": "high",
            "digest_minutes": 60,
            "webhook_url": f"https://169.254.169.254/{SECRET}",
        },
    )
    assert response.status_code == 400
    assert SECRET not in response.content.decode()
