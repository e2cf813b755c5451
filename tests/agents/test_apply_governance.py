import copy
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from agents import crypto, services
from agents.governance import GovernanceInvalid, apply_governance_file
from agents.models import ActionType, Agent, AgentKey, BehaviourVersion, Grant
from audit.models import AuditEvent
from tests.factories import ActionTypeFactory, AgentFactory, GrantFactory, UserFactory

pytestmark = pytest.mark.django_db

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INLINE_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

CONFIG = {
    "action_types": [
        {
            "key": "email.send",
            "name": "Send email",
            "summary": "Email to {to}: {subject}",
            "params_schema": {
                "type": "object",
                "required": ["to", "subject", "body"],
                "properties": {
                    "to": {"type": "array", "items": {"type": "string"}},
                    "subject": {"type": "string"},
                    "body": {"type": "string"},
                },
            },
            "irreversible": True,
            "connector": {"type": "webhook", "url": "https://mail-gateway.example/send"},
        },
        {
            "key": "crm.update",
            "name": "Update CRM record",
            "summary": "Set {field} on {record}",
            "params_schema": {"type": "object", "required": ["record", "field"]},
            "irreversible": False,
            "risk": "low",
            "default_outcome": "allow",
            "connector": {
                "type": "webhook",
                "url": "https://crm.example/update",
                "secret_env": "CRM_WEBHOOK_SECRET",
            },
        },
        {
            "key": "notes.add",
            "name": "Add a note",
            "params_schema": {"type": "object"},
            "irreversible": False,
            "connector": {"type": "none"},
        },
    ],
    "agents": [
        {
            "slug": "sdr-agent",
            "name": "SDR agent",
            "owner": "alice",
            "callback_url": None,
            "grants": [
                {
                    "action": "email.send",
                    "limit_per_hour": 200,
                    "constraint": "size(params.to) <= 50",
                },
                {"action": "crm.update", "limit_per_hour": 500},
                {"action": "notes.add"},
            ],
            "behaviour": {
                "instructions": "You are a sales development agent.",
                "settings": {"model": "some-model", "temperature": 0.2},
                "policy": [
                    {
                        "id": "bulk-needs-two",
                        "action": "email.send",
                        "when": "size(params.to) > 10",
                        "outcome": "review",
                        "approvals": 2,
                    },
                    {"id": "crm-auto", "action": "crm.update", "outcome": "allow"},
                ],
            },
        }
    ],
}


@pytest.fixture
def alice():
    return UserFactory(username="alice")


@pytest.fixture
def config(alice):
    return copy.deepcopy(CONFIG)


def write(tmp_path: Path, data, name: str = "governance.yaml") -> Path:
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def apply(path, *args) -> list[str]:
    out = io.StringIO()
    call_command("apply_governance", str(path), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().splitlines()


def counts() -> dict[str, int]:
    models = [ActionType, Agent, AgentKey, Grant, BehaviourVersion, AuditEvent]
    return {model.__name__: model.objects.count() for model in models}


def reject(path) -> list[str]:
    """Run the command, expect it to fail, and check that it wrote nothing."""
    before = counts()
    with pytest.raises(CommandError) as caught:
        apply(path)
    assert caught.value.returncode == 1
    assert counts() == before
    return str(caught.value).splitlines()


def test_first_apply_creates_everything_with_audit_events(tmp_path, config):
    lines = apply(write(tmp_path, config))

    assert lines[0] == "created action type email.send"
    assert lines[1].startswith("generated webhook secret for email.send: whsec_")
    assert lines[2:] == [
        "created action type crm.update",
        "created action type notes.add",
        "created agent sdr-agent",
        "created grant sdr-agent → email.send",
        "created grant sdr-agent → crm.update",
        "created grant sdr-agent → notes.add",
        "created behaviour sdr-agent v1 (active)",
    ]
    agent = Agent.objects.get(slug="sdr-agent")
    assert agent.owner.username == "alice"
    assert agent.callback_url == ""
    version = agent.active_behaviour
    assert version.number == 1
    assert agent.behaviour_activated_at is not None
    assert version.policy == config["agents"][0]["behaviour"]["policy"]
    assert version.settings == {"model": "some-model", "temperature": 0.2}
    assert version.content_hash == services.behaviour_content_hash(
        instructions=version.instructions, settings=version.settings, policy=version.policy
    )
    grants = {g.action_type.key: g for g in agent.grants.select_related("action_type")}
    assert grants["email.send"].limit_per_hour == 200
    assert grants["email.send"].constraint == "size(params.to) <= 50"
    assert grants["notes.add"].limit_per_hour is None
    crm = ActionType.objects.get(key="crm.update")
    assert crm.summary_template == "Set {field} on {record}"
    assert crm.risk == "low"
    assert crm.default_outcome == "allow"
    assert crm.connector_config == {
        "url": "https://crm.example/update",
        "secret_env": "CRM_WEBHOOK_SECRET",
    }
    assert crm.connector_secret_encrypted == ""
    assert ActionType.objects.get(key="notes.add").connector_type == "none"

    events = list(AuditEvent.objects.values_list("event", flat=True))
    assert events == [
        "action_type.created",
        "action_type.created",
        "action_type.created",
        "agent.created",
        "grant.created",
        "grant.created",
        "grant.created",
        "behaviour_version.created",
        "behaviour_version.activated",
    ]
    assert set(AuditEvent.objects.values_list("actor_label", flat=True)) == {"apply_governance"}


def test_it_generates_a_webhook_secret_once_and_stores_it_encrypted(tmp_path, config):
    path = write(tmp_path, config)
    lines = apply(path)

    match = re.fullmatch(
        r"generated webhook secret for email\.send: (whsec_\S+) \(shown once\)", lines[1]
    )
    secret = match.group(1)
    assert crypto.is_webhook_secret(secret)
    email = ActionType.objects.get(key="email.send")
    assert email.connector_config == {"url": "https://mail-gateway.example/send"}
    assert secret not in email.connector_secret_encrypted
    assert crypto.decrypt_secret(email.connector_secret_encrypted) == secret
    for data in AuditEvent.objects.values_list("data", flat=True):
        assert secret.removeprefix("whsec_") not in str(data)

    assert apply(path) == ["No changes."]
    email.refresh_from_db()
    assert crypto.decrypt_secret(email.connector_secret_encrypted) == secret


def test_second_apply_prints_no_changes_and_writes_no_audit_events(tmp_path, config):
    path = write(tmp_path, config)
    apply(path)
    before = counts()

    assert apply(path) == ["No changes."]
    assert counts() == before


def test_a_changed_policy_creates_v2_and_activates_it(tmp_path, config):
    apply(write(tmp_path, config))
    v1 = BehaviourVersion.objects.get(agent__slug="sdr-agent", number=1)
    v1_content = (v1.instructions, v1.settings, v1.policy, v1.content_hash)
    config["agents"][0]["behaviour"]["policy"][0]["approvals"] = 3
    audit_before = AuditEvent.objects.count()

    assert apply(write(tmp_path, config)) == ["created behaviour sdr-agent v2 (active)"]

    agent = Agent.objects.get(slug="sdr-agent")
    assert agent.active_behaviour.number == 2
    assert agent.active_behaviour.policy[0]["approvals"] == 3
    v1.refresh_from_db()
    assert (v1.instructions, v1.settings, v1.policy, v1.content_hash) == v1_content
    new_events = list(AuditEvent.objects.order_by("id"))[audit_before:]
    assert [e.event for e in new_events] == [
        "behaviour_version.created",
        "behaviour_version.activated",
    ]
    assert new_events[1].data["previous"] == 1


def test_returning_to_an_older_behaviour_makes_a_new_version(tmp_path, config):
    apply(write(tmp_path, config))
    original = copy.deepcopy(config)
    config["agents"][0]["behaviour"]["instructions"] = "Be brief."
    apply(write(tmp_path, config))

    assert apply(write(tmp_path, original)) == ["created behaviour sdr-agent v3 (active)"]

    versions = BehaviourVersion.objects.filter(agent__slug="sdr-agent").order_by("number")
    assert [v.number for v in versions] == [1, 2, 3]
    assert versions[0].content_hash == versions[2].content_hash
    assert Agent.objects.get(slug="sdr-agent").active_behaviour == versions[2]


def test_it_removes_grants_missing_from_the_file(tmp_path, config):
    apply(write(tmp_path, config))
    config["agents"][0]["grants"] = config["agents"][0]["grants"][:2]

    assert apply(write(tmp_path, config)) == ["removed grant sdr-agent → notes.add"]

    keys = set(Grant.objects.values_list("action_type__key", flat=True))
    assert keys == {"email.send", "crm.update"}
    event = AuditEvent.objects.latest("id")
    assert event.event == "grant.removed"
    assert event.data["action"] == "notes.add"


def test_an_empty_grant_list_removes_all_and_a_missing_one_keeps_them(tmp_path, config):
    apply(write(tmp_path, config))
    del config["agents"][0]["grants"]
    assert apply(write(tmp_path, config)) == ["No changes."]
    assert Grant.objects.count() == 3

    config["agents"][0]["grants"] = []
    assert len(apply(write(tmp_path, config))) == 3
    assert Grant.objects.count() == 0


def test_it_reports_changed_fields(tmp_path, config):
    apply(write(tmp_path, config))
    config["action_types"][1]["summary"] = "Update {record}"
    config["action_types"][1]["params_schema"] = {"type": "object"}
    config["agents"][0]["name"] = "Sales agent"
    config["agents"][0]["grants"][0]["limit_per_hour"] = 100

    assert apply(write(tmp_path, config)) == [
        "updated action type crm.update: summary, params_schema",
        "updated agent sdr-agent: name",
        "updated grant sdr-agent → email.send: limit_per_hour",
    ]
    events = list(AuditEvent.objects.order_by("-id")[:3])[::-1]
    assert [e.event for e in events] == ["action_type.updated", "agent.updated", "grant.updated"]
    assert events[0].data["changed"] == ["summary_template", "params_schema"]
    assert events[2].data["changes"] == {"limit_per_hour": {"from": 200, "to": 100}}
    assert Agent.objects.get(slug="sdr-agent").name == "Sales agent"


def test_it_leaves_agents_and_action_types_absent_from_the_file_alone(tmp_path, config):
    other = AgentFactory(slug="other-agent")
    kept = ActionTypeFactory(key="ledger.post", irreversible=True)
    GrantFactory(agent=other, action_type=kept)

    apply(write(tmp_path, config))

    assert Grant.objects.filter(agent=other, action_type=kept).exists()
    assert ActionType.objects.filter(key="ledger.post").exists()


def test_grants_and_rules_may_refer_to_action_types_already_stored(tmp_path, config):
    ActionTypeFactory(key="ledger.post", irreversible=True)
    config["agents"][0]["grants"].append({"action": "ledger.post"})
    config["agents"][0]["behaviour"]["policy"].append(
        {"id": "ledger", "action": "ledger.post", "outcome": "review"}
    )

    apply(write(tmp_path, config))

    assert Grant.objects.filter(action_type__key="ledger.post").exists()


def test_inline_secret_is_stored_encrypted_and_compared_on_reapply(tmp_path, config):
    config["action_types"][0]["connector"]["secret"] = INLINE_SECRET
    path = write(tmp_path, config)
    lines = apply(path)

    assert not any("generated" in line for line in lines)
    email = ActionType.objects.get(key="email.send")
    assert "secret" not in email.connector_config
    assert INLINE_SECRET not in email.connector_secret_encrypted
    assert crypto.decrypt_secret(email.connector_secret_encrypted) == INLINE_SECRET
    for data in AuditEvent.objects.values_list("data", flat=True):
        assert INLINE_SECRET not in str(data)
    assert apply(path) == ["No changes."]

    rotated = crypto.generate_webhook_secret()
    config["action_types"][0]["connector"]["secret"] = rotated
    assert apply(write(tmp_path, config)) == ["updated action type email.send: connector"]
    email.refresh_from_db()
    assert crypto.decrypt_secret(email.connector_secret_encrypted) == rotated
    assert AuditEvent.objects.latest("id").data["changed"] == ["connector_secret"]


def test_switching_to_secret_env_drops_the_stored_secret(tmp_path, config):
    apply(write(tmp_path, config))
    config["action_types"][0]["connector"]["secret_env"] = "MAIL_SECRET"

    assert apply(write(tmp_path, config)) == ["updated action type email.send: connector"]

    email = ActionType.objects.get(key="email.send")
    assert email.connector_config["secret_env"] == "MAIL_SECRET"
    assert email.connector_secret_encrypted == ""


def test_email_connector_keeps_its_sender(tmp_path, config):
    config["action_types"][2]["connector"] = {"type": "email", "from": "Bot <bot@example.com>"}
    apply(write(tmp_path, config))

    notes = ActionType.objects.get(key="notes.add")
    assert (notes.connector_type, notes.connector_config) == (
        "email",
        {"from": "Bot <bot@example.com>"},
    )


def test_dry_run_shows_the_changes_and_writes_nothing(tmp_path, config):
    lines = apply(write(tmp_path, config), "--dry-run")

    assert "created agent sdr-agent" in lines
    assert "would generate a webhook secret for email.send" in lines
    assert not any("whsec_" in line for line in lines)
    assert lines[-1] == "Dry run: nothing was written."
    assert set(counts().values()) == {0}


def test_dates_stay_text(tmp_path, config):
    text = yaml.safe_dump(config, sort_keys=False).replace(
        "temperature: 0.2", "temperature: 0.2\n      since: 2024-01-01"
    )
    apply(write(tmp_path, text))

    assert Agent.objects.get().active_behaviour.settings["since"] == "2024-01-01"


def test_the_demo_file_applies_and_reapplies_cleanly(tmp_path):
    UserFactory(username="agentadmin")
    demo = PROJECT_ROOT / "demo" / "governance.yaml"
    if not demo.exists():
        pytest.skip("no demo/governance.yaml")

    assert apply(demo)
    assert apply(demo) == ["No changes."]


def test_apply_governance_file_is_callable_from_code(tmp_path, config):
    result = apply_governance_file(write(tmp_path, config))

    assert result.changed
    assert "created agent sdr-agent" in result.lines
    assert not apply_governance_file(write(tmp_path, config)).changed


def test_it_rolls_back_everything_when_a_write_fails(tmp_path, config, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "behaviour_version_activate", broken)

    with pytest.raises(RuntimeError):
        apply(write(tmp_path, config))

    assert set(counts().values()) == {0}


# Bad input: one clear line, exit status 1, nothing written.


def test_it_rejects_malformed_yaml(tmp_path):
    path = write(tmp_path, "action_types:\n  - key: email.send\n   name: [unclosed\n", "bad.yaml")

    lines = reject(path)

    assert len(lines) == 1
    assert re.match(rf"^{re.escape(str(path))}:3:\d+: invalid YAML: ", lines[0])


def test_it_rejects_duplicate_yaml_keys(tmp_path):
    path = write(tmp_path, "agents: []\nagents: []\n")

    assert re.match(r".*:2:1: invalid YAML: found duplicate key 'agents'", reject(path)[0])


def test_it_rejects_a_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"

    assert reject(path) == [f"{path}: no such file"]


def test_it_rejects_an_unknown_action_in_a_grant(tmp_path, config):
    config["agents"][0]["grants"][0]["action"] = "foo.bar"
    path = write(tmp_path, config)

    assert reject(path) == [f"{path}: agents[0].grants[0].action: unknown action 'foo.bar'"]


def test_it_rejects_a_broken_params_schema(tmp_path, config):
    config["action_types"][0]["params_schema"]["properties"]["to"]["type"] = "strin"
    path = write(tmp_path, config)

    [line] = reject(path)

    assert line.startswith(
        f"{path}: action_types[0].params_schema.properties.to.type: invalid JSON Schema: "
    )


def test_it_rejects_cel_syntax_error_in_a_rule(tmp_path, config):
    config["agents"][0]["behaviour"]["policy"][0]["when"] = "size(params.to) >"
    path = write(tmp_path, config)

    [line] = reject(path)

    assert line.startswith(f"{path}: agents[0].behaviour.policy[0].when: CEL syntax error: ")


def test_it_rejects_cel_syntax_error_in_a_constraint(tmp_path, config):
    config["agents"][0]["grants"][0]["constraint"] = "params.to.size( <= 50"
    path = write(tmp_path, config)

    [line] = reject(path)

    assert line.startswith(f"{path}: agents[0].grants[0].constraint: CEL syntax error: ")


def test_it_rejects_unknown_keys(tmp_path, config):
    config["extras"] = {}
    config["action_types"][0]["colour"] = "red"
    config["action_types"][2]["connector"]["url"] = "https://example.com/"
    config["agents"][0]["grants"][0]["limit"] = 5
    path = write(tmp_path, config)

    lines = reject(path)

    assert [line.split(";")[0] for line in lines] == [
        f"{path}: action_types[0].colour: unknown key",
        f"{path}: action_types[2].connector.url: unknown key",
        f"{path}: agents[0].grants[0].limit: unknown key",
        f"{path}: extras: unknown key",
    ]


def test_it_rejects_allow_on_an_irreversible_action(tmp_path, config):
    config["action_types"][0]["default_outcome"] = "allow"
    config["agents"][0]["behaviour"]["policy"][0]["outcome"] = "allow"
    path = write(tmp_path, config)

    assert reject(path) == [
        f"{path}: action_types[0].default_outcome: "
        "allow is not permitted on an irreversible action",
        f"{path}: agents[0].behaviour.policy[0].outcome: "
        "allow is not permitted on irreversible action 'email.send'",
    ]


def test_it_rejects_an_unknown_owner(tmp_path, config):
    config["agents"][0]["owner"] = "bob"
    path = write(tmp_path, config)

    assert reject(path) == [f"{path}: agents[0].owner: unknown user 'bob'"]


def test_it_rejects_duplicates(tmp_path, config):
    config["action_types"].append(copy.deepcopy(config["action_types"][2]))
    config["agents"].append(copy.deepcopy(config["agents"][0]))
    config["agents"][0]["grants"].append({"action": "notes.add"})
    path = write(tmp_path, config)

    lines = reject(path)

    assert (
        f"{path}: action_types[3].key: duplicate action 'notes.add' (also action_types[2])" in lines
    )
    assert f"{path}: agents[1].slug: duplicate agent 'sdr-agent' (also agents[0])" in lines
    assert (
        f"{path}: agents[0].grants[3].action: duplicate grant for 'notes.add' "
        "(also agents[0].grants[2])"
    ) in lines


def test_it_rejects_bad_connectors(tmp_path, config):
    config["action_types"][0]["connector"] = {
        "type": "webhook",
        "url": "ftp://example.com",
        "secret": "hunter2",
    }
    config["action_types"][1]["connector"] = {"type": "carrier-pigeon"}
    path = write(tmp_path, config)

    lines = reject(path)

    assert f"{path}: action_types[0].connector.url: must be an http or https URL" in lines[0]
    assert lines[1].startswith(
        f"{path}: action_types[0].connector.secret: must be a Standard Webhooks secret"
    )
    assert lines[2] == (
        f"{path}: action_types[1].connector.type: must be one of webhook, email, none"
    )


def test_it_reports_every_problem_at_once(tmp_path, config):
    del config["action_types"][1]["name"]
    config["action_types"][2]["irreversible"] = "maybe"
    config["agents"][0]["slug"] = "SDR agent!"
    config["agents"][0]["behaviour"]["policy"][1]["ttl"] = "forever"
    path = write(tmp_path, config)

    lines = reject(path)

    assert all(line.startswith(f"{path}: ") for line in lines)
    assert [line.removeprefix(f"{path}: ") for line in lines] == [
        "action_types[1].name: is required",
        "action_types[2].irreversible: must be true or false",
        "agents[0].slug: must be a slug: letters, digits, - and _ (got 'SDR agent!')",
        "agents[0].behaviour.policy[1].ttl: ttl must look like 30m, 4h or 2d (got 'forever')",
    ]


def test_a_bad_file_changes_nothing_already_stored(tmp_path, config):
    apply(write(tmp_path, config))
    before = counts()
    config["action_types"][1]["summary"] = "Changed"
    config["agents"][0]["grants"][0]["action"] = "foo.bar"

    reject(write(tmp_path, config))

    assert counts() == before
    assert ActionType.objects.get(key="crm.update").summary_template == "Set {field} on {record}"


def test_validation_errors_are_raised_from_code_too(tmp_path, config):
    config["agents"][0]["owner"] = "bob"

    with pytest.raises(GovernanceInvalid) as caught:
        apply_governance_file(write(tmp_path, config))

    assert caught.value.errors == [
        f"{tmp_path / 'governance.yaml'}: agents[0].owner: unknown user 'bob'"
    ]


def test_manage_py_exits_1_on_malformed_yaml(tmp_path):
    path = write(tmp_path, "agents: [\n", "broken.yaml")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "DEBUG"}
    }
    env["DJANGO_SETTINGS_MODULE"] = "aispm_site.test_settings"

    done = subprocess.run(
        [sys.executable, "manage.py", "apply_governance", str(path)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert re.search(rf"CommandError: {re.escape(str(path))}:2:1: invalid YAML: ", done.stderr)


def test_stored_secrets_survive_setting_an_encryption_key_later(tmp_path, config, settings):
    settings.AISPM_ENCRYPTION_KEY = ""
    config["action_types"][0]["connector"]["secret"] = INLINE_SECRET
    path = write(tmp_path, config)
    apply(path)

    settings.AISPM_ENCRYPTION_KEY = "a-separate-key-for-connector-secrets"

    token = ActionType.objects.get(key="email.send").connector_secret_encrypted
    assert crypto.decrypt_secret(token) == INLINE_SECRET
    assert apply(path) == ["No changes."]


def test_an_undecryptable_secret_is_replaced_from_the_file(tmp_path, config, settings):
    settings.AISPM_ENCRYPTION_KEY = "first-key"
    config["action_types"][0]["connector"]["secret"] = INLINE_SECRET
    path = write(tmp_path, config)
    apply(path)

    settings.AISPM_ENCRYPTION_KEY = "second-key"
    token = ActionType.objects.get(key="email.send").connector_secret_encrypted
    with pytest.raises(crypto.SecretDecryptError):
        crypto.decrypt_secret(token)

    assert apply(path) == ["updated action type email.send: connector"]
    token = ActionType.objects.get(key="email.send").connector_secret_encrypted
    assert crypto.decrypt_secret(token) == INLINE_SECRET
