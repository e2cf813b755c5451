"""Money in every summary people read, written for the locale their browser asks for;
the stored summary, the API and the machine payloads keep the values as sent."""

import re

import pytest
from rest_framework.test import APIClient

from agents.services import agent_key_issue
from agents.summary import render_summary
from approvals import services
from approvals.models import Decision
from approvals.notifications import links
from approvals.notifications import messages as notification_messages
from approvals.readable import readable_summary
from tests.factories import (
    ActionTypeFactory,
    GrantFactory,
    UserFactory,
    agent_with_policy,
    auditor,
    reviewer,
)

pytestmark = pytest.mark.django_db

TEMPLATE = "Pay {amount} {currency} to {to}"
POLICY = [{"id": "pay", "action": "payment.transfer", "outcome": "review", "risk": "high"}]
STORED = "Pay 4800.0 EUR to Globex"
ENGLISH = "Pay €4,800.00 to Globex"
GERMAN = "Pay 4.800,00\xa0€ to Globex"
FRENCH = "Pay 4\u202f800,00\xa0€ to Globex"
HOSTILE_LANGUAGES = {
    "nul": "de\x00",
    "huge": "q" * 100_000 + ",de",
    "bidi": "\u202ede\u202c",
    "lone surrogate": "\ud800",
    "CRLF": "de\r\nSet-Cookie: a=b",
    "odd weights": "de;q=NaN, fr;q=1e400, *;q=-1",
    "not a language": "<script>alert(1)</script>",
    "private use tags": "x-klingon, i-default, zz-ZZ-u-nu-arab",
}


@pytest.fixture
def world():
    owner = UserFactory(username="owner")
    agent = agent_with_policy(slug="finance", owner=owner, policy=POLICY)
    action = ActionTypeFactory(
        key="payment.transfer",
        summary_template=TEMPLATE,
        params_schema={
            "type": "object",
            "properties": {
                "amount": {"type": "number"},
                "currency": {"type": "string"},
                "to": {"type": "string"},
            },
        },
    )
    GrantFactory(agent=agent, action_type=action)
    decision = services.decision_create(
        agent=agent,
        action_type=action,
        params={"amount": 4800.0, "currency": "EUR", "to": "Globex"},
        reasoning="Invoice due.",
    )
    assert decision.summary == STORED
    return {"agent": agent, "action": action, "decision": decision}


def _row_text(content: bytes) -> list[str]:
    """The text of each inbox row's link."""
    return [
        re.sub(r"<[^>]+>", "", text)
        for text in re.findall(r"<span hx-disable>(.*?)</span></a>", content.decode())
    ]


def test_the_inbox_list_and_detail_write_money_for_an_english_reader(client, world):
    client.force_login(reviewer())
    page = client.get("/inbox/").content.decode()
    assert _row_text(page.encode()) == [ENGLISH]
    assert STORED not in page
    detail = client.get(f"/inbox/{world['decision'].pk}/").content.decode()
    assert f'<h2 id="decision-title" class="canonical">{ENGLISH}</h2>' in detail


@pytest.mark.parametrize(
    ("accept", "shown"),
    [
        ("de-DE,de;q=0.9,en;q=0.5", GERMAN),
        ("de-CH", GERMAN),
        ("fr-FR,fr;q=0.9", FRENCH),
        ("en-GB,en;q=0.9", ENGLISH),
        ("ja-JP", ENGLISH),
        ("", ENGLISH),
    ],
)
def test_accept_language_picks_the_locale_money_is_written_in(client, world, accept, shown):
    client.force_login(reviewer())
    headers = {"HTTP_ACCEPT_LANGUAGE": accept} if accept else {}
    listing = client.get("/inbox/", **headers)
    assert _row_text(listing.content) == [shown]
    detail = client.get(f"/inbox/{world['decision'].pk}/", **headers).content.decode()
    assert f'<h2 id="decision-title" class="canonical">{shown}</h2>' in detail
    fragment = client.get(f"/inbox/{world['decision'].pk}/", HTTP_HX_REQUEST="true", **headers)
    assert shown in fragment.content.decode()
    assert "Accept-Language" in listing["Vary"]


def test_a_german_browser_gets_german_money_but_an_english_page(client, world):
    client.force_login(reviewer())
    response = client.get("/inbox/", HTTP_ACCEPT_LANGUAGE="de")
    page = response.content.decode()
    assert GERMAN in page
    assert '<html lang="en">' in page
    assert response["Content-Language"] == "en-us"
    # Django's own catalogues stay out of it: "in 1 hour", not "in 1 Stunde".
    assert "Stunde" not in page and "Minuten" not in page


def test_a_long_accept_language_is_read_up_to_its_limit(client, world):
    client.force_login(reviewer())
    response = client.get("/inbox/", HTTP_ACCEPT_LANGUAGE="de-DE," * 20_000)
    assert _row_text(response.content) == [GERMAN]


def test_the_language_cookie_picks_the_locale_too(client, world):
    client.force_login(reviewer())
    client.cookies["django_language"] = "de"
    assert _row_text(client.get("/inbox/").content) == [GERMAN]


@pytest.mark.parametrize("label", HOSTILE_LANGUAGES)
def test_a_hostile_accept_language_or_cookie_falls_back_to_english(client, world, label):
    client.force_login(reviewer())
    value = HOSTILE_LANGUAGES[label]
    response = client.get("/inbox/", HTTP_ACCEPT_LANGUAGE=value)
    assert response.status_code == 200
    assert _row_text(response.content) == [ENGLISH]
    # A cookie arrives as bytes that WSGI decodes as Latin-1.
    raw = value.encode("utf-8", "surrogatepass").decode("latin-1")
    client.cookies["django_language"] = raw.replace("\x00", "%00")[:4000]
    response = client.get(f"/inbox/{world['decision'].pk}/", HTTP_ACCEPT_LANGUAGE=value)
    assert response.status_code == 200
    assert ENGLISH in response.content.decode()


def test_the_api_keeps_the_stored_summary_and_skips_the_locale(world):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key_issue(agent=world['agent']).secret}")
    response = api.get(f"/api/v1/decisions/{world['decision'].pk}/", HTTP_ACCEPT_LANGUAGE="de-DE")
    assert response.status_code == 200
    assert response.json()["summary"] == STORED
    assert "Accept-Language" not in response.get("Vary", "")
    assert "Content-Language" not in response


def test_the_audit_search_and_trail_write_money_for_the_reader(client, world):
    decision = world["decision"]
    services.decision_reject(decision=decision, reviewer=reviewer(), reason="Not this month.")
    client.force_login(auditor())
    search = client.get("/audit/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert GERMAN in search and STORED not in search
    trail = client.get(f"/audit/decisions/{decision.pk}/").content.decode()
    assert f'<h1 id="trail-title" class="canonical">{ENGLISH}</h1>' in trail
    decision.refresh_from_db()
    assert decision.summary == STORED


def test_the_agents_earlier_decisions_beside_a_decision_are_formatted(client, world):
    later = services.decision_create(
        agent=world["agent"],
        action_type=world["action"],
        params={"amount": 12.5, "currency": "USD", "to": "Initech"},
        reasoning="Subscription.",
    )
    client.force_login(reviewer())
    detail = client.get(f"/inbox/{later.pk}/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    history = detail[detail.index("Pay 12,50") :]
    assert GERMAN in history


def test_an_edited_decision_shows_the_edited_amount(world):
    decision = world["decision"]
    decision.approved_params = {"amount": 4500, "currency": "EUR", "to": "Globex"}
    assert readable_summary(decision) == "Pay €4,500.00 to Globex"


def test_a_summary_the_current_template_no_longer_yields_is_shown_as_stored(world):
    action = world["action"]
    action.summary_template = "Transfer {amount} {currency} to {to} now"
    action.save()
    decision = Decision.objects.select_related("action_type").get(pk=world["decision"].pk)
    assert render_summary(action.summary_template, decision.params) != decision.summary
    assert readable_summary(decision) == STORED


def test_notification_text_is_formatted_and_the_json_payload_keeps_the_stored_summary(world):
    item = notification_messages.item_for(world["decision"])
    assert ENGLISH in notification_messages.email_body([item], "new")
    slack = notification_messages.slack_payload([item], "new")
    assert slack["blocks"][1]["text"]["text"] == ENGLISH
    teams = notification_messages.teams_payload([item], "new")
    assert teams["attachments"][0]["content"]["body"][1]["text"] == r"Pay €4,800\.00 to Globex"
    payload = notification_messages.json_payload([item], "new")
    assert payload["decisions"][0]["summary"] == STORED


def test_the_chat_approve_page_and_its_message_are_formatted(client, world):
    decision = world["decision"]
    client.force_login(reviewer())
    path = links.approve_path(decision)
    page = client.get(path, HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert f"<strong>{GERMAN}</strong>" in page
    response = client.post(path, {"comment": ""}, HTTP_ACCEPT_LANGUAGE="de", follow=True)
    assert f"Approved: {GERMAN}" in response.content.decode()


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        '<a hx-get="/inbox/" hx-trigger="load">x</a>',
        '=HYPERLINK("http://evil")',
        "Globex\r\nApproved: Pay 1 EUR",
    ],
)
def test_hostile_text_in_a_formatted_row_stays_escaped(client, world, hostile):
    decision = services.decision_create(
        agent=world["agent"],
        action_type=world["action"],
        params={"amount": 1, "currency": "EUR", "to": hostile},
        reasoning="x",
    )
    client.force_login(reviewer())
    page = client.get("/inbox/").content.decode()
    assert "<script>alert(1)" not in page
    assert '<a hx-get="/inbox/" hx-trigger="load">' not in page
    row = [text for text in _row_text(page.encode()) if text.startswith("Pay €1.00")]
    assert len(row) == 1 and "\r" not in row[0] and "\n" not in row[0]
    assert readable_summary(decision).startswith("Pay €1.00 to ")


def test_a_message_is_written_for_its_recipient_not_for_the_request_sending_it(client, world):
    client.force_login(reviewer())
    page = client.get("/inbox/profile/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    preview = page[page.index('id="preview-title"') :]
    assert ENGLISH in preview
    assert "4.800,00" not in preview
