import pytest

from agents import keys


def test_generated_keys_are_well_formed_and_unique():
    generated = {keys.generate_key() for _ in range(200)}
    assert len(generated) == 200
    for key in generated:
        assert key.startswith("aispm_")
        assert keys.is_well_formed(key)


def test_a_changed_character_breaks_the_checksum():
    key = keys.generate_key()
    body, checksum = key.rsplit("_", 1)
    flipped = body[:-1] + ("a" if body[-1] != "a" else "b")
    assert not keys.is_well_formed(f"{flipped}_{checksum}")


def test_garbage_is_not_well_formed():
    for value in [
        "",
        "aispm_",
        "Bearer x",
        "aispm_abc_def",
        "x" * 500,
        "aispm_" + "é" * 32 + "_000000",
    ]:
        assert not keys.is_well_formed(value)


def test_the_stored_hash_does_not_contain_the_key():
    key = keys.generate_key()
    assert key not in keys.hash_key(key)
    assert len(keys.hash_key(key)) == 64


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_fast_key_lookup_loads_what_the_orm_loads():
    from agents.auth import _key_by_hash
    from agents.models import AgentKey
    from agents.services import agent_key_issue
    from tests.factories import AgentFactory

    agent = AgentFactory(anomaly_rules=[{"rule": "new_ip"}], callback_url="https://x.example")
    issued = agent_key_issue(agent=agent, label="l")
    fast = _key_by_hash(keys.hash_key(issued.secret))
    slow = AgentKey.objects.select_related("agent").get(pk=issued.key.pk)
    for field in AgentKey._meta.concrete_fields:
        assert getattr(fast, field.attname) == getattr(slow, field.attname), field.name
    for field in type(agent)._meta.concrete_fields:
        assert getattr(fast.agent, field.attname) == getattr(slow.agent, field.attname), field.name
    assert fast.agent.anomaly_rules == [{"rule": "new_ip"}]
