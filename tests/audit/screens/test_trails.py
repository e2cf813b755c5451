import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from approvals import services
from approvals.connectors import Delivery
from approvals.models import Decision, Review
from audit.models import AuditEvent
from audit.screens import selectors as trail_selectors
from audit.services import audit_seal
from tests.factories import (
    ActionTypeFactory,
    UserFactory,
    agent_admin,
    agent_with_policy,
    auditor,
    reviewer,
)

pytestmark = pytest.mark.django_db

POLICY = [
    {
        "id": "two-for-big",
        "action": "email.send",
        "when": "size(params.to) > 3",
        "outcome": "review",
        "approvals": 2,
    },
    {"id": "mail", "action": "email.send", "outcome": "review", "reason": "Email is reviewed"},
    {"id": "notes", "action": "note.post", "outcome": "review"},
]


@pytest.fixture
def world():
    owner = UserFactory(username="owner")
    agents = {}
    for slug in ("sdr", "support"):
        agents[slug] = agent_with_policy(
            slug=slug, name=f"{slug.upper()} agent", owner=owner, number=3, policy=POLICY
        )
    email = ActionTypeFactory(key="email.send", summary_template="Email to {to}: {subject}")
    note = ActionTypeFactory(key="note.post", summary_template="{text}")
    return {"agents": agents, "email.send": email, "note.post": note}


def submit(world, *, agent="sdr", action="email.send", to=1, reasoning="Asked for pricing.", **kw):
    params = kw.pop("params", None) or (
        {"to": [f"p{i}@example.com" for i in range(to)], "subject": "Pricing", "body": "Hi"}
        if action == "email.send"
        else {"text": "A note"}
    )
    return services.decision_create(
        agent=world["agents"][agent],
        action_type=world[action],
        params=params,
        reasoning=reasoning,
        evidence=kw.pop("evidence", {"signal": "reply"}),
        confidence=0.8,
        **kw,
    )


@pytest.fixture
def audrey(client):
    user = auditor(username="audrey")
    client.force_login(user)
    return user


def listed(response) -> list:
    return [d.pk for d in response.context["page"].decisions]


# --- who may look --------------------------------------------------------------------

URLS = ["/audit/", "/audit/decisions/{id}/"]


@pytest.mark.parametrize("url", URLS)
def test_anonymous_users_are_sent_to_login(client, world, url):
    decision = submit(world)
    response = client.get(url.format(id=decision.pk))
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


@pytest.mark.parametrize("make_user", [reviewer, agent_admin, UserFactory])
@pytest.mark.parametrize("url", URLS)
def test_reviewers_and_agent_admins_cannot_search_or_read_trails(client, world, make_user, url):
    decision = submit(world)
    client.force_login(make_user())
    assert client.get(url.format(id=decision.pk)).status_code == 403


@pytest.mark.parametrize("url", URLS)
def test_wrong_methods_are_refused(client, world, audrey, url):
    decision = submit(world)
    for method in ("post", "put", "delete"):
        assert getattr(client, method)(url.format(id=decision.pk)).status_code == 405


def test_superusers_can_search_and_read_trails(client, world):
    decision = submit(world)
    client.force_login(UserFactory(is_superuser=True))
    assert client.get("/audit/").status_code == 200
    assert client.get(f"/audit/decisions/{decision.pk}/").status_code == 200


def test_auditors_cannot_act_on_decisions(client, world, audrey):
    decision = submit(world)
    assert client.get("/inbox/").status_code == 403
    assert client.get(f"/inbox/{decision.pk}/").status_code == 403
    approve = client.post(f"/inbox/{decision.pk}/approve/", {"params_hash": "x"})
    reject = client.post(f"/inbox/{decision.pk}/reject/", {"reason": "no"})
    bulk = client.post("/inbox/bulk-approve/", {"decisions": [str(decision.pk)]})
    assert (approve.status_code, reject.status_code, bulk.status_code) == (403, 403, 403)
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING
    assert not Review.objects.exists()


def test_auditors_cannot_change_configuration(client, world, audrey):
    assert client.get("/agents/").status_code == 403
    # Not staff: the admin sends them to its own login rather than show a change form.
    response = client.get("/admin/agents/agent/add/")
    assert response.status_code == 302
    assert "/admin/login/" in response.url


def test_unknown_decisions_are_not_found(client, audrey):
    assert client.get("/audit/decisions/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert client.get("/audit/decisions/not-a-uuid/").status_code == 404


# --- search ----------------------------------------------------------------------------


def test_it_lists_decisions_newest_first_with_links_to_their_trails(client, world, audrey):
    old = submit(world)
    with time_machine.travel(timezone.now() + timedelta(minutes=5)):
        new = submit(world)
    response = client.get("/audit/")
    assert response.status_code == 200
    assert listed(response) == [new.pk, old.pk]
    html = response.content.decode()
    assert f'href="/audit/decisions/{new.pk}/"' in html
    assert 'href="/audit/export.csv"' in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"agent": "support"}, {"support"}),
        ({"action": "note.post"}, {"note"}),
        ({"status": "rejected"}, {"rejected"}),
        ({"reviewer": "rita"}, {"rejected", "approved"}),
        ({"reviewer": "nobody-by-that-name"}, set()),
        ({"q": "COMPETITOR"}, {"support"}),
        ({"from": "2026-03-02"}, {"support", "note", "rejected", "approved"}),
        ({"to": "2026-03-01"}, {"march-1"}),
        ({"from": "2026-03-01", "to": "2026-03-01"}, {"march-1"}),
        ({"agent": "sdr", "status": "approved", "reviewer": "rita"}, {"approved"}),
    ],
)
def test_filters_narrow_the_search(client, world, audrey, query, expected):
    rita = reviewer(username="rita")
    with time_machine.travel(datetime(2026, 3, 1, 23, 59, tzinfo=UTC)):
        made = {"march-1": submit(world)}
    with time_machine.travel(datetime(2026, 3, 2, 0, 1, tzinfo=UTC)):
        made["support"] = submit(world, agent="support", reasoning="Mentions a competitor.")
        made["note"] = submit(world, action="note.post")
        made["rejected"] = services.decision_reject(
            decision=submit(world), reviewer=rita, reason="Wrong tone"
        )
        made["approved"] = services.decision_approve(decision=submit(world), reviewer=rita)
    response = client.get("/audit/", query)
    assert response.status_code == 200
    assert set(listed(response)) == {made[name].pk for name in expected}


def test_nonsense_filters_are_ignored(client, world, audrey):
    decision = submit(world)
    response = client.get(
        "/audit/",
        {"from": "yesterday", "to": "2026-13-45", "status": "<script>", "q": "x", "after": "!!"},
    )
    assert response.status_code == 200
    assert listed(response) == [decision.pk]
    assert response.context["filter_query"] == ""
    edge = client.get("/audit/", {"from": "0001-01-01", "to": "9999-12-31"})
    assert listed(edge) == [decision.pk]


def test_free_text_is_bounded(client, world, audrey):
    needle = "a" * 500
    filters = trail_selectors.TrailFilters.from_query({"q": needle})
    assert len(filters.text) == trail_selectors.TEXT_MAX
    assert trail_selectors.TrailFilters.from_query({"q": "a"}).text == ""
    assert client.get("/audit/", {"q": needle}).status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_text_search_that_runs_too_long_is_stopped(client, world, monkeypatch):
    monkeypatch.setattr(trail_selectors, "TEXT_SEARCH_TIMEOUT_MS", 300)
    decision = submit(world, reasoning="Mentions a competitor.")
    client.force_login(auditor())
    # Another session holds the table, so the search waits past its time limit.
    other = connection.copy()
    other.set_autocommit(False)
    try:
        with other.cursor() as cursor:
            cursor.execute("LOCK TABLE approvals_decision IN ACCESS EXCLUSIVE MODE")
        response = client.get("/audit/", {"q": "competitor"})
    finally:
        other.rollback()
        other.close()
    assert response.status_code == 200
    assert response.context["too_slow"] is True
    assert "ran longer than" in response.content.decode()
    assert listed(client.get("/audit/", {"q": "competitor"})) == [decision.pk]


def test_keyset_pages_cover_every_decision_once_and_keep_the_filters(
    client, world, audrey, monkeypatch, django_assert_max_num_queries
):
    monkeypatch.setattr(trail_selectors, "SEARCH_PAGE", 4)
    start = timezone.now()
    made = []
    for i in range(10):
        with time_machine.travel(start + timedelta(seconds=i // 2)):  # pairs share a time
            made.append(submit(world))
    submit(world, agent="support")
    seen, url, query, pages = [], "/audit/", {"agent": "sdr"}, 0
    while True:
        with django_assert_max_num_queries(12):
            response = client.get(url, query)
        seen += listed(response)
        pages += 1
        cursor = response.context["page"].next_cursor
        if not cursor:
            break
        html = response.content.decode()
        link = f"/audit/?after={cursor}&amp;agent=sdr"
        assert f'href="{link}"' in html and f'hx-get="{link}"' in html
        query = {"after": cursor, "agent": "sdr"}
    assert pages == 3
    expected = sorted(made, key=lambda d: (d.created_at, d.pk), reverse=True)
    assert seen == [d.pk for d in expected]


def test_htmx_requests_get_only_the_results_fragment(client, world, audrey):
    submit(world)
    response = client.get("/audit/", {"status": "pending"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="results"')
    assert "<html" not in html and 'id="audit-filters"' not in html
    assert 'href="/audit/export.csv?status=pending"' in html
    # Every hx-get has its plain href beside it.
    full = client.get("/audit/", {"status": "pending"}).content.decode()
    for tag in re.findall(r"<a [^>]*hx-get=[^>]*>", full):
        assert "href=" in tag, tag


def test_the_search_page_lists_my_recent_exports_with_manifests(client, world, audrey):
    submit(world)
    b"".join(client.get("/audit/export.csv", {"status": "pending"}).streaming_content)
    mine = AuditEvent.objects.get(event="audit.exported")
    other = UserFactory(username="other-auditor", groups=["Auditors"])
    client.force_login(other)
    b"".join(client.get("/audit/export.jsonl").streaming_content)
    theirs = AuditEvent.objects.filter(event="audit.exported").exclude(pk=mine.pk).get()
    client.force_login(audrey)
    html = client.get("/audit/").content.decode()
    assert f'href="/audit/exports/{mine.pk}/manifest.json"' in html
    assert f"/audit/exports/{theirs.pk}/manifest.json" not in html
    assert "status=pending" in html


# --- the trail ---------------------------------------------------------------------------


def test_the_trail_shows_submission_route_reviews_release_and_result(client, world, audrey):
    rita, sam = reviewer(username="rita"), reviewer(username="sam")
    decision = submit(world, to=5, reasoning="They asked for a quote.")
    services.decision_approve(
        decision=decision, reviewer=rita, comment="Checked the list", release=False
    )
    services.decision_approve(decision=decision, reviewer=sam, comment="Fine by me", release=False)
    decision = services.decision_release_claim(decision=decision)
    started = timezone.now()
    services.decision_release_record(
        decision=decision,
        delivery=Delivery(succeeded=False, retryable=True, status_code=503, error="busy"),
        connector="webhook",
        started_at=started,
        retry_in=0,
    )
    decision = services.decision_release_claim(decision=decision)
    services.decision_release_record(
        decision=decision,
        delivery=Delivery(succeeded=True, status_code=200, excerpt="queued", duration_ms=12),
        connector="webhook",
        started_at=started,
    )
    response = client.get(f"/audit/decisions/{decision.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    events = list(AuditEvent.objects.filter(target_id=str(decision.pk)).order_by("id"))
    assert [e.pk for e in response.context["events"]] == [e.pk for e in events]
    assert [e.event for e in events][:4] == [
        "decision.submitted",
        "decision.review_added",
        "decision.review_added",
        "decision.approved",
    ]
    assert "They asked for a quote." in html and "p4@example.com" in html
    assert "two-for-big" in html  # the policy route
    assert "Checked the list" in html and "Fine by me" in html
    assert html.index("Checked the list") < html.index("Fine by me")
    assert [a.number for a in response.context["attempts"]] == [1, 2]
    assert "busy" in html and "queued" in html
    assert 'class="badge status-released"' in html
    # Not sealed yet: no hash to show.
    assert html.count("not yet sealed") == len(events)
    while audit_seal():
        pass
    html = client.get(f"/audit/decisions/{decision.pk}/").content.decode()
    assert "not yet sealed" not in html
    for event in AuditEvent.objects.filter(target_id=str(decision.pk)):
        assert event.hash in html
        assert f'seq <span class="mono">{event.seq}</span>' in html


def test_a_rejection_shows_the_reviewer_and_reason(client, world, audrey):
    decision = services.decision_reject(
        decision=submit(world), reviewer=reviewer(username="rita"), reason="Wrong recipient"
    )
    html = client.get(f"/audit/decisions/{decision.pk}/").content.decode()
    assert "<strong>rita</strong> rejected it" in html
    assert "Wrong recipient" in html
    assert 'class="badge status-rejected"' in html


HOSTILE = '<script>alert(1)</script><a hx-get="/inbox/" hx-trigger="load">x</a>'


def test_agent_and_reviewer_text_is_escaped_inside_an_hx_disable_container(client, world, audrey):
    decision = submit(
        world,
        action="note.post",
        params={"text": HOSTILE},
        reasoning=HOSTILE,
        evidence={"note": HOSTILE, HOSTILE: "key"},
    )
    services.decision_reject(decision=decision, reviewer=reviewer(), reason=HOSTILE)
    for url in (f"/audit/decisions/{decision.pk}/", "/audit/"):
        html = client.get(url).content.decode()
        assert "<script>alert" not in html, url
        assert 'hx-get="/inbox/"' not in html and 'hx-trigger="load"' not in html, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, url
        assert "hx-get=&quot;/inbox/&quot;" in html, url
    html = client.get(f"/audit/decisions/{decision.pk}/").content.decode()
    container = html.index('<article id="trail" class="trail" hx-disable')
    assert container < html.index("&lt;script&gt;") < html.index("</article>")
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5
