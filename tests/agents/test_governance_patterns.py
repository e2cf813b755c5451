"""The governance file's own patterns follow ECMA-262, as JSON Schema says: `$` is
the end of the text, so a trailing line break does not slip through."""

import io

import pytest
from django.core.management import CommandError, call_command

from agents.governance import validate_governance
from agents.models import ActionType, Agent

pytestmark = pytest.mark.django_db


def config(*, key="email.send", slug="sdr-agent", secret_env="SDR_WEBHOOK_SECRET"):
    return {
        "action_types": [
            {
                "key": key,
                "name": "Send email",
                "params_schema": {"type": "object"},
                "irreversible": False,
                "connector": {
                    "type": "webhook",
                    "url": "https://hooks.acme.example/email",
                    "secret_env": secret_env,
                },
            }
        ],
        "agents": [{"slug": slug, "name": "SDR agent"}],
    }


def test_a_clean_file_passes():
    assert validate_governance(config()) == []


@pytest.mark.parametrize(
    ("field", "value", "where", "message"),
    [
        ("slug", "sdr-agent\n", "agents[0].slug", "must be a slug"),
        ("key", "email.send\n", "action_types[0].key", "must be an action key"),
        (
            "secret_env",
            "SDR_WEBHOOK_SECRET\n",
            "action_types[0].connector.secret_env",
            "must be an environment variable name",
        ),
    ],
)
def test_a_trailing_line_break_is_refused(field, value, where, message):
    lines = validate_governance(config(**{field: value}))

    assert any(line.startswith(f"{where}: {message}") for line in lines), lines


@pytest.mark.parametrize("slug", ["sdr-agent\r\n", "\nsdr-agent", "sdr\nagent"])
def test_other_line_breaks_in_a_slug_are_refused(slug):
    assert any(
        line.startswith("agents[0].slug:") for line in validate_governance(config(slug=slug))
    )


def test_the_command_writes_nothing_for_a_slug_with_a_trailing_line_break(tmp_path):
    path = tmp_path / "governance.yaml"
    path.write_text('agents:\n  - slug: "sdr-agent\\n"\n    name: SDR agent\n', encoding="utf-8")

    with pytest.raises(CommandError):
        call_command("apply_governance", str(path), stdout=io.StringIO(), stderr=io.StringIO())

    assert not Agent.objects.exists()
    assert not ActionType.objects.exists()
