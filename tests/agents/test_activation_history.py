"""The agent page shows who activated which version, when, from which, and why."""

import pytest

from agents.services import behaviour_version_activate, behaviour_version_create
from tests.factories import AgentFactory, agent_admin

pytestmark = pytest.mark.django_db


def test_the_agent_page_lists_activations_and_rollbacks(client):
    ada = agent_admin(username="ada")
    agent = AgentFactory(slug="support", name="Support agent")
    v1 = behaviour_version_create(agent=agent, instructions="One\n")
    v2 = behaviour_version_create(agent=agent, instructions="Two\n")
    behaviour_version_activate(version=v1, actor=ada, reason="First go")
    behaviour_version_activate(version=v2, actor=ada, reason="Kinder replies")
    behaviour_version_activate(version=v1, actor=ada, reason="Finance is not staffed")
    client.force_login(ada)

    html = client.get("/agents/support/").content.decode()

    history = html.split('id="activations-title"')[1].split("</section>")[0]
    rows = history.split("<tr>")[2:]
    assert len(rows) == 3
    assert "v2 → v1" in rows[0] and "rollback" in rows[0] and "Finance is not staffed" in rows[0]
    assert "v1 → v2" in rows[1] and "Kinder replies" in rows[1] and "ada" in rows[1]
    assert "v1<" in rows[2] and "First go" in rows[2]
    assert 'data-empty="earlier-version"' not in html


def test_an_agent_with_one_version_says_there_is_nothing_to_roll_back_to(client):
    agent = AgentFactory(slug="lonely", name="Lonely agent")
    behaviour_version_create(agent=agent, instructions="Only\n")
    client.force_login(agent_admin(username="ada"))
    html = client.get("/agents/lonely/").content.decode()
    assert 'data-empty="activations"' in html
    assert 'data-empty="earlier-version"' in html


def test_saving_a_version_keeps_the_instructions_trailing_newline(client):
    import json

    from agents.models import BehaviourVersion

    agent = AgentFactory(slug="support", name="Support agent")
    v1 = behaviour_version_create(agent=agent, instructions="Be kind.\nRefund fairly.\n")
    behaviour_version_activate(version=v1)
    client.force_login(agent_admin(username="ada"))
    response = client.post(
        "/agents/support/versions/new/",
        {
            "instructions": "Be kind.\r\nRefund fairly.\r\n",
            "settings": "{}",
            "policy": json.dumps([]),
            "note": "Same text",
            "action": "save",
        },
    )
    assert response.status_code == 302
    v2 = BehaviourVersion.objects.get(agent=agent, number=2)
    assert v2.instructions == v1.instructions
    html = client.get("/agents/support/versions/diff/?a=1&b=2").content.decode()
    assert "have the same instructions, settings and rules" in html
    assert 'class="diff-changed"' not in html
