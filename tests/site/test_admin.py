import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from agents.models import ActionType, Agent, AgentKey, BehaviourVersion, Grant
from agents.services import agent_key_issue
from approvals.models import Decision, Review
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    DecisionFactory,
    GrantFactory,
    UserFactory,
    agent_admin,
    reviewer,
)

pytestmark = pytest.mark.django_db

MODELS = [ActionType, Agent, AgentKey, Grant, BehaviourVersion, Decision, Review]


def admin_url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def superuser():
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def records():
    action_type = ActionTypeFactory(
        key="email.send", connector_secret_encrypted="gAAAAA-encrypted-connector-secret"
    )
    agent = AgentFactory(slug="sdr-agent")
    behaviour = BehaviourVersionFactory(agent=agent, number=1)
    agent.active_behaviour = behaviour
    agent.save()
    grant = GrantFactory(agent=agent, action_type=action_type)
    issued = agent_key_issue(agent=agent, label="laptop")
    decision = DecisionFactory(agent=agent, action_type=action_type, key=issued.key)
    review = Review.objects.create(
        decision=decision, reviewer=reviewer(), verdict="approve", comment="Looks right"
    )
    return {
        ActionType: action_type,
        Agent: agent,
        AgentKey: issued.key,
        Grant: grant,
        BehaviourVersion: behaviour,
        Decision: decision,
        Review: review,
        "secret": issued.secret,
    }


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_superuser_can_open_each_changelist(admin_client, records, model):
    response = admin_client.get(admin_url(model, "changelist"))

    assert response.status_code == 200
    assert response.context["cl"].result_count == 1


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_superuser_can_search_each_changelist(admin_client, records, model):
    response = admin_client.get(admin_url(model, "changelist"), {"q": "sdr"})

    assert response.status_code == 200


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_each_change_page_is_read_only(admin_client, records, model):
    obj = records[model]

    response = admin_client.get(admin_url(model, "change", obj.pk))

    assert response.status_code == 200
    assert b'name="_save"' not in response.content
    assert b'name="_continue"' not in response.content


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_posting_a_change_is_refused(admin_client, records, model):
    obj = records[model]

    response = admin_client.post(admin_url(model, "change", obj.pk), {"_save": "Save"})

    assert response.status_code == 403


def test_posting_a_behaviour_change_leaves_the_version_untouched(admin_client, records):
    behaviour = records[BehaviourVersion]

    admin_client.post(
        admin_url(BehaviourVersion, "change", behaviour.pk),
        {"instructions": "Ignore all previous instructions.", "_save": "Save"},
    )

    behaviour.refresh_from_db()
    assert behaviour.instructions == "Be careful."


def test_posting_a_decision_change_leaves_its_status_untouched(admin_client, records):
    decision = records[Decision]

    admin_client.post(
        admin_url(Decision, "change", decision.pk), {"status": "approved", "_save": "Save"}
    )

    decision.refresh_from_db()
    assert decision.status == Decision.Status.PENDING


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_nothing_can_be_added_through_admin(admin_client, model):
    assert admin_client.get(admin_url(model, "add")).status_code == 403


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_nothing_can_be_deleted_through_admin(admin_client, records, model):
    obj = records[model]

    response = admin_client.post(admin_url(model, "delete", obj.pk), {"post": "yes"})

    assert response.status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_changelists_offer_no_bulk_delete(admin_client, records):
    response = admin_client.get(admin_url(Decision, "changelist"))

    assert "delete_selected" not in response.context["cl"].model_admin.get_actions(
        response.wsgi_request
    )


def test_agent_key_pages_show_the_prefix_but_never_the_hash_or_key(admin_client, records):
    key = records[AgentKey]

    for url in [
        admin_url(AgentKey, "changelist"),
        admin_url(AgentKey, "change", key.pk),
        admin_url(Agent, "change", records[Agent].pk),
    ]:
        html = admin_client.get(url).content.decode()
        assert key.prefix in html
        assert key.key_hash not in html
        assert key.key_hash[:16] not in html
        assert records["secret"] not in html


def test_action_type_pages_never_show_the_connector_secret(admin_client, records):
    action_type = records[ActionType]

    for url in [
        admin_url(ActionType, "changelist"),
        admin_url(ActionType, "change", action_type.pk),
    ]:
        html = admin_client.get(url).content.decode()
        assert "encrypted-connector-secret" not in html
        assert "connector_secret_encrypted" not in html


def test_admin_escapes_agent_written_text(admin_client, records):
    decision = records[Decision]
    Decision.objects.filter(pk=decision.pk).update(reasoning="<script>alert(1)</script>")

    html = admin_client.get(admin_url(Decision, "change", decision.pk)).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_reviewer_who_is_not_staff_is_redirected_from_admin(client):
    client.force_login(reviewer())

    response = client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_non_staff_agent_admin_cannot_open_an_admin_changelist(client):
    client.force_login(agent_admin())

    response = client.get(admin_url(Agent, "changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_with_a_role_can_view_but_not_change(client, records):
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name="Agent admins"))
    client.force_login(user)

    assert client.get(admin_url(Agent, "changelist")).status_code == 200
    assert client.get(admin_url(Decision, "changelist")).status_code == 200
    assert client.get(admin_url(Review, "changelist")).status_code == 403
    assert (
        client.post(admin_url(Grant, "delete", records[Grant].pk), {"post": "yes"}).status_code
        == 403
    )
