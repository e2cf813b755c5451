"""Edit & approve in a real browser: the reviewer's edited params pass the agent's gate.

Refused edits keep the form open with the reason; edits that need more approvals or a
higher risk wait for another reviewer; an edit within the gate is released as before.
"""

import pytest
from playwright.sync_api import expect

from approvals import services
from approvals.models import Decision, Review
from audit.models import AuditEvent
from tests.approvals.edit_gate_world import NEW_IBAN, World, build_world
from tests.factories import reviewer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
APPROVED = {Decision.Status.APPROVED, Decision.Status.RELEASING, Decision.Status.RELEASED}


@pytest.fixture
def world() -> World:
    return build_world()


def trail(decision: Decision) -> list[str]:
    return list(
        AuditEvent.objects.filter(target_id=str(decision.pk))
        .order_by("id")
        .values_list("event", flat=True)
    )


def open_edit(page, login, decision: Decision, username: str = "rita"):
    reviewer(username=username)
    login(page, username, next=f"/inbox/{decision.pk}/")
    page.locator("#edit-button").click()
    expect(page.get_by_role("button", name="Approve edited action")).to_be_visible()


def refused_in_form(page, text: str) -> None:
    form = page.locator(".edit-form")
    expect(form.locator(".alert-error")).to_contain_text(text)
    expect(page.get_by_role("button", name="Approve edited action")).to_be_visible()


def assert_only_the_attempt_was_recorded(decision: Decision) -> None:
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING
    assert decision.approved_params is None
    assert not Review.objects.filter(decision=decision).exists()
    assert trail(decision) == ["decision.submitted", "decision.edit_refused"]


def test_edits_outside_the_grant_are_refused_in_the_form(page, login, world):
    refund = world.refund_of(480)
    open_edit(page, login, refund)
    page.get_by_label("Amount").fill("9999")
    page.get_by_role("button", name="Approve edited action").click()
    refused_in_form(page, "params.amount <= 500")
    expect(page.locator("#inbox .messages")).to_contain_text("Edit refused.")
    assert_only_the_attempt_was_recorded(refund)

    payment = world.payment_of(720)
    page.goto(f"/inbox/{payment.pk}/edit/")
    page.get_by_label("Amount").fill("900000")
    page.get_by_label("Iban").fill(NEW_IBAN)
    page.get_by_role("button", name="Approve edited action").click()
    refused_in_form(page, "params.amount <= 50000")
    assert_only_the_attempt_was_recorded(payment)

    mail = world.email_to("buyer@suppliers.example")
    page.goto(f"/inbox/{mail.pk}/edit/")
    page.get_by_label("To", exact=True).fill("attacker@evil.example")
    page.get_by_role("button", name="Approve edited action").click()
    refused_in_form(page, "grant constraint")
    assert_only_the_attempt_was_recorded(mail)


def test_an_edit_that_breaks_the_schema_is_refused_and_audited(page, login, world):
    payment = world.payment_of(720)
    open_edit(page, login, payment)
    page.get_by_label("Iban").fill("not an iban")
    page.get_by_role("button", name="Approve edited action").click()
    expect(page.locator(".edit-form .field-error")).to_contain_text("does not match")
    assert_only_the_attempt_was_recorded(payment)


def test_an_edit_a_deny_rule_names_is_refused_naming_the_rule(page, login, world):
    mail = world.email_to("buyer@suppliers.example")
    open_edit(page, login, mail)
    page.get_by_label("To", exact=True).fill("ceo@rival.example")
    page.get_by_role("button", name="Approve edited action").click()
    refused_in_form(page, "never-email-rivals")
    assert_only_the_attempt_was_recorded(mail)


def test_an_edit_that_needs_two_approvers_waits_for_a_second_reviewer(page, login, world):
    payment = world.payment_of(720)
    open_edit(page, login, payment)
    page.get_by_label("Amount").fill("5000")
    page.get_by_label("Iban").fill(NEW_IBAN)
    page.get_by_role("button", name="Approve edited action").click()
    expect(page.locator("#inbox .messages")).to_contain_text("need 2 approvals")
    payment.refresh_from_db()
    assert payment.status == Decision.Status.PENDING
    assert (payment.required_approvals, payment.risk, payment.policy_rule) == (
        2,
        "high",
        "two-approvers-over-1000",
    )
    # The editor's approval counts as one, so its attention is recorded (issue 17).
    assert trail(payment) == [
        "decision.submitted",
        "decision.edit_proposed",
        "review.attention_recorded",
    ]

    page.goto(f"/inbox/{payment.pk}/")
    detail = page.locator("#decision-detail")
    expect(detail.locator('[data-fact="approvals"]')).to_have_text("1 of 2 approvals")
    expect(detail.locator('[data-notice="edited"]')).to_be_visible()
    expect(detail).to_contain_text("5000")
    page.context.clear_cookies()

    second = world.email_to("buyer@suppliers.example")  # keeps the inbox non-empty afterwards
    reviewer(username="sam")
    login(page, "sam", next=f"/inbox/{payment.pk}/")
    page.locator("#approve-button").click()
    # An irreversible payment at high risk: the approval is confirmed (issue 13, item 2).
    page.locator("#confirm-approve-button").click()
    expect(page.locator("#decision-detail")).to_have_attribute("data-decision-id", str(second.pk))
    payment.refresh_from_db()
    assert payment.status in APPROVED
    assert payment.approved_params == {"amount": 5000, "iban": NEW_IBAN}


def test_earlier_approvals_no_longer_count_after_an_edit(page, login, world):
    payment = world.payment_of(5000)
    services.decision_approve(decision=payment, reviewer=reviewer(username="amy"))
    open_edit(page, login, payment)
    page.get_by_label("Amount").fill("6000")
    page.get_by_role("button", name="Approve edited action").click()
    expect(page.locator("#inbox .messages")).to_contain_text("need 2 approvals")
    page.goto(f"/inbox/{payment.pk}/")
    detail = page.locator("#decision-detail")
    expect(detail.locator('[data-notice="stale-approvals"]')).to_contain_text(
        "Approvals given to the earlier params no longer count"
    )
    expect(detail.locator("[data-stale-approval]")).to_contain_text("amy")
    expect(detail.locator('[data-fact="approvals"]')).to_have_text("1 of 2 approvals")
    payment.refresh_from_db()
    assert payment.status == Decision.Status.PENDING


def test_an_edit_to_a_new_destination_waits_for_a_second_reviewer(page, login, world):
    mail = world.email_to("buyer@suppliers.example")
    open_edit(page, login, mail)
    page.get_by_label("To", exact=True).fill("buyer@partners.example")
    page.get_by_role("button", name="Approve edited action").click()
    expect(page.locator("#inbox .messages")).to_contain_text("need 2 approvals (High risk)")
    mail.refresh_from_db()
    assert mail.status == Decision.Status.PENDING
    assert (mail.required_approvals, mail.risk) == (2, "high")
    page.goto(f"/inbox/{mail.pk}/")
    expect(page.locator("#decision-detail .anomalies")).to_contain_text("partners.example")


def test_an_edit_within_the_gate_is_approved_and_released(page, login, world):
    refund = world.refund_of(480)
    open_edit(page, login, refund)
    page.get_by_label("Amount").fill("450")
    page.get_by_role("button", name="Approve edited action").click()
    expect(page.locator("#inbox .messages")).to_contain_text("Edited and approved:")
    refund.refresh_from_db()
    # Released at once in-process; with a broker, a worker releases it.
    assert refund.status in APPROVED
    assert refund.approved_params == {"amount": 450, "order": "A-1001"}
    assert refund.params == {"amount": 480, "order": "A-1001"}
