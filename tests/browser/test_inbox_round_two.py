"""The reviewer inbox, round two (issue 13): the next decision in view, a deliberate
second step for critical or irreversible decisions, my queue, reachable bulk approval,
list → detail on a phone, and Back restoring the decision shown.

Every test here also fails, at teardown, on a CSP violation, a page error or a
window dialog (see conftest.py).
"""

import re

import pytest
from playwright.sync_api import expect

from agents.services import behaviour_version_activate, behaviour_version_create
from approvals.models import Decision
from approvals.services import decision_approve, decision_create
from tests.browser.conftest import axe_violations, horizontal_overflow, overflowing_elements
from tests.factories import ActionTypeFactory, AgentFactory, GrantFactory, UserFactory, reviewer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = "/tmp"
POLICY = [
    {
        "id": "big",
        "action": "payment.transfer",
        "when": "params.amount > 20000.0",
        "outcome": "review",
        "risk": "critical",
    },
    {"id": "payments", "action": "payment.transfer", "outcome": "review", "risk": "medium"},
    {"id": "notes", "action": "crm.note", "outcome": "review", "risk": "low", "bulk": True},
    {"id": "two", "action": "crm.two", "outcome": "review", "risk": "medium", "approvals": 2},
]
TRANSFER = {
    "type": "object",
    "properties": {
        "amount": {"type": "number"},
        "currency": {"type": "string", "maxLength": 3},
        "beneficiary": {"type": "string", "maxLength": 140},
        "iban": {"type": "string", "maxLength": 34},
        "memo": {"type": "string"},
    },
}


@pytest.fixture
def estate():
    transfer = ActionTypeFactory(
        key="payment.transfer",
        name="Transfer money",
        summary_template="Pay {amount} {currency} to {beneficiary}",
        params_schema=TRANSFER,
        irreversible=True,
    )
    note = ActionTypeFactory(
        key="crm.note", name="Add CRM note", summary_template="Note: {title}", params_schema={}
    )
    two = ActionTypeFactory(
        key="crm.two", name="Two-person change", summary_template="Change {what}", params_schema={}
    )
    agent = AgentFactory(slug="finance", name="Finance agent", owner=UserFactory(username="owen"))
    for action in (transfer, note, two):
        GrantFactory(agent=agent, action_type=action)
    behaviour_version_activate(version=behaviour_version_create(agent=agent, policy=POLICY))
    agent.refresh_from_db()
    return {"agent": agent, "transfer": transfer, "note": note, "two": two}


def pay(estate, amount, beneficiary="Steelworks GmbH", memo="Invoice INV-1183.") -> Decision:
    params = {
        "amount": amount,
        "currency": "EUR",
        "beneficiary": beneficiary,
        "iban": "DE89370400440532013000",
        "memo": memo,
    }
    return decision_create(
        agent=estate["agent"], action_type=estate["transfer"], params=params, reasoning="Due."
    )


def note(estate, n) -> Decision:
    return decision_create(
        agent=estate["agent"],
        action_type=estate["note"],
        params={"title": f"Call {n}"},
        reasoning="Log the call.",
    )


# Whether the element is what the reader sees at its own centre: not under the sticky
# top bar, the toast or anything else.
ON_TOP = """el => {
  const r = el.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + Math.min(r.height / 2, 8));
  return hit !== null && (el === hit || el.contains(hit) || hit.contains(el));
}"""


def in_view(page, locator) -> bool:
    box = locator.bounding_box()
    size = page.viewport_size
    return (
        box is not None
        and locator.evaluate(ON_TOP)
        and box["y"] >= -1
        and box["y"] + box["height"] <= size["height"] + 0.5
        and box["x"] >= 0
        and box["x"] + box["width"] <= size["width"] + 0.5
    )


@pytest.mark.parametrize("size", [(1280, 800), (1440, 900)])
def test_after_every_move_the_next_decision_and_its_buttons_are_in_view(page, login, estate, size):
    long_memo = "A long memo from the agent. " * 80
    for n in range(30):
        pay(estate, 100 + n, beneficiary=f"Supplier {n}", memo=long_memo)
    reviewer(username="rita")
    page.set_viewport_size({"width": size[0], "height": size[1]})
    login(page, "rita")
    detail = page.locator("#decision-detail")

    def check():
        for part in (
            detail.locator("#decision-title"),
            detail.locator("#params-title"),
            detail.locator(".params dd").first,
            page.locator("#approve-button"),
            page.locator("#inbox .inbox-row.is-selected"),
        ):
            assert in_view(page, part), f"{part} is out of view at {size}"

    for _ in range(12):
        shown = detail.get_attribute("data-decision-id")
        page.keyboard.press("j")
        expect(detail).not_to_have_attribute("data-decision-id", shown)
        check()
    shown = detail.get_attribute("data-decision-id")
    page.keyboard.press("a")
    expect(detail).not_to_have_attribute("data-decision-id", shown)
    check()
    assert in_view(page, page.locator("#inbox .messages"))
    expect(page.locator("#inbox .messages")).to_contain_text("Approved:")
    page.screenshot(path=f"{SCREENSHOTS}/inbox-{size[0]}.png")


def test_a_critical_transfer_needs_a_second_different_key(page, login, estate):
    critical = pay(estate, 26134.0)
    routine = note(estate, 1)
    assert critical.risk == "critical"
    reviewer(username="rita")
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, "rita")
    detail = page.locator("#decision-detail")
    expect(detail).to_have_attribute("data-decision-id", str(critical.pk))

    page.keyboard.press("a")
    panel = page.locator("#confirm-panel")
    expect(panel).to_have_attribute("open", "")
    expect(panel).to_contain_text("€26,134.00")
    expect(panel).to_contain_text("Steelworks GmbH")
    expect(panel).to_contain_text("DE89370400440532013000")
    page.screenshot(path=f"{SCREENSHOTS}/inbox-confirm-1280.png")
    # Pressing a again (or holding it) never approves.
    page.keyboard.press("a")
    page.keyboard.press("a")
    critical.refresh_from_db()
    assert critical.status == Decision.Status.PENDING

    expect(panel).to_have_attribute("open", "")
    page.keyboard.press("Shift+A")
    expect(detail).to_have_attribute("data-decision-id", str(routine.pk))
    critical.refresh_from_db()
    assert critical.status != Decision.Status.PENDING

    # A routine decision stays at one key.
    page.keyboard.press("a")
    expect(page.locator("#inbox .inbox-row")).to_have_count(0)
    routine.refresh_from_db()
    assert routine.status != Decision.Status.PENDING


def test_a_post_without_the_confirmation_is_refused(client, estate):
    from approvals import services

    critical = pay(estate, 26134.0)
    client.force_login(reviewer(username="rita"))
    response = client.post(
        f"/inbox/{critical.pk}/approve/",
        {"params_hash": services.params_fingerprint(critical.params)},
    )
    critical.refresh_from_db()
    assert critical.status == Decision.Status.PENDING
    assert response.status_code in (302, 400)


def test_my_queue_hides_what_waits_for_others_and_keys_say_why(page, login, estate):
    rita = reviewer(username="rita")
    waiting = decision_create(
        agent=estate["agent"],
        action_type=estate["two"],
        params={"what": "owner"},
        reasoning="Handover.",
    )
    decision_approve(decision=waiting, reviewer=rita)
    mine = note(estate, 1)
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, "rita")

    rows = page.locator("#inbox .inbox-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", str(mine.pk))
    expect(page.locator('[data-queue="waiting"] .tab-count')).to_have_text("1")
    expect(page.locator('[data-queue="mine"] .tab-count')).to_have_text("1")

    page.locator('[data-queue="waiting"]').click()
    expect(page).to_have_url(re.compile(r"queue=waiting"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", str(waiting.pk))
    expect(page.locator("#cannot-act")).to_contain_text("waits for another reviewer")
    page.keyboard.press("a")
    expect(page.locator("#key-feedback")).to_contain_text("waits for another reviewer")
    waiting.refresh_from_db()
    assert waiting.reviews.count() == 1


def test_routine_decisions_are_reachable_selectable_and_paged_with_the_keyboard(
    page, login, estate
):
    for n in range(3):
        pay(estate, 26000.0 + n)  # critical: they sort first
    notes = [note(estate, n) for n in range(27)]
    reviewer(username="rita")
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, "rita")
    rows = page.locator("#inbox .inbox-row")
    detail = page.locator("#decision-detail")

    # j continues onto the next page, k back onto the previous one.
    expect(rows).to_have_count(25)
    for _ in range(24):
        shown = detail.get_attribute("data-decision-id")
        page.keyboard.press("j")
        expect(detail).not_to_have_attribute("data-decision-id", shown)
    last_of_first = detail.get_attribute("data-decision-id")
    page.keyboard.press("j")
    expect(rows).to_have_count(5)
    expect(detail).not_to_have_attribute("data-decision-id", last_of_first)
    page.keyboard.press("k")
    expect(rows).to_have_count(25)
    expect(detail).to_have_attribute("data-decision-id", last_of_first)

    # The Routine tab lists the bulk-eligible ones; x and select-all pick them.
    page.locator('[data-queue="routine"]').click()
    expect(page.locator('[data-queue="routine"]')).to_have_attribute("aria-current", "page")
    expect(page.locator('[data-queue="routine"] .tab-count')).to_have_text("27")
    expect(rows).to_have_count(25)
    page.keyboard.press("x")
    expect(page.locator(".bulk-check:checked")).to_have_count(1)
    page.keyboard.press("x")
    expect(page.locator(".bulk-check:checked")).to_have_count(0)
    page.locator("#select-all").check()
    expect(page.locator(".bulk-check:checked")).to_have_count(25)
    expect(page.locator("#bulk-approve-button")).to_be_visible()
    page.locator("#bulk-approve-button").click()
    expect(page.locator("#bulk-count")).to_have_text("25")
    page.locator("#bulk-confirm").click()
    expect(rows).to_have_count(2)
    assert Decision.objects.filter(pk__in=[n.pk for n in notes], status="pending").count() == 2


def test_a_filter_that_matches_nothing_says_so_and_offers_to_clear(page, login, estate):
    note(estate, 1)
    reviewer(username="rita")
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, "rita", next="/inbox/?risk=critical")
    expect(page.locator('[data-empty="filtered"]')).to_contain_text(
        "Nothing matches these filters (1 pending for you)"
    )
    expect(page.get_by_text("Inbox zero")).to_have_count(0)
    page.locator('[data-empty="filtered"]').get_by_role("link", name="Clear filters").click()
    expect(page.locator("#inbox .inbox-row")).to_have_count(1)


def test_on_a_phone_the_list_leads_to_the_detail_and_back(page, login, estate):
    first, second = note(estate, 1), note(estate, 2)
    reviewer(username="rita")
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, "rita")
    expect(page.locator(".inbox-list")).to_be_visible()
    expect(page.locator(".inbox-detail")).to_be_hidden()
    assert horizontal_overflow(page) <= 0
    page.screenshot(path=f"{SCREENSHOTS}/inbox-390-list.png", full_page=True)
    page.locator(f'.inbox-row[data-id="{second.pk}"] .row-link').click()
    expect(page.locator("#decision-detail")).to_have_attribute("data-decision-id", str(second.pk))
    # The decision comes first, with a way back; the list follows it.
    detail_box = page.locator(".inbox-detail").bounding_box()
    list_box = page.locator(".inbox-list").bounding_box()
    assert detail_box["y"] < list_box["y"]
    assert horizontal_overflow(page) <= 0
    page.screenshot(path=f"{SCREENSHOTS}/inbox-390-detail.png", full_page=True)
    page.get_by_role("link", name="← All decisions").click()
    expect(page.locator(".inbox-list")).to_be_visible()
    assert first


def test_back_restores_the_decision_shown(page, login, estate):
    decisions = [note(estate, n) for n in range(3)]
    reviewer(username="rita")
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, "rita")
    detail = page.locator("#decision-detail")
    first = detail.get_attribute("data-decision-id")
    page.keyboard.press("j")
    expect(detail).not_to_have_attribute("data-decision-id", first)
    second = detail.get_attribute("data-decision-id")
    page.keyboard.press("j")
    expect(detail).not_to_have_attribute("data-decision-id", second)
    page.go_back()
    expect(page).to_have_url(re.compile(rf"/inbox/{second}/$"))
    expect(detail).to_have_attribute("data-decision-id", second)
    page.go_back()
    expect(detail).to_have_attribute("data-decision-id", first)
    assert len(decisions) == 3


def test_a_german_browser_reads_money_the_german_way_in_the_list_and_detail(page, login, estate):
    """Accept-Language picks the locale money is written in; the page stays English."""
    big, small = pay(estate, 4800.0), pay(estate, 12.5, beneficiary="Initech")
    reviewer(username="rita")
    page.set_extra_http_headers({"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, "rita")
    german = re.compile(r"^Pay 4\.800,00\s€ to Steelworks GmbH$")
    rows = page.locator("#inbox .inbox-row .row-link")
    expect(rows).to_have_count(2)
    expect(page.locator(f'.inbox-row[data-id="{big.pk}"] .row-link')).to_have_text(german)
    expect(page.locator(f'.inbox-row[data-id="{small.pk}"] .row-link')).to_have_text(
        re.compile(r"^Pay 12,50\s€ to Initech$")
    )
    page.locator(f'.inbox-row[data-id="{big.pk}"] .row-link').click()
    detail = page.locator("#decision-detail")
    expect(detail).to_have_attribute("data-decision-id", str(big.pk))
    expect(detail.locator("#decision-title")).to_have_text(german)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("columnheader", name="Expires")).to_be_visible()
    assert not axe_violations(page)
    for width in (390, 1280):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(f"/inbox/{big.pk}/")
        expect(page.locator("#decision-title")).to_have_text(german)
        assert horizontal_overflow(page) <= 0, overflowing_elements(page)
