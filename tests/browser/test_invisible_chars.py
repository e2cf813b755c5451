"""Invisible and direction-changing characters are visible text in a real browser.

The suite has no axe-core helper, so the marker's colour contrast is measured here
from the computed styles (WCAG 2 relative luminance, at least 4.5:1), and the page
is photographed at 1280x800 and 390 wide into /tmp for a person to look at.
"""

import pytest
from playwright.sync_api import expect

from approvals.models import Decision
from approvals.services import decision_create
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    reviewer,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RLO = "\u202e"
ZWJ = "\u200d"
SCHEMA = {
    "type": "object",
    "required": ["amount", "iban"],
    "properties": {"amount": {"type": "string"}, "iban": {"type": "string"}},
}

CONTRAST = """(element) => {
  const rgb = (text) => text.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b]
      .map((v) => v / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const style = getComputedStyle(element);
  const [a, b] = [lum(rgb(style.color)), lum(rgb(style.backgroundColor))];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


@pytest.fixture
def hidden() -> Decision:
    action = ActionTypeFactory(
        key="payment.refund",
        name="Refund",
        summary_template="Refund {amount} EUR to {iban}",
        params_schema=SCHEMA,
    )
    agent = AgentFactory(slug="billing", name="Billing agent", owner=UserFactory(username="owen"))
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=1, policy=[])
    agent.save()
    GrantFactory(agent=agent, action_type=action)
    decision = decision_create(
        agent=agent,
        action_type=action,
        params={"amount": f"{RLO}0005", "iban": f"DE89{ZWJ}3704 0044 0532 0130 00"},
        reasoning=f"The customer{ZWJ} was charged twice. <script>alert(1)</script>",
        evidence={"ticket": {"id": "T-1", "note": '<b hx-get="/inbox/">x</b>'}},
    )
    assert decision.status == Decision.Status.PENDING
    return decision


@pytest.mark.parametrize("width", [1280, 390])
def test_the_reviewer_sees_the_hidden_characters_as_marked_text(page, login, hidden, width):
    reviewer(username="rita")
    page.set_viewport_size({"width": width, "height": 800})
    login(page, "rita", next=f"/inbox/{hidden.pk}/")
    detail = page.locator("#decision-detail")

    expect(detail.get_by_role("heading", level=2)).to_have_text(
        "Refund ⟨U+202E⟩0005 EUR to DE89⟨U+200D⟩3704 0044 0532 0130 00"
    )
    warning = detail.locator('[data-warning="invisible-characters"]')
    expect(warning).to_have_count(1)
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("contains invisible or direction-changing characters")
    amount = detail.locator(".params").locator("xpath=dt[.='amount']/following-sibling::dd[1]")
    expect(amount).to_have_text("⟨U+202E⟩0005")
    expect(detail.locator(".reasoning")).to_contain_text("customer⟨U+200D⟩ was charged twice.")
    expect(detail.locator(".reasoning")).to_contain_text("<script>alert(1)</script>")
    expect(page.locator('.inbox-row [data-flag="invisible-characters"]')).to_be_visible()

    marks = detail.locator("mark.invisible-char")
    expect(marks.first).to_be_visible()
    expect(marks.first).to_have_attribute("title", "RIGHT-TO-LEFT OVERRIDE")
    for index in range(marks.count()):
        ratio = marks.nth(index).evaluate(CONTRAST)
        assert ratio >= 4.5, f"marker {index} contrast {ratio:.2f}:1"

    page.screenshot(path=f"/tmp/aispm-invisible-{width}.png", full_page=True)
