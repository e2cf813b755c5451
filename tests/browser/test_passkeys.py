"""Passkeys and passkey-signed approvals in Chromium, with its virtual authenticator (CDP)."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from playwright.sync_api import expect

from approvals.models import Decision, Passkey, Review, ReviewAttention, ReviewSignature
from approvals.services import decision_create
from audit.models import AuditEvent
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    reviewer,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

POLICY = [
    {
        "id": "signed-payments",
        "action": "payment.transfer",
        "outcome": "review",
        "step_up": "passkey",
    },
]
APPROVED = {Decision.Status.APPROVED, Decision.Status.RELEASING, Decision.Status.RELEASED}


@pytest.fixture
def payments():
    action = ActionTypeFactory(
        key="payment.transfer",
        name="Transfer money",
        summary_template="Pay {amount} to {to}",
        params_schema={"type": "object"},
        irreversible=True,
    )
    agent = AgentFactory(slug="billing", owner=UserFactory(username="owen"))
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=1, policy=POLICY)
    agent.save()
    GrantFactory(agent=agent, action_type=action)

    def pay(amount: int, to: str = "ACME Ltd") -> Decision:
        return decision_create(
            agent=agent,
            action_type=action,
            params={"amount": amount, "to": to},
            reasoning="Invoice",
        )

    return pay


def virtual_authenticator(page) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )


def register_passkey(page, name="Work laptop") -> Passkey:
    page.goto("/profile/passkeys/")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Register a passkey").click()
    expect(page.locator("#passkey-table")).to_contain_text(name)
    return Passkey.objects.get(name=name)


def verify_approvals() -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit_verify", "--approvals", "--workers", "1", stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue() + str(exc)
    return out.getvalue(), err.getvalue()


def test_a_reviewer_registers_a_passkey_signs_an_approval_and_tampering_is_caught(
    page, login, payments
):
    rita = reviewer(username="rita")
    decision = payments(5000)
    login(page, "rita", next="/profile/passkeys/")
    virtual_authenticator(page)

    passkey = register_passkey(page)

    assert passkey.user == rita and passkey.is_active
    assert AuditEvent.objects.filter(event="passkey.registered", target_id=str(passkey.pk)).exists()

    page.goto(f"/inbox/{decision.pk}/")
    expect(page.locator("#step-up-notice")).to_contain_text("signed with your passkey")
    page.get_by_role("button", name="Approve with passkey").click()
    expect(page.get_by_text("Approved: Pay 5000 to ACME Ltd").first).to_be_visible()

    decision.refresh_from_db()
    assert decision.status in APPROVED
    signature = ReviewSignature.objects.get(review__decision=decision)
    assert signature.passkey == passkey
    assert signature.statement["decision"] == str(decision.pk)
    assert signature.statement["reviewer"] == rita.pk
    event = AuditEvent.objects.get(event="decision.review_added", target_id=str(decision.pk))
    assert event.data["signed"] is True
    assert event.data["signature"]["credential_id"] == passkey.credential_id
    assert event.data["signature"]["signature"] == signature.signature
    out, err = verify_approvals()
    assert "signed approvals verified: 1" in out, err
    # The step-up form carries the page's render time: the approval's attention is kept.
    attention = ReviewAttention.objects.get(review__decision=decision)
    assert attention.via == ReviewAttention.Via.PASSKEY
    assert attention.seconds_on_screen is not None and attention.seconds_on_screen >= 0

    # Someone with the database rewrites what was approved.
    Decision.objects.filter(pk=decision.pk).update(
        params={"amount": 50000, "to": "Mallory"},
        approved_params={"amount": 50000, "to": "Mallory"},
    )
    out, err = verify_approvals()
    assert str(decision.pk) in err
    assert "1 of 1 signed approvals do not verify" in err

    # Revoking stops the passkey signing; what it signed stays on record.
    page.goto("/profile/passkeys/")
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("#passkey-table")).to_contain_text("revoked")
    passkey.refresh_from_db()
    assert not passkey.is_active
    assert AuditEvent.objects.filter(event="passkey.revoked", target_id=str(passkey.pk)).exists()


def test_an_assertion_for_one_decision_is_refused_on_another(page, login, payments):
    reviewer(username="rita")
    first, second = payments(100), payments(200)
    login(page, "rita", next="/profile/passkeys/")
    virtual_authenticator(page)
    register_passkey(page)
    page.goto(f"/inbox/{first.pk}/")

    assertion = page.evaluate(
        """async (url) => {
            const body = await (await fetch(url)).json();
            const options = JSON.parse(body.options);
            const credential = await navigator.credentials.get(
                {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
            return JSON.stringify(credential.toJSON());
        }""",
        f"/inbox/{first.pk}/step-up/",
    )
    token = page.locator("input[name=csrfmiddlewaretoken]").first.input_value()

    def approve(decision, params_hash):
        return page.request.post(
            f"/inbox/{decision.pk}/approve/",
            form={"csrfmiddlewaretoken": token, "params_hash": params_hash, "assertion": assertion},
            headers={"Referer": page.url},
        )

    from approvals.services import params_fingerprint

    replayed = approve(second, params_fingerprint(second.params))
    second.refresh_from_db()
    assert replayed.status < 500
    assert "The passkey signature does not match this approval" in replayed.text()
    assert second.status == Decision.Status.PENDING
    assert not Review.objects.filter(decision=second).exists()

    approve(first, params_fingerprint(first.params))
    first.refresh_from_db()
    assert first.status in APPROVED


def test_a_reviewer_without_a_passkey_is_told_how_to_register_one(page, login, payments):
    reviewer(username="rita")
    decision = payments(300)
    login(page, "rita", next=f"/inbox/{decision.pk}/")

    notice = page.locator("#step-up-notice")
    expect(notice).to_contain_text("You have no passkey")
    page.get_by_role("button", name="Approve with passkey").click()
    expect(page.locator("#step-up-error")).to_contain_text("Register one on your Passkeys page")
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING

    notice.get_by_role("link", name="register one on your Passkeys page").click()
    page.wait_for_url("**/profile/passkeys/")
    assert json.dumps(page.locator("#no-passkeys").inner_text())
