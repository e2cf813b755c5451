import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from approvals import services
from approvals.models import Decision, Review
from audit.models import AuditEvent
from tests.factories import (
    ActionTypeFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    agent_admin,
    agent_with_policy,
    auditor,
    email_schema,
    reviewer,
)

pytestmark = pytest.mark.django_db

SCHEMA = email_schema(subject_max=120, priority={"type": "string", "enum": ["low", "high"]})
POLICY = [
    {"id": "crm-bulk", "action": "crm.update", "outcome": "review", "risk": "low", "bulk": True},
    {
        "id": "big",
        "action": "email.send",
        "when": "size(params.to) > 3",
        "outcome": "review",
        "approvals": 2,
        "risk": "critical",
    },
    {"id": "mail", "action": "email.send", "outcome": "review", "risk": "medium", "ttl": "2h"},
]


@pytest.fixture
def world():
    owner = UserFactory(username="owner")
    agent = agent_with_policy(slug="sdr", name="SDR agent", owner=owner, number=4, policy=POLICY)
    email = ActionTypeFactory(
        key="email.send",
        summary_template="Email to {to}: {subject}",
        params_schema=SCHEMA,
        irreversible=True,
    )
    crm = ActionTypeFactory(key="crm.update", summary_template="Set {field}", params_schema={})
    # A reviewer's edit passes the agent's gate, so the agent holds the grants.
    GrantFactory(agent=agent, action_type=email)
    GrantFactory(agent=agent, action_type=crm)
    return {"agent": agent, "owner": owner, "email": email, "crm": crm}


def submit(world, *, to=("lead@example.com",), subject="Pricing", action="email", **extra):
    params = (
        {"to": list(to), "subject": subject, "body": "Hi there"}
        if action == "email"
        else {"field": "stage"}
    )
    return services.decision_create(
        agent=world["agent"],
        action_type=world[action],
        params=params,
        reasoning=extra.get("reasoning", "Asked for pricing."),
        evidence=extra.get("evidence", {"signal": "reply"}),
        confidence=0.8,
    )


@pytest.fixture
def rita(client):
    user = reviewer(username="rita")
    client.force_login(user)
    return user


URLS = [
    ("get", "/inbox/"),
    ("get", "/inbox/counter/"),
    ("get", "/inbox/{id}/"),
    ("get", "/inbox/{id}/edit/"),
    ("post", "/inbox/{id}/approve/"),
    ("post", "/inbox/{id}/reject/"),
    ("post", "/inbox/bulk-approve/"),
]


@pytest.mark.parametrize(("method", "url"), URLS)
def test_anonymous_users_are_sent_to_login(client, world, method, url):
    decision = submit(world)
    response = getattr(client, method)(url.format(id=decision.pk))
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


@pytest.mark.parametrize("make_user", [auditor, agent_admin])
@pytest.mark.parametrize(("method", "url"), URLS)
def test_auditors_and_agent_admins_are_forbidden(client, world, make_user, method, url):
    decision = submit(world)
    client.force_login(make_user())
    response = getattr(client, method)(url.format(id=decision.pk), {"reason": "x"})
    assert response.status_code == 403
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING
    assert not Review.objects.exists()


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", "/inbox/"),
        ("get", "/inbox/{id}/approve/"),
        ("get", "/inbox/{id}/reject/"),
        ("get", "/inbox/bulk-approve/"),
        ("post", "/inbox/counter/"),
    ],
)
def test_wrong_methods_are_refused(client, world, rita, method, url):
    decision = submit(world)
    assert getattr(client, method)(url.format(id=decision.pk)).status_code == 405


def test_unknown_decisions_are_not_found(client, rita):
    assert client.get("/inbox/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert client.get("/inbox/not-a-uuid/").status_code == 404


def test_the_list_is_ordered_by_risk_then_nearest_expiry(client, world, rita):
    medium = submit(world, subject="medium")
    critical = submit(world, to=[f"p{i}@example.com" for i in range(5)], subject="critical")
    low = submit(world, action="crm")
    with time_machine.travel(timezone.now() - timedelta(minutes=30)):
        medium_sooner = submit(world, subject="sooner")
    response = client.get("/inbox/")
    assert response.status_code == 200
    ids = [str(d.pk) for d in response.context["page"].decisions]
    assert ids == [str(x.pk) for x in (critical, medium_sooner, medium, low)]
    assert response.context["decision"].pk == critical.pk


def test_filters_are_kept_in_the_url_and_applied(client, world, rita):
    submit(world)
    crm = submit(world, action="crm")
    response = client.get("/inbox/", {"action": "crm.update", "risk": "low", "age": "lt1h"})
    assert [d.pk for d in response.context["page"].decisions] == [crm.pk]
    html = response.content.decode()
    assert f'href="/inbox/{crm.pk}/?action=crm.update&amp;risk=low&amp;age=lt1h"' in html
    stale = client.get("/inbox/", {"age": "gt24h"})
    assert stale.context["page"].decisions == []
    nonsense = client.get("/inbox/", {"risk": "<script>", "age": "forever", "after": "!!"})
    assert nonsense.status_code == 200


def test_htmx_requests_get_only_the_fragment(client, world, rita):
    submit(world)
    response = client.get("/inbox/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="inbox"')
    assert "<html" not in html
    counter = client.get("/inbox/counter/", headers={"HX-Request": "true"}).content.decode()
    assert counter.lstrip().startswith('<div id="inbox-counter"')


def test_the_counter_shows_pending_and_sla_breaches(client, world, rita):
    with time_machine.travel(timezone.now() - timedelta(hours=5)):
        submit(world, subject="old")
    submit(world, subject="new")
    response = client.get("/inbox/counter/")
    assert response.context["counts"] == {"pending": 2, "breaches": 1}
    assert 'hx-trigger="every 15s"' in response.content.decode()


def test_keyset_pages_run_a_constant_number_of_queries(
    client, world, rita, django_assert_max_num_queries
):
    for i in range(30):
        submit(world, subject=f"s{i}")
    with django_assert_max_num_queries(16) as small:
        client.get("/inbox/")
    for i in range(60):
        submit(world, subject=f"t{i}", action="crm")
    with django_assert_max_num_queries(len(small.captured_queries)):
        first = client.get("/inbox/")
    cursor = first.context["page"].next_cursor
    assert cursor
    with django_assert_max_num_queries(len(small.captured_queries)):
        second = client.get("/inbox/", {"after": cursor})
    seen = {d.pk for d in first.context["page"].decisions} | {
        d.pk for d in second.context["page"].decisions
    }
    assert len(seen) == 50


def test_the_detail_shows_the_action_reasoning_route_and_record(client, world, rita):
    past = submit(world, subject="Earlier")
    services.decision_reject(decision=past, reviewer=reviewer(), reason="Tone")
    decision = submit(world, to=[f"p{i}@example.com" for i in range(4)], subject="Launch")
    services.decision_approve(decision=decision, reviewer=reviewer(username="ops"))
    response = client.get(f"/inbox/{decision.pk}/")
    html = response.content.decode()
    assert "Email to p0@example.com, p1@example.com, p2@example.com, p3@example.com: Launch" in html
    assert "What the agent detected" in html and "Why" in html
    assert html.count("written by the agent") == 2
    assert "big" in html and "1 of 2 approvals" in html
    assert "behaviour v4" in html
    assert "Confidence 80%" in html
    assert response.context["record"]["history"][0].pk == past.pk
    assert response.context["record"]["approval_rate"] == 0


def test_long_param_values_are_folded(client, world, rita):
    decision = services.decision_create(
        agent=world["agent"],
        action_type=world["email"],
        params={"to": ["a@example.com"], "subject": "s", "body": "word " * 200},
        reasoning="r",
    )
    html = client.get(f"/inbox/{decision.pk}/").content.decode()
    assert re.search(r'<details class="fold"><summary>word word', html)


def test_agent_text_is_escaped_inside_an_hx_disable_container(client, world, rita):
    decision = submit(
        world,
        subject='=HYPERLINK("http://evil") <img src=x onerror=alert(1)>',
        reasoning="<script>alert(1)</script>\r\nApproved: yes",
        evidence={"note": '<b hx-get="/admin/" hx-trigger="load">x</b>', "n": "+1-555 @SUM(1)"},
    )
    response = client.get(f"/inbox/{decision.pk}/")
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'hx-get="/admin/"' not in html
    assert "&lt;b hx-get=&quot;/admin/&quot;" in html
    assert "<img src=x" not in html
    body = html.split('id="decision-detail"', 1)[1]
    assert body.index("hx-disable") < body.index("&lt;script&gt;")
    csp = response["Content-Security-Policy"]
    assert "'nonce-" in csp and "unsafe-eval" not in csp and "unsafe-inline" not in csp


def test_approve_moves_to_the_next_decision(client, world, rita):
    first = submit(world, to=[f"p{i}@example.com" for i in range(5)])
    second = submit(world)
    # High risk and irreversible: the approval carries its confirmation (issue 13, item 2).
    response = client.post(
        f"/inbox/{first.pk}/approve/",
        {"params_hash": services.params_fingerprint(first.params), "confirmed": "1"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert response.context["decision"].pk == second.pk
    assert response["HX-Push-Url"] == f"/inbox/{second.pk}/"
    first.refresh_from_db()
    assert first.status == Decision.Status.PENDING  # it needs two
    assert first.reviews.get().reviewer == rita


def test_approve_without_htmx_redirects_and_audits(client, world, rita):
    decision = submit(world)
    response = client.post(
        f"/inbox/{decision.pk}/approve/",
        {"params_hash": services.params_fingerprint(decision.params)},
    )
    assert response.status_code == 302
    decision.refresh_from_db()
    assert decision.status == Decision.Status.APPROVED
    assert decision.decided_by == rita
    events = AuditEvent.objects.filter(target_id=str(decision.pk)).values_list("event", flat=True)
    # Every approval records its attention row (here: from the inbox, nothing measured).
    assert list(events) == [
        "decision.submitted",
        "decision.review_added",
        "decision.approved",
        "review.attention_recorded",
    ]


def test_a_flash_message_shows_once_on_the_full_page(client, world, rita):
    decision = submit(world)
    response = client.post(
        f"/inbox/{decision.pk}/approve/",
        {"params_hash": services.params_fingerprint(decision.params)},
        follow=True,
    )
    assert response.content.decode().count(f"Approved: {decision.summary}") == 1


def test_a_flash_message_shows_once_in_the_htmx_fragment(client, world, rita):
    decision = submit(world)
    response = client.post(
        f"/inbox/{decision.pk}/approve/",
        {"params_hash": services.params_fingerprint(decision.params)},
        headers={"HX-Request": "true"},
    )
    assert response.content.decode().count(f"Approved: {decision.summary}") == 1


def test_approve_with_a_stale_params_hash_is_refused(client, world, rita):
    decision = submit(world)
    response = client.post(f"/inbox/{decision.pk}/approve/", {"params_hash": "0" * 64}, follow=True)
    assert "changed since you opened it" in response.content.decode()
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING
    assert not decision.reviews.exists()


def test_the_owner_cannot_approve_their_agents_decisions(client, world):
    world["owner"].groups.add(*reviewer().groups.all())
    client.force_login(world["owner"])
    decision = submit(world)
    html = client.get(f"/inbox/{decision.pk}/").content.decode()
    assert 'id="approve-button"' not in html
    response = client.post(
        f"/inbox/{decision.pk}/approve/",
        {"params_hash": services.params_fingerprint(decision.params)},
        follow=True,
    )
    assert "You own this agent" in response.content.decode()
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING


def test_acting_on_a_decided_decision_says_who_decided(client, world, rita):
    decision = submit(world)
    services.decision_reject(decision=decision, reviewer=reviewer(username="sam"), reason="No")
    response = client.post(
        f"/inbox/{decision.pk}/approve/",
        {"params_hash": services.params_fingerprint(decision.params)},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "Already rejected by sam." in response.content.decode()


def test_reject_requires_a_reason_and_keeps_tags(client, world, rita):
    decision = submit(world)
    response = client.post(f"/inbox/{decision.pk}/reject/", {"reason": "  "})
    assert response.status_code == 400
    assert "Say why" in response.content.decode()
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING
    client.post(
        f"/inbox/{decision.pk}/reject/",
        {"reason": "Wrong recipient: unsubscribed", "tags": ["wrong recipient", "bogus"]},
    )
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING  # an unknown tag is invalid
    client.post(
        f"/inbox/{decision.pk}/reject/",
        {"reason": "Wrong recipient: unsubscribed", "tags": ["wrong recipient"]},
    )
    decision.refresh_from_db()
    assert decision.status == Decision.Status.REJECTED
    review = decision.reviews.get()
    assert (review.comment, review.tags) == ("Wrong recipient: unsubscribed", ["wrong recipient"])


def test_the_edit_form_is_generated_from_the_schema(client, world, rita):
    decision = submit(world)
    html = client.get(
        f"/inbox/{decision.pk}/edit/", headers={"HX-Request": "true"}
    ).content.decode()
    assert html.lstrip().startswith('<article id="decision-detail"')
    for label in ("To", "Subject", "Body", "Priority"):
        assert f">{label}</label>" in html
    assert 'name="p_subject"' in html and 'maxlength="120"' in html
    assert '<option value="high">' in html


def test_edit_and_approve_validates_against_the_schema_and_keeps_both(client, world, rita):
    decision = submit(world)
    shown = services.params_fingerprint(decision.params)
    bad = client.post(
        f"/inbox/{decision.pk}/edit/",
        {"p_to": "not-an-email", "p_subject": "Hi", "p_body": "b", "params_hash": shown},
    )
    assert bad.status_code == 400
    assert "is not a" in bad.content.decode()
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING
    client.post(
        f"/inbox/{decision.pk}/edit/",
        {
            "p_to": "maria@example.com\nops@example.com",
            "p_subject": "Pricing for 40 seats",
            "p_body": "Hi Maria",
            "p_priority": "high",
            "params_hash": shown,
            "comment": "Added ops in copy",
        },
    )
    decision.refresh_from_db()
    assert decision.status == Decision.Status.APPROVED
    assert decision.params["subject"] == "Pricing"
    assert decision.approved_params == {
        "to": ["maria@example.com", "ops@example.com"],
        "subject": "Pricing for 40 seats",
        "body": "Hi Maria",
        "priority": "high",
    }
    review = decision.reviews.get()
    assert review.verdict == Review.Verdict.EDIT_APPROVE
    assert review.params_before == decision.params


def test_bulk_approve_only_takes_eligible_decisions(client, world, rita):
    crm = [submit(world, action="crm") for _ in range(3)]
    email = submit(world)
    page = client.get("/inbox/")
    assert page.context["bulk_ids"] == {d.pk for d in crm}
    assert f'value="{email.pk}" class="bulk-check"' not in page.content.decode()
    client.post(
        "/inbox/bulk-approve/",
        {"decisions": [str(crm[0].pk), str(crm[1].pk), str(email.pk), "junk"]},
    )
    statuses = {d.pk: d.status for d in Decision.objects.all()}
    assert statuses[email.pk] == Decision.Status.PENDING
    assert statuses[crm[2].pk] == Decision.Status.PENDING
    client.post("/inbox/bulk-approve/", {"decisions": [str(crm[0].pk), str(crm[1].pk)]})
    statuses = {d.pk: d.status for d in Decision.objects.all()}
    assert statuses[crm[0].pk] == statuses[crm[1].pk] == Decision.Status.APPROVED
    assert statuses[email.pk] == Decision.Status.PENDING


def test_bulk_is_never_offered_for_irreversible_two_approver_actions(world):
    rule = [{"id": "r", "outcome": "review", "risk": "low", "bulk": True, "approvals": 2}]
    world["agent"].active_behaviour = BehaviourVersionFactory(
        agent=world["agent"], number=9, policy=rule
    )
    decision = submit(world)
    assert decision.bulk_allowed and decision.risk == "low"
    assert not services.is_bulk_approvable(decision)


def test_row_links_open_the_decision_with_htmx_attributes_and_keep_their_href(client, world, rita):
    decision = submit(world)
    body = client.get("/inbox/?risk=medium").content.decode()
    link = re.search(r'<a class="row-link"[^>]*>', body).group(0)
    url = f"/inbox/{decision.pk}/?risk=medium"
    assert f'href="{url}"' in link
    assert f'hx-get="{url}"' in link
    assert 'hx-target="#decision-detail"' in link
    assert 'hx-push-url="true"' in link
