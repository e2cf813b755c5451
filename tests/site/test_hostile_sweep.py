"""Every form, filter and path segment of the web UI, fed hostile values: never a 5xx, and
never a traceback in the log.

Nothing here names a screen. The URLconf says which screens exist; a superuser crawls
the seeded demo from the home page to find a concrete URL for each, and every <form>,
query parameter and path parameter found on the way is attacked. A new screen is
covered as soon as a page links to it or holds a form that posts to it, and the
coverage check below fails if one is not.
"""

import io
import logging
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import transaction
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404

from agents import services as agent_services
from agents.models import Agent, BehaviourVersion, Grant
from approvals.models import Decision, Passkey
from approvals.services import params_fingerprint
from audit.models import AuditEvent
from tests.factories import ActionTypeFactory, DecisionFactory, UserFactory

pytestmark = pytest.mark.django_db

DEEP = 10_000
HOSTILE = {
    "nul": "a\x00b",
    "lone surrogate": "\ud800",
    "surrogate inside text": "x\udfffy",
    "NaN": "NaN",
    "Infinity": "Infinity",
    "float overflow": "1e400",
    "deep JSON array": "[" * DEEP + "]" * DEEP,
    "deep JSON object": '{"a":' * DEEP + "1" + "}" * DEEP,
    "deep YAML block": "- " * DEEP + "x",
    "1 MB string": "x" * (1 << 20),
    "200 KB string": "y" * 200_000,
    "bidi controls": "\u202e0005\u202c EUR \u2066x\u2069\u200b",
    "2^31": str(2**31),
    "2^63": str(2**63),
    "40 digits": "9" * 40,
    "superscript digit": "²",
    "CRLF and script": "x\r\nSet-Cookie: a=b\r\n<script>alert(1)</script>",
}
# What can stand in for a path segment: percent-encoded as a browser would send it.
HOSTILE_SEGMENTS = {
    "nul": "%00",
    "surrogate as WTF-8": "%ED%A0%80",
    "broken UTF-8": "%FF%FE",
    "25 digits": "9" * 25,
    "bidi": "%E2%80%AE",
    "long": "z" * 5000,
}
# Namespaces outside the web UI: Django's admin, and the agent API that Schemathesis
# fuzzes (tests/approvals/api/test_schemathesis.py and tests/approvals/api/test_hostile.py).
SKIP_NAMESPACES = {"admin"}
SKIP_NAMES = {"logout"}  # it only ends the sweep's own session


def _encode(pairs) -> str:
    """Form encoding that, like a hostile client, can carry lone surrogates (as WTF-8)."""
    return urlencode(pairs, encoding="utf-8", errors="surrogatepass")


def url_names(resolver=None, namespace="", route="") -> dict[str, str]:
    """Every named view of the URLconf, as {"ns:name": route}."""
    resolver = resolver or get_resolver()
    names = {}
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            inner = pattern.namespace
            if inner in SKIP_NAMESPACES:
                continue
            prefix = f"{namespace}{inner}:" if inner else namespace
            names.update(url_names(pattern, prefix, route + str(pattern.pattern)))
        elif isinstance(pattern, URLPattern) and pattern.name:
            full = route + str(pattern.pattern)
            if not full.startswith("api/"):
                names[f"{namespace}{pattern.name}"] = full
    return {name: r for name, r in names.items() if name not in SKIP_NAMES}


@dataclass
class Form:
    page: str
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)


class PageParser(HTMLParser):
    def __init__(self, page: str):
        super().__init__()
        self.page = page
        self.forms: list[Form] = []
        self.links: list[str] = []
        self._form: Form | None = None
        self._textarea: str | None = None
        self._select: str | None = None
        self._select_value: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("href", "hx-get"):
            if attrs.get(name) and tag in {"a", "link", "div", "span", "button"}:
                self.links.append(urljoin(self.page, attrs[name]))
        if tag == "form":
            method = (attrs.get("method") or "get").lower()
            if method == "dialog":
                return
            action = urljoin(self.page, attrs.get("action") or self.page)
            self._form = Form(page=self.page, action=action, method=method)
            self.forms.append(self._form)
            # Endpoints the page's script posts the form to (data-*-url), e.g. the
            # passkey step-up: attacked with the same fields.
            for attr, value in attrs.items():
                if attr.startswith("data-") and attr.endswith("-url") and value:
                    self.forms.append(
                        Form(
                            page=self.page,
                            action=urljoin(self.page, value),
                            method="post",
                            fields=self._form.fields,
                        )
                    )
        if self._form is None:
            return
        name = attrs.get("name")
        if tag == "input" and name:
            kind = (attrs.get("type") or "text").lower()
            if kind in {"checkbox", "radio"} and "checked" not in attrs:
                # Still attack it: a field left unchecked is a field a client may send.
                self._form.fields.append((name, None))
                return
            if kind not in {"submit", "button", "image", "reset", "file"}:
                self._form.fields.append((name, attrs.get("value") or ""))
        elif tag == "textarea" and name:
            self._textarea = name
            self._form.fields.append((name, ""))
        elif tag == "select" and name:
            self._select, self._select_value = name, None
        elif tag == "option" and self._select:
            if self._select_value is None or "selected" in attrs:
                self._select_value = attrs.get("value", "")
        elif tag == "button" and name:
            self._form.fields.append((name, attrs.get("value") or ""))

    def handle_data(self, data):
        if self._form is not None and self._textarea:
            name, value = self._form.fields[-1]
            self._form.fields[-1] = (name, value + data)

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None
        elif tag == "select" and self._form is not None and self._select:
            self._form.fields.append((self._select, self._select_value or ""))
            self._select = None
        elif tag == "form":
            self._form = None


def _view_name(path: str) -> str | None:
    try:
        match = resolve(path)
    except Resolver404:
        return None
    return match.view_name


@dataclass
class Sweep:
    client: Client
    problems: list[str] = field(default_factory=list)
    requests: int = 0

    def send(self, label: str, method: str, path: str, body: str | None = None, **extra):
        # Each attack starts from the same data: a refused value must not depend on
        # what an earlier accepted one changed.
        with transaction.atomic():
            if method == "get":
                response = self.client.get(path, **extra)
            else:
                response = self.client.post(
                    path, body, content_type="application/x-www-form-urlencoded", **extra
                )
            if response.streaming:
                b"".join(response.streaming_content)
            transaction.set_rollback(True)
        self.requests += 1
        if response.status_code >= 500:
            self.problems.append(f"{response.status_code} for {label}: {method.upper()} {path}")
        return response


def crawl(client: Client, names: dict[str, str]):
    """Pages reachable from home, a few per view, with their forms and query parameters."""
    queue, seen, per_view = ["/"] + [f"/{r}" for r in names.values() if "<" not in r], set(), {}
    pages, forms, queries = {}, {}, {}
    while queue:
        url = queue.pop(0)
        parts = urlsplit(url)
        if parts.netloc not in {"", "testserver"} or not parts.path.startswith("/"):
            continue
        name = _view_name(parts.path)
        if name is None or name.split(":")[0] in SKIP_NAMESPACES or name not in names:
            continue
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            queries.setdefault((parts.path, name), {})[key] = value
        if parts.path in seen or per_view.get(name, 0) >= 2:
            continue
        seen.add(parts.path)
        per_view[name] = per_view.get(name, 0) + 1
        response = client.get(url)
        assert response.status_code < 500, url
        if response.streaming or "html" not in response.get("Content-Type", ""):
            pages.setdefault(name, parts.path)
            continue
        pages.setdefault(name, parts.path)
        parser = PageParser(urljoin("http://testserver/", url))
        parser.feed(response.content.decode())
        queue.extend(parser.links)
        for form in parser.forms:
            action = urlsplit(form.action)
            form_name = _view_name(action.path)
            if form_name is None or form_name not in names:
                continue
            key = (form_name, form.method, tuple(sorted(n for n, _ in form.fields)))
            forms.setdefault(key, (action.path, form))
            if form.method == "get":
                query = queries.setdefault((action.path, form_name), {})
                for field_name, value in form.fields:
                    query.setdefault(field_name, value or "")
    return pages, list(forms.values()), queries


def _world(admin) -> None:
    """The demo, plus what makes each remaining screen appear: a key, an inactive
    version, a suspended agent, an open alert and an export with its manifest."""
    call_command("seed_demo", stdout=io.StringIO())
    first, second = Agent.objects.order_by("slug")[:2]
    agent_services.agent_key_issue(agent=first, issued_by=admin, label="worker")
    agent_services.behaviour_version_create(
        agent=first, instructions="Newer.", note="Next", actor=admin
    )
    agent_services.agent_suspend(agent=second, actor=admin, reason="Checking.")
    agent_services.alert_raise(severity="high", kind="rate_spike", message="Spike", agent=first)
    # A passkey, so the profile lists it with its revoke form. (Seed data: registering
    # one for real needs an authenticator, which tests/browser/test_passkeys.py drives.)
    Passkey.objects.create(user=admin, credential_id="c3dlZXBrZXk", public_key=b"k", name="Sweep")
    _capacity_world(admin, first)


def _capacity_world(admin, agent) -> None:
    """Reviewer capacity (issue 17): a canary template, a standing approval, a snooze, a
    group's notification setting and an out-of-office delegation, whose screens (or
    links) only show once one exists."""
    from datetime import timedelta

    from django.utils import timezone

    from approvals import canaries, routing
    from approvals.models import StandingApproval

    grant = agent.grants.select_related("action_type").first()
    canaries.canary_template_save(
        actor=admin,
        agent=agent,
        action_type=grant.action_type,
        params=Decision.objects.filter(agent=agent, action_type=grant.action_type).first().params,
        reasoning="A canary.",
    )
    StandingApproval.objects.create(
        agent=agent,
        action_type=grant.action_type,
        condition="params.x == 1",
        max_count=1,
        ends_at=timezone.now() + timedelta(days=1),
        created_by=admin,
    )
    now = timezone.now()
    pending = Decision.objects.filter(status=Decision.Status.PENDING, expires_at__gt=now)
    routing.decision_snooze(
        decision=pending.order_by("expires_at").last(), user=admin, until=now + timedelta(minutes=5)
    )
    from django.contrib.auth.models import Group

    from approvals.notifications import preference_save

    preference_save(
        actor=admin,
        group=Group.objects.get(name="Reviewers"),
        channel="email",
        mode="digest",
        min_risk="high",
    )
    routing.delegation_create(
        user=admin,
        delegate=UserFactory(username="standin", groups=["Reviewers"]),
        starts_at=now,
        ends_at=now + timedelta(days=1),
    )


@pytest.fixture
def swept(client, caplog):
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    _world(admin)
    client.force_login(admin)
    b"".join(client.get("/audit/export.csv").streaming_content)
    client.raise_request_exception = False
    names = url_names()
    with caplog.at_level(logging.WARNING):
        pages, forms, queries = crawl(client, names)
        forms += _step_up_forms(client, names)
    return names, pages, forms, queries


def _step_up_forms(client: Client, names: dict[str, str]) -> list:
    """A decision that asks for a passkey shows the step-up form (the crawl sees only a
    few decisions, and a step-up decision hides Edit & approve, so it gets its own look)."""
    pending = Decision.objects.filter(status=Decision.Status.PENDING).first()
    with override_settings(AISPM_STEP_UP_DEFAULT_RISK="low"):
        page = f"/inbox/{pending.pk}/"
        parser = PageParser(urljoin("http://testserver/", page))
        parser.feed(client.get(page).content.decode())
    return [
        (urlsplit(form.action).path, form)
        for form in parser.forms
        if _view_name(urlsplit(form.action).path) == "approvals:step-up"
    ]


def _log_problems(caplog) -> list[str]:
    return sorted(
        {
            f"{record.name}: {record.getMessage()[:200]}"
            for record in caplog.records
            if record.exc_info or record.levelno >= logging.ERROR
        }
    )


def test_the_sweep_reaches_every_screen_and_form(swept):
    names, pages, forms, queries = swept
    reached = set(pages) | {_view_name(path) for path, _form in forms}
    assert set(names) - reached - {"login"} == set(), "screens the crawl cannot reach"
    assert len(forms) >= 10
    assert queries


def test_no_form_field_value_gives_a_server_error_or_a_traceback(swept, client, caplog):
    _names, _pages, forms, _queries = swept
    sweep = Sweep(client)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for path, form in forms:
            fields = [(n, v) for n, v in form.fields if n != "csrfmiddlewaretoken"]
            for target in dict.fromkeys(n for n, _ in fields):
                for label, value in HOSTILE.items():
                    pairs = [(n, value if n == target else v) for n, v in fields if v is not None]
                    if not any(n == target for n, _ in pairs):
                        pairs.append((target, value))
                    where = f"{label} in {target!r} of the form on {form.page}"
                    if form.method == "get":
                        sweep.send(where, "get", f"{path}?{_encode(pairs)}")
                    else:
                        sweep.send(where, "post", path, _encode(pairs))
                        if label == "nul":
                            sweep.send(where, "post", path, _encode(pairs), HTTP_HX_REQUEST="true")
    assert sweep.requests > 200
    assert "\n".join(sweep.problems) == ""
    assert "\n".join(_log_problems(caplog)) == ""


def test_no_query_parameter_gives_a_server_error_or_a_traceback(swept, client, caplog):
    _names, _pages, _forms, queries = swept
    sweep = Sweep(client)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for (path, _name), params in queries.items():
            for target in params:
                for label, value in HOSTILE.items():
                    pairs = dict(params, **{target: value})
                    sweep.send(f"{label} in ?{target}", "get", f"{path}?{_encode(pairs)}")
                    if label == "nul":
                        sweep.send(
                            f"{label} in ?{target} (htmx)",
                            "get",
                            f"{path}?{_encode(pairs)}",
                            HTTP_HX_REQUEST="true",
                        )
    assert sweep.requests > 100
    assert "\n".join(sweep.problems) == ""
    assert "\n".join(_log_problems(caplog)) == ""


def test_no_path_segment_gives_a_server_error_or_a_traceback(swept, client, caplog):
    _names, pages, forms, _queries = swept
    paths = set(pages.values()) | {path for path, _form in forms}
    sweep = Sweep(client)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for path in sorted(paths):
            for value in resolve(path).kwargs.values():
                segment = quote(str(value), safe="")
                for label, hostile in HOSTILE_SEGMENTS.items():
                    attacked = path.replace(f"/{segment}/", f"/{hostile}/", 1)
                    attacked = attacked.replace(f"/{segment}.", f"/{hostile}.", 1)
                    for method in ("get", "post"):
                        sweep.send(f"{label} for {value}", method, attacked, "")
    assert "\n".join(sweep.problems) == ""
    assert "\n".join(_log_problems(caplog)) == ""


def test_no_accept_language_or_language_cookie_gives_a_server_error_or_a_traceback(
    swept, client, caplog
):
    """The browser's language picks the locale money is written in (ReaderLocaleMiddleware)."""
    _names, pages, _forms, _queries = swept
    session = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    sweep = Sweep(client)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for path in sorted(set(pages.values())):
            for label, value in HOSTILE.items():
                sweep.send(f"{label} in Accept-Language", "get", path, HTTP_ACCEPT_LANGUAGE=value)
                # A cookie arrives as bytes that WSGI decodes as Latin-1.
                raw = value.encode("utf-8", "surrogatepass").decode("latin-1")
                cookie = f"{session}; {settings.LANGUAGE_COOKIE_NAME}={raw}"
                sweep.send(f"{label} in the language cookie", "get", path, HTTP_COOKIE=cookie)
    # Still signed in with the cookie header replaced: the values reached the views.
    signed_in = client.get("/inbox/", HTTP_COOKIE=f"{session}; {settings.LANGUAGE_COOKIE_NAME}=de")
    assert signed_in.status_code == 200
    assert sweep.requests > 100
    assert "\n".join(sweep.problems) == ""
    assert "\n".join(_log_problems(caplog)) == ""


# The cases the issue measured, one by one.


@pytest.fixture
def root(client):
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(admin)
    return admin


@pytest.mark.parametrize(
    "url",
    [
        "/inbox/?agent=%00",
        "/inbox/?action=x%00",
        "/audit/?q=%00ab",
        "/audit/?agent=%00",
        "/security/alerts/?agent=%00",
        "/security/alerts/?kind=%00",
        "/agents/a%00b/",
        "/security/agents/a%00b/scopes/",
    ],
)
def test_a_nul_in_a_filter_or_path_segment_is_a_400(client, root, url):
    response = client.get(url)
    assert response.status_code == 400
    assert b"NUL" in response.content


@pytest.mark.parametrize("url", ["/audit/export.csv?agent=%00", "/audit/export.jsonl?q=%00ab"])
def test_an_export_with_a_nul_filter_is_refused_not_truncated_and_unaudited(client, root, url):
    response = client.get(url)
    assert response.status_code == 400
    assert not response.streaming
    assert not AuditEvent.objects.filter(event="audit.exported").exists()


def test_the_feedback_export_ignores_a_version_in_unicode_digits(client, root):
    call_command("seed_demo", stdout=io.StringIO())
    everything = client.get("/agents/sdr-agent/feedback.jsonl")
    lines = b"".join(everything.streaming_content)
    for version in ("²", "٣", "1_0", " 1", str(2**63), "9" * 40):
        response = client.get(f"/agents/sdr-agent/feedback.jsonl?{urlencode({'version': version})}")
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == lines


@pytest.mark.parametrize("url", ["/agents/sdr-agent/versions/diff/?a=99999999999999999999"])
def test_a_version_number_past_the_column_is_not_found(client, root, url):
    call_command("seed_demo", stdout=io.StringIO())
    assert client.get(url).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/security/alerts/99999999999999999999/acknowledge/",
        "/audit/exports/99999999999999999999/manifest.json",
        "/agents/sdr-agent/versions/99999999999999999999/activate/",
    ],
)
def test_an_id_past_64_bits_in_the_path_is_not_found(client, root, url):
    call_command("seed_demo", stdout=io.StringIO())
    assert client.post(url).status_code == 404


@pytest.mark.parametrize("limit", [str(2**31), str(2**63), "9" * 40])
def test_a_grant_limit_past_the_integer_column_is_a_field_error(client, root, limit):
    call_command("seed_demo", stdout=io.StringIO())
    grant = Grant.objects.select_related("agent", "action_type").first()
    slug, key = grant.agent.slug, grant.action_type.key
    edit = client.post(
        f"/security/agents/{slug}/scopes/{key}/edit/", {"limit_per_hour": limit, "constraint": ""}
    )
    assert edit.status_code in {200, 400}
    assert edit.context["form"].errors["limit_per_hour"]
    Grant.objects.filter(pk=grant.pk).delete()
    create = client.post(
        f"/security/agents/{slug}/scopes/grant/",
        {"action_type": key, "limit_per_hour": limit, "constraint": ""},
    )
    assert create.status_code == 400
    assert not Grant.objects.filter(agent__slug=slug, action_type__key=key).exists()


def test_the_largest_grant_limit_is_still_accepted(client, root):
    call_command("seed_demo", stdout=io.StringIO())
    grant = Grant.objects.select_related("agent", "action_type").first()
    url = f"/security/agents/{grant.agent.slug}/scopes/{grant.action_type.key}/edit/"
    response = client.post(url, {"limit_per_hour": str(2**31 - 1), "constraint": ""})
    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.limit_per_hour == 2**31 - 1


NEW_VERSION = {"instructions": "Be brief.", "settings": "{}", "policy": "[]", "note": "Try"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("settings", '{"temperature": NaN}'),
        ("settings", '{"temperature": Infinity}'),
        ("settings", '{"a":' * DEEP + "1" + "}" * DEEP),
        ("settings", "[" * DEEP + "]" * DEEP),
        ("settings", '{"t": ' + str(2**64) + "}"),
        ("settings", '{"t": "a\\u0000b"}'),
        ("settings", '{"t": "\\ud800"}'),
        ("policy", "- " * DEEP + "x"),
        ("policy", "[" * DEEP + "]" * DEEP),
        ("policy", "- {id: r, action: x, outcome: review, approvals: .nan}"),
        ("policy", '- {id: "a\\0b", action: x, outcome: review}'),
    ],
)
def test_new_version_settings_and_policy_refuse_hostile_values(client, root, name, value):
    call_command("seed_demo", stdout=io.StringIO())
    before = BehaviourVersion.objects.count()
    response = client.post("/agents/sdr-agent/versions/new/", dict(NEW_VERSION, **{name: value}))
    assert response.status_code == 400
    assert response.context["form"].errors[name]
    assert BehaviourVersion.objects.count() == before


def test_new_version_still_saves_valid_settings_and_policy(client, root):
    call_command("seed_demo", stdout=io.StringIO())
    response = client.post(
        "/agents/sdr-agent/versions/new/",
        dict(NEW_VERSION, settings='{"temperature": 0.2, "nested": {"a": [1, 2]}}'),
    )
    assert response.status_code == 302


@pytest.mark.parametrize(
    "value",
    ['{"a": NaN}', "Infinity", "[" * DEEP + "]" * DEEP, '{"a": "\\u0000"}', '{"a": "\\udc00"}'],
)
def test_the_edit_forms_json_fields_refuse_hostile_values(client, root, value):
    action = ActionTypeFactory(
        key="crm.update",
        params_schema={"type": "object", "properties": {"fields": {"type": "object"}}},
    )
    decision = DecisionFactory(action_type=action, params={"fields": {"stage": "won"}})
    hash_ = params_fingerprint(decision.params)
    response = client.post(f"/inbox/{decision.pk}/edit/", {"p_fields": value, "params_hash": hash_})
    assert response.status_code < 500
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING
    assert not decision.reviews.exists()


def test_a_nul_in_a_form_field_is_a_field_error(client, root):
    decision = DecisionFactory()
    response = client.post(f"/inbox/{decision.pk}/reject/", {"reason": "no\x00pe"})
    assert response.status_code == 400
    assert "NUL" in str(response.context["reject_form"].errors["reason"])
    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING
