import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command

from agents import keys
from agents.models import AgentKey
from audit.models import AuditEvent
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def issue(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("issue_agent_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_prints_the_key_alone_on_stdout():
    AgentFactory(slug="sdr-agent")

    out, err = issue("sdr-agent")

    assert out.endswith("\n")
    assert out.count("\n") == 1
    key = out.strip()
    assert keys.is_well_formed(key)
    assert key not in err
    assert "sdr-agent" in err


def test_it_stores_only_the_hash():
    AgentFactory(slug="sdr-agent")

    key = issue("sdr-agent", "--label", "ci")[0].strip()

    stored = AgentKey.objects.get()
    assert stored.key_hash == keys.hash_key(key)
    assert stored.prefix == keys.display_prefix(key)
    assert stored.label == "ci"
    for value in AgentKey.objects.values().get().values():
        assert str(value) != key
        assert key not in str(value)
    event = AuditEvent.objects.get(event="agent_key.issued")
    assert event.actor_label == "issue_agent_key"
    assert key not in str(event.data)


@time_machine.travel(NOW, tick=False)
def test_keys_expire_in_90_days_by_default():
    AgentFactory(slug="sdr-agent")

    issue("sdr-agent")

    assert AgentKey.objects.get().expires_at == NOW + timedelta(days=90)


@time_machine.travel(NOW, tick=False)
def test_it_honours_expires_in():
    AgentFactory(slug="sdr-agent")

    issue("sdr-agent", "--expires-in", "7")

    assert AgentKey.objects.get().expires_at == NOW + timedelta(days=7)


def test_expires_in_0_means_never():
    AgentFactory(slug="sdr-agent")

    out, err = issue("sdr-agent", "--expires-in", "0")

    assert AgentKey.objects.get().expires_at is None
    assert "never expires" in err


def test_it_rejects_an_unknown_agent():
    with pytest.raises(CommandError) as caught:
        issue("nope")

    assert str(caught.value) == "unknown agent 'nope'"
    assert caught.value.returncode == 1
    assert not AgentKey.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("days", ["-1", "100000"])
def test_it_rejects_out_of_range_expiry(days):
    AgentFactory(slug="sdr-agent")

    with pytest.raises(CommandError) as caught:
        issue("sdr-agent", "--expires-in", days)

    assert str(caught.value).startswith("--expires-in must be from 0 (never expires) to ")
    assert not AgentKey.objects.exists()
    assert not AuditEvent.objects.exists()
