"""Destinations are canonical, not free text (issue 11, point 2).

What the grant constraint, policy, anomaly rules and connectors see is the canonical
form of an email address or URL, and only bare addresses and absolute http(s) URLs
get that far. JSON Schema patterns follow ECMA-262.
"""

import io
from pathlib import Path

import pytest
import yaml
from django.core import mail
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from agents.models import ActionType, SeenDestination
from agents.services import agent_key_issue
from approvals import services, tasks
from approvals.models import Decision
from audit.models import AuditEvent
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    reviewer,
)

pytestmark = pytest.mark.django_db
URL = "/api/v1/decisions/"
DEMO = Path(__file__).resolve().parents[2] / "demo" / "governance.yaml"
COMMENT_TRICK = "attacker@evil.example (x@suppliers.example"
NOT_BARE = [
    COMMENT_TRICK,
    "Attacker <attacker@evil.example>",
    "x@suppliers.example <attacker@evil.example>",
    '"attacker@evil.example"@suppliers.example',
    '"a b"@suppliers.example',
    "a(comment)@suppliers.example",
    " maria@suppliers.example",
    "maria@suppliers.example ",
    "maria @suppliers.example",
    "maria@suppliers.example\r\nBcc: attacker@evil.example",
    "maria@suppliers.example\n",
    "maria@suppliers.example.",
    "maria.@suppliers.example",
    "maria@[127.0.0.1]",
    "maria@suppliers.example\u202e",
]
URL_FORMATS = ["uri", "iri", "uri-reference", "iri-reference", "url"]
BAD_URLS = [
    "http://user:pass@hooks.example/x",
    "https://hooks.example@evil.example/",
    "ftp://hooks.example/x",
    "javascript:alert(1)",
    "//hooks.example/x",
    "/relative/path",
    "https://hooks.example/x\n",
    "https://hooks .example/",
    "https://hooks.example\\@evil.example/",
    "https://0x7f.1/",
]

EMAIL_SCHEMA = {
    "type": "object",
    "required": ["to"],
    "properties": {
        "to": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1},
        "cc": {"type": "array", "items": {"type": "string", "format": "email"}},
        "subject": {"type": "string"},
        "body": {"type": "string"},
    },
}


def _world(*, anomaly_rules=(), policy=None, constraint="", schema=None, connector="none"):
    agent = AgentFactory(
        slug="finance-agent", owner=UserFactory(username="owner"), anomaly_rules=anomaly_rules
    )
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent,
        number=1,
        policy=policy
        or [
            {
                "id": "deny-bucher",
                "when": "params.to.exists(t, t.endsWith('@xn--bcher-kva.example'))",
                "outcome": "deny",
            },
            {"id": "all", "outcome": "allow"},
        ],
    )
    agent.save()
    action = ActionTypeFactory(
        key="email.send",
        params_schema=schema or EMAIL_SCHEMA,
        irreversible=False,
        connector_type=connector,
        summary_template="Email to {to}",
    )
    GrantFactory(agent=agent, action_type=action, limit_per_hour=1000, constraint=constraint)
    key = agent_key_issue(agent=agent)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key.secret}")
    return agent, key.key, api


def _post(api, params, action="email.send"):
    return api.post(URL, {"action": action, "params": params, "reasoning": "r"}, format="json")


def _submit(key, params, action="email.send"):
    return services.decision_submit(key=key, action=action, params=params, reasoning="r")


SUPPLIERS_ONLY = "params.to.all(t, t.endsWith('@suppliers.example'))"
NEW_DESTINATION = [{"rule": "new_destination", "params": ["to"], "action": "force_review"}]


# --- email addresses ---------------------------------------------------------------------


def test_a_comment_in_the_address_is_refused_by_the_api_with_the_param_path():
    _agent, _key, api = _world(constraint=SUPPLIERS_ONLY, anomaly_rules=NEW_DESTINATION)
    response = _post(api, {"to": ["maria@suppliers.example", COMMENT_TRICK]})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["details"]) == ["params.to[1]"]
    [message] = error["details"]["params.to[1]"]
    assert "is not a bare email address" in message
    assert not Decision.objects.exists()


@pytest.mark.parametrize("address", NOT_BARE)
def test_only_a_bare_addr_spec_passes_the_api(address):
    _agent, _key, api = _world(constraint=SUPPLIERS_ONLY, anomaly_rules=NEW_DESTINATION)
    response = _post(api, {"to": [address]})
    assert response.status_code == 400, (address, response.content)
    assert "params.to[0]" in response.json()["error"]["details"]
    assert not Decision.objects.exists()


@pytest.mark.parametrize("address", NOT_BARE)
def test_only_a_bare_addr_spec_passes_the_service(address):
    _agent, key, _api = _world(constraint=SUPPLIERS_ONLY)
    with pytest.raises(services.SubmissionRefused) as refused:
        _submit(key, {"to": ["maria@suppliers.example"], "cc": [address]})
    assert refused.value.code == "invalid"
    assert "params.cc[0]" in refused.value.details


def test_the_constraint_sees_the_canonical_domain():
    _agent, key, api = _world(constraint=SUPPLIERS_ONLY)
    response = _post(api, {"to": ["Maria.Rossi@SUPPLIERS.Example"]})
    assert response.status_code == 201, response.content
    assert response.json()["params"]["to"] == ["Maria.Rossi@suppliers.example"]
    # The fullwidth form is the same domain once IDNA-mapped, and goes to the same place.
    submission = _submit(key, {"to": ["maria@ｓｕｐｐｌｉｅｒｓ.example"]})
    assert submission.decision.params["to"] == ["maria@suppliers.example"]


def test_policy_and_the_stored_decision_see_the_idna_form_and_the_audit_keeps_the_original():
    _agent, key, api = _world()
    response = _post(api, {"to": ["maria@Bücher.example"], "subject": "Hallo"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "denied"  # the rule names the xn-- form
    assert body["policy"]["rule"] == "deny-bucher"
    assert body["params"] == {"to": ["maria@xn--bcher-kva.example"], "subject": "Hallo"}
    assert body["summary"] == "Email to maria@xn--bcher-kva.example"
    decision = Decision.objects.get(pk=body["id"])
    assert decision.params["to"] == ["maria@xn--bcher-kva.example"]
    event = AuditEvent.objects.get(event="decision.submitted", target_id=str(decision.pk))
    assert event.data["params"]["to"] == ["maria@xn--bcher-kva.example"]
    assert event.data["canonicalised"] == {"params.to[0]": "maria@Bücher.example"}


def test_params_already_canonical_leave_no_canonicalised_note(api, email_body):
    created = api.post(URL, email_body, format="json").json()
    event = AuditEvent.objects.get(event="decision.submitted", target_id=created["id"])
    assert "canonicalised" not in event.data


def test_a_replay_of_the_original_body_returns_the_canonicalised_decision():
    _agent, key, _api = _world()
    params = {"to": ["Maria@SUPPLIERS.example"]}
    first = services.decision_submit(
        key=key, action="email.send", params=params, reasoning="r", idempotency_key="k1"
    )
    again = services.decision_submit(
        key=key, action="email.send", params=params, reasoning="r", idempotency_key="k1"
    )
    assert (first.created, again.created) == (True, False)
    assert again.decision.pk == first.decision.pk
    assert again.decision.params == {"to": ["Maria@suppliers.example"]}


def test_canonical_params_must_still_match_the_schema():
    schema = {
        "type": "object",
        "properties": {
            "to": {"type": "array", "items": {"type": "string", "format": "email", "maxLength": 20}}
        },
    }
    _agent, _key, api = _world(schema=schema)
    response = _post(api, {"to": ["a@bücher.example"]})  # 16 characters, 23 in IDNA form
    assert response.status_code == 400, response.content
    assert "params.to[0]" in response.json()["error"]["details"]


def test_the_new_destination_rule_compares_canonical_domains():
    agent, key, api = _world(anomaly_rules=NEW_DESTINATION)
    first = _submit(key, {"to": ["maria@bücher.example"]}).decision
    assert first.status == Decision.Status.DENIED  # denied, so nothing is remembered
    first = _submit(key, {"to": ["maria@Northwind.EXAMPLE"]}).decision
    assert first.status == Decision.Status.PENDING
    assert first.anomalies[0]["rule"] == "new_destination"
    services.decision_approve(decision=first, reviewer=reviewer())
    assert list(SeenDestination.objects.values_list("value", flat=True)) == ["northwind.example"]
    agent.refresh_from_db()
    again = _post(api, {"to": ["joe@ｎｏｒｔｈｗｉｎｄ.example"]}).json()
    assert again["status"] == "approved", again


def test_the_new_destination_rule_counts_a_free_text_recipient_as_new():
    """A param the schema leaves free text still cannot pass for a known domain."""
    schema = {"type": "object", "properties": {"to": {"type": "array"}}}
    agent, key, _api = _world(anomaly_rules=NEW_DESTINATION, schema=schema)
    SeenDestination.objects.create(agent=agent, value="suppliers.example")
    decision = _submit(key, {"to": [COMMENT_TRICK]}).decision
    assert decision.status == Decision.Status.PENDING
    assert decision.anomalies[0]["rule"] == "new_destination"


def test_split_transactions_group_by_the_canonical_recipient():
    schema = {
        "type": "object",
        "properties": {"amount": {"type": "number"}, "to": {"type": "string", "format": "email"}},
    }
    rule = {
        "rule": "split_transactions",
        "param": "amount",
        "group_by": "to",
        "threshold": 1000,
        "window": "1h",
        "action": "force_review",
    }
    _agent, key, _api = _world(
        anomaly_rules=[rule], schema=schema, policy=[{"id": "all", "outcome": "allow"}]
    )
    statuses = [
        _submit(key, {"amount": 400, "to": to}).decision.status
        for to in ("pay@acme.example", "pay@ACME.example", "pay@Acme.Example")
    ]
    assert statuses == ["approved", "approved", "pending"]


# --- the email connector ------------------------------------------------------------------


def _release(decision):
    decision = services.decision_approve(decision=decision, reviewer=reviewer())
    tasks.release_decision.run(str(decision.pk))
    decision.refresh_from_db()
    return decision


def test_the_email_connector_sends_to_the_canonical_addr_spec():
    _agent, key, _api = _world(connector="email", policy=[{"id": "all", "outcome": "review"}])
    decision = _submit(key, {"to": ["Maria@Bücher.example"], "subject": "s", "body": "b"}).decision
    assert _release(decision).status == Decision.Status.RELEASED
    [message] = mail.outbox
    assert message.to == ["Maria@xn--bcher-kva.example"]
    assert message.recipients() == ["Maria@xn--bcher-kva.example"]


def test_the_email_connector_refuses_a_recipient_that_is_not_a_bare_address():
    """A decision stored before canonical destinations, or by a path that skipped them."""
    agent, key, _api = _world(connector="email", policy=[{"id": "all", "outcome": "review"}])
    decision = services.decision_create(
        agent=agent,
        action_type=ActionType.objects.get(key="email.send"),
        key=key,
        reasoning="r",
        params={"to": ["maria@suppliers.example"], "cc": [COMMENT_TRICK], "body": "b"},
    )
    decision = _release(decision)
    assert decision.status == Decision.Status.FAILED
    assert mail.outbox == []
    attempt = decision.attempts.get()
    assert "recipient refused" in attempt.error


# --- URLs ---------------------------------------------------------------------------------


def _url_world(fmt):
    schema = {"type": "object", "properties": {"hook": {"type": "string", "format": fmt}}}
    return _world(
        schema=schema,
        policy=[
            {
                "id": "no-bucher",
                "when": "params.hook.startsWith('https://xn--bcher-kva.example/')",
                "outcome": "deny",
            },
            {"id": "all", "outcome": "allow"},
        ],
    )


@pytest.mark.parametrize("fmt", URL_FORMATS)
@pytest.mark.parametrize("url", BAD_URLS)
def test_url_formats_accept_only_absolute_http_urls_without_userinfo(fmt, url):
    _agent, key, api = _url_world(fmt)
    response = _post(api, {"hook": url})
    assert response.status_code == 400, (fmt, url, response.content)
    assert "params.hook" in response.json()["error"]["details"]
    with pytest.raises(services.SubmissionRefused):
        _submit(key, {"hook": url})


@pytest.mark.parametrize("fmt", URL_FORMATS)
def test_url_formats_are_canonical_where_policy_sees_them(fmt):
    _agent, key, api = _url_world(fmt)
    body = _post(api, {"hook": "HTTPS://Bücher.Example:443/in?x=ü"}).json()
    assert body["params"]["hook"] == "https://xn--bcher-kva.example/in?x=%C3%BC"
    assert body["status"] == "denied"
    assert _submit(key, {"hook": "http://Hooks.example:8080"}).decision.params == {
        "hook": "http://hooks.example:8080/"
    }


# --- ECMA-262 patterns --------------------------------------------------------------------


@pytest.fixture
def demo_world(demo_users):
    call_command("apply_governance", str(DEMO), stdout=io.StringIO(), stderr=io.StringIO())
    from agents.models import Agent

    def client(slug):
        api = APIClient()
        agent = Agent.objects.get(slug=slug)
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key_issue(agent=agent).secret}")
        return api

    return client


@pytest.fixture
def demo_users():
    UserFactory(username="agentadmin")


@pytest.mark.parametrize(
    ("slug", "action", "params", "path"),
    [
        (
            "sdr-agent",
            "crm.update",
            {"record": "lead/1\n", "field": "stage", "value": "won"},
            "params.record",
        ),
        (
            "finance-agent",
            "payment.transfer",
            {
                "amount": 10,
                "currency": "EUR",
                "beneficiary": "Acme",
                "iban": "DE89370400440532013000\n",
                "reference": "INV-1",
            },
            "params.iban",
        ),
        (
            "support-agent",
            "refund.issue",
            {"order_id": "ORD-12345\n", "amount": 5, "currency": "EUR", "reason": "late"},
            "params.order_id",
        ),
    ],
)
def test_an_anchored_pattern_refuses_a_trailing_newline(demo_world, slug, action, params, path):
    api = demo_world(slug)
    response = _post(api, params, action=action)
    assert response.status_code == 400, response.content
    assert path in response.json()["error"]["details"]
    fixed = {k: v.rstrip("\n") if isinstance(v, str) else v for k, v in params.items()}
    assert _post(api, fixed, action=action).status_code == 201


def test_patterns_use_ecma_classes_not_unicode_ones():
    schema = {"type": "object", "properties": {"n": {"type": "string", "pattern": r"^\d+$"}}}
    _agent, _key, api = _world(schema=schema, policy=[{"id": "all", "outcome": "allow"}])
    assert _post(api, {"n": "123"}, action="email.send").status_code == 201
    response = _post(api, {"n": "١٢٣"})  # Arabic-Indic digits: \d is [0-9] in ECMA-262
    assert response.status_code == 400
    assert "params.n" in response.json()["error"]["details"]


# --- the config: patterns must be ECMA-262 --------------------------------------------------


def _config(schema):
    return {
        "action_types": [
            {"key": "crm.update", "name": "CRM", "irreversible": False, "params_schema": schema}
        ]
    }


def _reject(tmp_path, schema) -> list[str]:
    path = tmp_path / "governance.yaml"
    path.write_text(yaml.safe_dump(_config(schema), sort_keys=False), encoding="utf-8")
    with pytest.raises(CommandError) as caught:
        call_command("apply_governance", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert not ActionType.objects.exists()
    return [line.removeprefix(f"{path}: ") for line in str(caught.value).splitlines()]


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        (
            {"properties": {"record": {"type": "string", "pattern": "^(?P<kind>lead)/[0-9]+$"}}},
            "action_types[0].params_schema.properties.record.pattern",
        ),
        (
            {"properties": {"record": {"type": "string", "pattern": "^lead/[0-9]+\\Z"}}},
            "action_types[0].params_schema.properties.record.pattern",
        ),
        (
            {"properties": {"record": {"type": "string", "pattern": "(unclosed"}}},
            "action_types[0].params_schema.properties.record.pattern",
        ),
        (
            {"properties": {"record": {"type": "string", "pattern": "^lead\\-[0-9]+$"}}},
            "action_types[0].params_schema.properties.record.pattern",
        ),
        (
            {"patternProperties": {"^x(": {"type": "string"}}},
            "action_types[0].params_schema.patternProperties",
        ),
        (
            {"propertyNames": {"pattern": "[z-a]"}},
            "action_types[0].params_schema.propertyNames.pattern",
        ),
        (
            {"$defs": {"ref": {"pattern": "(?#a comment)x"}}},
            "action_types[0].params_schema['$defs'].ref.pattern",
        ),
    ],
)
def test_applying_a_config_refuses_a_pattern_that_is_not_ecma_262(tmp_path, schema, where):
    [line] = _reject(tmp_path, {"type": "object", **schema})
    assert line.startswith(f"{where}"), line
    assert "not a valid ECMA-262 regular expression" in line


def test_applying_a_config_accepts_an_ecma_pattern_python_would_refuse(tmp_path):
    path = tmp_path / "governance.yaml"
    schema = {"type": "object", "properties": {"name": {"type": "string", "pattern": r"^\p{L}+$"}}}
    path.write_text(yaml.safe_dump(_config(schema)), encoding="utf-8")
    call_command("apply_governance", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert ActionType.objects.get(key="crm.update").params_schema == schema


def test_applying_a_config_refuses_a_remote_ref_without_fetching_it(tmp_path):
    [line] = _reject(tmp_path, {"$ref": "https://schemas.invalid/params.json"})
    assert line.startswith("action_types[0].params_schema"), line
    assert "invalid JSON Schema" in line


# --- values the validator must never be handed ---------------------------------------------


def test_params_nested_too_deeply_are_invalid_not_a_crash():
    _agent, key, _api = _world(schema={"type": "object"})
    nested: dict = {}
    for _ in range(200):
        nested = {"x": nested}
    with pytest.raises(services.SubmissionRefused) as refused:
        _submit(key, {"to": ["a@suppliers.example"], "deep": nested})
    assert refused.value.code == "invalid"


def test_a_stored_schema_that_no_longer_compiles_refuses_submissions():
    _agent, key, api = _world(
        schema={"type": "object", "properties": {"x": {"type": "string", "pattern": "(?P<a>x)"}}}
    )
    response = _post(api, {"x": "x"})
    assert response.status_code == 400, response.content
    assert "schema is invalid" in response.json()["error"]["details"]["params"][0]


@pytest.mark.parametrize("fmt", ["hostname", "idn-hostname"])
def test_host_names_are_canonical_and_refused_when_ambiguous(fmt):
    schema = {"type": "object", "properties": {"host": {"type": "string", "format": fmt}}}
    _agent, key, _api = _world(schema=schema, policy=[{"id": "all", "outcome": "allow"}])
    decision = _submit(key, {"host": "Mail.Bücher.Example"}).decision
    assert decision.params == {"host": "mail.xn--bcher-kva.example"}
    for bad in ("mail.suppliers.example.", "mail suppliers.example", "0x7f.1", "a_b.example"):
        with pytest.raises(services.SubmissionRefused):
            _submit(key, {"host": bad})
