"""Values as people read them: money and numbers in the reader's locale, one way of
writing a percentage, field labels from the schema or a list of acronyms."""

import pytest
from django.utils import translation

from agents.services import behaviour_version_activate, behaviour_version_create
from approvals.services import decision_create
from approvals.templatetags.approvals_extras import (
    field_label,
    percent,
    readable_params,
    readable_summary,
)
from tests.factories import ActionTypeFactory, AgentFactory, GrantFactory, reviewer

pytestmark = pytest.mark.django_db


@pytest.fixture
def transfer():
    action = ActionTypeFactory(
        key="payment.transfer",
        name="Transfer money",
        summary_template="Pay {amount} {currency} to {iban}",
        params_schema={
            "type": "object",
            "properties": {
                "amount": {"type": "number"},
                "currency": {"type": "string"},
                "iban": {"type": "string", "maxLength": 34},
                "account_holder": {"type": "string", "title": "Name on the account"},
            },
        },
    )
    agent = AgentFactory(slug="finance")
    GrantFactory(agent=agent, action_type=action)
    behaviour_version_activate(
        version=behaviour_version_create(
            agent=agent, policy=[{"id": "pay", "action": "payment.transfer", "outcome": "review"}]
        )
    )
    agent.refresh_from_db()
    return decision_create(
        agent=agent,
        action_type=action,
        params={"amount": 12500.0, "currency": "EUR", "iban": "DE89370400440532013000"},
        reasoning="Invoice due.",
    )


def test_money_in_the_summary_is_written_with_its_currency_symbol(transfer):
    assert transfer.summary == "Pay 12500.0 EUR to DE89370400440532013000"
    with translation.override("en-us"):
        assert readable_summary(transfer) == "Pay €12,500.00 to DE89370400440532013000"
    with translation.override("de"):
        assert readable_summary(transfer) == "Pay 12.500,00\xa0€ to DE89370400440532013000"


def test_params_show_money_for_the_locale_and_other_values_exactly(transfer):
    with translation.override("en-us"):
        shown = dict(readable_params({**transfer.params, "count": 1234567}))
    assert shown["amount"] == "€12,500.00"
    assert shown["count"] == "1234567"
    assert shown["currency"] == "EUR"


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), 2**70, True, "12500", None, [1, 2], {"a": 1}]
)
def test_odd_values_are_shown_without_an_error(value):
    shown = dict(readable_params({"amount": value, "currency": "EUR"}))
    assert "amount" in shown


def test_labels_come_from_the_schema_title_or_the_acronym_list(transfer):
    schema = transfer.action_type.params_schema
    assert field_label("iban", schema) == "IBAN"
    assert field_label("account_holder", schema) == "Name on the account"
    assert field_label("swift_bic", None) == "SWIFT BIC"
    assert field_label("customerId", None) == "Customer ID"
    assert field_label("to", None) == "To"
    # A key with a hidden character is left as it is, for the reveal filter to mark.
    assert field_label("am\u202eount", None) == "am\u202eount"


def test_a_percentage_is_written_the_same_way_everywhere():
    assert percent(0.3333) == "33%"
    assert percent(2 / 3) == "67%"
    assert percent(float("nan")) == ""
    assert percent(None) == ""


def test_the_inbox_detail_shows_the_readable_amount_and_labels(client, transfer):
    rita = reviewer(username="rita")
    client.force_login(rita)
    html = client.get(f"/inbox/{transfer.pk}/").content.decode()
    assert "Pay €12,500.00 to DE89370400440532013000" in html
    assert '<span class="value">€12,500.00</span>' in html
    assert "12500.0" not in html.split('id="decision-title"')[1].split("</h2>")[0]


def test_the_agent_page_writes_the_rejection_rate_as_a_percentage(client, transfer):
    from approvals.services import decision_reject
    from tests.factories import agent_admin

    decision_reject(decision=transfer, reviewer=reviewer(username="rex"), reason="Wrong payee")
    client.force_login(agent_admin(username="ada"))
    html = client.get("/agents/finance/").content.decode()
    assert '<td class="num">100%</td>' in html
    assert "1.00" not in html


def test_the_edit_form_labels_fields_as_people_read_them(client, transfer):
    client.force_login(reviewer(username="rita"))
    html = client.get(f"/inbox/{transfer.pk}/edit/").content.decode()
    assert ">IBAN<" in html and ">Iban<" not in html
    assert ">Name on the account<" in html
    # maxLength 34: one line, not a text area.
    assert 'type="text" name="p_iban"' in html
