"""Passkeys and step-up approvals through services, views and the verify command.

Real WebAuthn ceremonies run in Chromium's virtual authenticator: tests/browser/test_passkeys.py.
"""

import io
import json
from urllib.parse import quote

import pytest
from django.core.management import call_command

from agents.policy_rules import validate_policy
from approvals import passkeys, services
from approvals.models import Decision, Passkey, Review
from approvals.services import decision_create
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    reviewer,
)
from tests.site.test_settings_env import SECRET, run_django

pytestmark = pytest.mark.django_db
RP = passkeys.RelyingParty(id="testserver", origin="http://testserver")
POLICY = [
    {
        "id": "signed-routine",
        "action": "crm.note",
        "outcome": "review",
        "risk": "low",
        "bulk": True,
        "step_up": "passkey",
    },
    {
        "id": "critical-payments",
        "action": "payment.transfer",
        "when": "params.amount > 1000",
        "outcome": "review",
        "risk": "critical",
    },
    {"id": "payments", "action": "payment.transfer", "outcome": "review", "risk": "high"},
]


@pytest.fixture
def submit():
    note = ActionTypeFactory(key="crm.note", params_schema={"type": "object"})
    payment = ActionTypeFactory(key="payment.transfer", params_schema={"type": "object"})
    agent = AgentFactory(owner=UserFactory(username="owen"))
    agent.active_behaviour = BehaviourVersionFactory(agent=agent, number=1, policy=POLICY)
    agent.save()
    GrantFactory(agent=agent, action_type=note)
    GrantFactory(agent=agent, action_type=payment)
    actions = {"note": note, "payment": payment}

    def submit(kind: str, **params) -> Decision:
        return decision_create(
            agent=agent, action_type=actions[kind], params=params, reasoning="Because"
        )

    return submit


@pytest.fixture
def rita():
    return reviewer(username="rita")


def a_passkey(user, name="Laptop") -> Passkey:
    credential_id = passkeys.bytes_to_base64url(f"cred-{user.pk}-{name}".encode())
    return Passkey.objects.create(
        user=user, credential_id=credential_id, public_key=b"\x00", name=name
    )


def post_form(client, path, fields: dict):
    """POST urlencoded, with lone surrogates sent as the raw bytes a hostile client would."""
    body = "&".join(
        f"{quote(key)}={quote(value.encode('utf-8', 'surrogatepass'))}"
        for key, value in fields.items()
    )
    return client.post(path, body, content_type="application/x-www-form-urlencoded")


def test_a_policy_rule_may_require_a_passkey_step_up():
    rules = [{"id": "r", "outcome": "review", "step_up": "passkey"}]
    assert validate_policy(rules, irreversible_actions={}) == []
    problems = validate_policy(
        [{"id": "r", "outcome": "review", "step_up": "sms"}], irreversible_actions={}
    )
    assert [str(p) for p in problems] == ["policy[0].step_up: must be passkey"]


def test_a_step_up_rule_makes_the_decision_need_a_signed_approval(submit, rita):
    decision = submit("note", title="Hello")

    assert passkeys.step_up_required(decision)
    with pytest.raises(services.StepUpRequired, match="Register one on your Passkeys page"):
        services.decision_approve(decision=decision, reviewer=rita, relying_party=RP)
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING
    assert not Review.objects.filter(decision=decision).exists()


def test_the_default_step_up_risk_applies_to_decisions_at_or_above_it(submit, rita, settings):
    settings.AISPM_STEP_UP_DEFAULT_RISK = "critical"
    critical = submit("payment", amount=5000)
    high = submit("payment", amount=50)

    assert passkeys.step_up_required(critical)
    assert not passkeys.step_up_required(high)
    with pytest.raises(services.StepUpRequired):
        services.decision_approve(decision=critical, reviewer=rita, relying_party=RP)
    assert services.decision_approve(decision=high, reviewer=rita).status != "pending"


def test_bulk_approval_never_covers_a_step_up_decision(submit, rita):
    decision = submit("note", title="Routine")
    assert services.is_bulk_approvable(decision)

    result = services.decision_bulk_approve(decisions=[decision], reviewer=rita)

    assert result.approved == []
    assert "passkey" in result.skipped[0][1]
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING


def test_the_statement_binds_decision_params_version_approvals_and_reviewer(submit, rita):
    decision = submit("note", title="Hello")
    statement = passkeys.step_up_statement(decision=decision, params=decision.params, reviewer=rita)

    assert statement == {
        "context": "aispm.approve",
        "decision": str(decision.pk),
        "params_sha256": services.params_fingerprint(decision.params),
        "behaviour_version": 1,
        "required_approvals": 1,
        "reviewer": rita.pk,
    }
    other = passkeys.step_up_statement(decision=decision, params={"title": "x"}, reviewer=rita)
    assert passkeys.step_up_challenge(statement) != passkeys.step_up_challenge(other)


def test_a_reviewer_without_a_passkey_is_told_in_the_inbox_how_to_register_one(
    client, submit, rita
):
    decision = submit("note", title="Hello")
    client.force_login(rita)

    page = client.get(f"/inbox/{decision.pk}/").content.decode()
    options = client.get(f"/inbox/{decision.pk}/step-up/")

    assert "You have no passkey" in page and 'href="/profile/passkeys/"' in page
    assert 'id="edit-button"' not in page  # signed edits are not supported yet
    assert options.status_code == 409
    assert options.json()["register_url"] == "/profile/passkeys/"
    approve = client.post(
        f"/inbox/{decision.pk}/approve/",
        {"params_hash": services.params_fingerprint(decision.params)},
        follow=True,
    )
    assert "Register one on your Passkeys page" in approve.content.decode()


def test_step_up_options_carry_the_derived_challenge(client, submit, rita):
    decision = submit("note", title="Hello")
    passkey = a_passkey(rita)
    client.force_login(rita)

    options = json.loads(client.get(f"/inbox/{decision.pk}/step-up/").json()["options"])

    statement = passkeys.step_up_statement(decision=decision, params=decision.params, reviewer=rita)
    assert options["challenge"] == passkeys.bytes_to_base64url(
        passkeys.step_up_challenge(statement)
    )
    assert options["userVerification"] == "required"
    assert [c["id"] for c in options["allowCredentials"]] == [passkey.credential_id]


def test_step_up_options_are_for_reviewers_only(client, submit):
    decision = submit("note", title="Hello")
    client.force_login(UserFactory())

    assert client.get(f"/inbox/{decision.pk}/step-up/").status_code == 403
    client.logout()
    assert client.get(f"/inbox/{decision.pk}/step-up/").status_code == 302


def test_the_passkeys_page_lists_only_the_users_own_passkeys(client, rita):
    a_passkey(rita, "Mine")
    a_passkey(UserFactory(), "Theirs")
    client.force_login(rita)

    html = client.get("/profile/passkeys/").content.decode()

    assert "Mine" in html and "Theirs" not in html


def test_passkey_pages_need_a_login_and_the_right_method(client, rita):
    assert client.get("/profile/passkeys/").status_code == 302
    client.force_login(rita)
    assert client.get("/profile/passkeys/register/").status_code == 405
    assert client.get("/profile/passkeys/options/").status_code == 405
    passkey = a_passkey(rita)
    assert client.get(f"/profile/passkeys/{passkey.pk}/revoke/").status_code == 405


def test_nobody_revokes_another_users_passkey(client, rita):
    theirs = a_passkey(UserFactory())
    client.force_login(rita)

    assert client.post(f"/profile/passkeys/{theirs.pk}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.is_active


def test_revoking_is_audited_and_a_revoked_passkey_signs_nothing(client, submit, rita):
    from audit.models import AuditEvent

    passkey = a_passkey(rita)
    client.force_login(rita)

    client.post(f"/profile/passkeys/{passkey.pk}/revoke/")

    passkey.refresh_from_db()
    assert passkey.revoked_at is not None
    assert (
        AuditEvent.objects.get(event="passkey.revoked").data["credential_id"]
        == passkey.credential_id
    )
    decision = submit("note", title="x")
    assert client.get(f"/inbox/{decision.pk}/step-up/").status_code == 409


HOSTILE = [
    "\x00",
    "\ud800",
    "{}",
    "[]",
    "9" * 400,
    "1e999",
    '{"id": "\u202egnp.exe", "rawId": "x", "response": {}, "type": "public-key"}',
    '{"id": "a", "rawId": "a", "type": "public-key", "response": '
    + "[" * 10_000
    + "]" * 10_000
    + "}",
    json.dumps(
        {
            "id": "a",
            "rawId": "a",
            "type": "public-key",
            "response": {
                "clientDataJSON": "%%%",
                "attestationObject": 2**70,
                "authenticatorData": None,
                "signature": {"a": {"b": {"c": {"d": {"e": {}}}}}},
            },
        }
    ),
    "x" * 1_000_000,
]


@pytest.mark.parametrize("response", HOSTILE)
def test_hostile_registration_responses_are_refused_with_400(client, rita, response):
    client.force_login(rita)
    client.post("/profile/passkeys/options/")

    result = post_form(client, "/profile/passkeys/register/", {"name": "Key", "response": response})

    # A form body over the 256 KiB limit is refused (413) before anything parses it.
    too_large = len(response.encode("utf-8", "surrogatepass")) > 256 * 1024
    assert result.status_code == (413 if too_large else 400)
    assert not Passkey.objects.exists()


@pytest.mark.parametrize("name", ["", "\x00", "\ud800x", "k" * 101, "\u202eyek"])
def test_hostile_passkey_names_never_cause_a_server_error(client, rita, name):
    client.force_login(rita)
    client.post("/profile/passkeys/options/")

    result = post_form(client, "/profile/passkeys/register/", {"name": name, "response": "{}"})

    assert result.status_code == 400


def test_registering_without_asking_for_options_first_is_refused(client, rita):
    client.force_login(rita)

    result = client.post("/profile/passkeys/register/", {"name": "Key", "response": "{}"})

    assert result.status_code == 400


@pytest.mark.parametrize("assertion", HOSTILE)
def test_hostile_assertions_never_approve_or_cause_a_server_error(client, submit, rita, assertion):
    decision = submit("note", title="Hello")
    a_passkey(rita)
    client.force_login(rita)

    result = post_form(
        client,
        f"/inbox/{decision.pk}/approve/",
        {"params_hash": services.params_fingerprint(decision.params), "assertion": assertion},
    )

    assert result.status_code < 500
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING


def test_audit_verify_approvals_reports_zero_when_nothing_is_signed():
    out = io.StringIO()
    call_command("audit_verify", "--approvals", "--workers", "1", stdout=out)
    assert "signed approvals verified: 0" in out.getvalue()


def test_a_bad_step_up_default_risk_fails_naming_the_variable():
    result = run_django(SECRET_KEY=SECRET, AISPM_STEP_UP_DEFAULT_RISK="extreme")

    assert result.returncode != 0
    assert "AISPM_STEP_UP_DEFAULT_RISK" in result.stderr


def test_exports_say_per_review_whether_it_was_signed_and_with_which_passkey(client, submit):
    import csv

    from approvals.models import ReviewSignature
    from tests.factories import auditor

    decision = submit("payment", amount=50)
    decision = services.decision_approve(decision=decision, reviewer=reviewer(username="sam"))
    two = submit("payment", amount=60)
    services.decision_approve(decision=two, reviewer=reviewer(username="tom"))
    review = Review.objects.get(decision=decision)
    passkey = a_passkey(review.reviewer)
    ReviewSignature.objects.create(
        review=review,
        passkey=passkey,
        statement={},
        credential_id=passkey.credential_id,
        authenticator_data="",
        client_data_json="",
        signature="",
    )
    client.force_login(auditor())

    response = client.get("/audit/export.csv")
    rows = {
        row["decision_id"]: row
        for row in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    }
    events = client.get("/audit/export.jsonl")
    lines = [json.loads(line) for line in b"".join(events.streaming_content).splitlines()]

    assert rows[str(decision.pk)]["review_signed"] == "true"
    assert rows[str(decision.pk)]["review_credentials"] == passkey.credential_id
    assert rows[str(two.pk)]["review_signed"] == "false"
    assert rows[str(two.pk)]["review_credentials"] == ""
    added = [line for line in lines if line["event"] == "decision.review_added"]
    assert {line["data"]["signed"] for line in added} == {False}
