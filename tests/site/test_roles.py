import pytest
from django.contrib.auth.models import Group
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import include, path

from aispm_site import context_processors, roles
from aispm_site import urls as site_urls
from tests.factories import UserFactory, agent_admin, auditor, reviewer

pytestmark = pytest.mark.django_db

ROLE_PERMISSIONS = [
    roles.REVIEW_PERMISSION,
    roles.MANAGE_AGENTS_PERMISSION,
    roles.AUDIT_PERMISSION,
]


def _placeholder(request):
    return HttpResponse("placeholder")


# Test urlconf: the workspace screens do not exist yet, so stand-ins give their
# URL names something to reverse to.
urlpatterns = [
    path("inbox/", include(([path("", _placeholder, name="inbox")], "approvals"))),
    path("agents/", include(([path("", _placeholder, name="list")], "agents"))),
    path("audit/", include(([path("", _placeholder, name="search")], "audit"))),
    *[
        p
        for p in site_urls.urlpatterns
        if getattr(p, "namespace", None) not in {"approvals", "agents", "audit"}
    ],
]


@pytest.fixture
def workspace_urls(settings):
    settings.ROOT_URLCONF = __name__


def group_permissions(name):
    group = Group.objects.get(name=name)
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in group.permissions.select_related("content_type")
    }


def nav_labels(client, user):
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200
    return [item["label"] for item in response.context["nav_items"]]


@pytest.mark.parametrize(
    ("group", "granted"),
    [
        (roles.REVIEWERS, roles.REVIEW_PERMISSION),
        (roles.AGENT_ADMINS, roles.MANAGE_AGENTS_PERMISSION),
        (roles.AUDITORS, roles.AUDIT_PERMISSION),
    ],
)
def test_each_role_holds_only_its_own_screen_permission(group, granted):
    perms = group_permissions(group)

    assert {p for p in ROLE_PERMISSIONS if p in perms} == {granted}


def test_the_migration_created_the_three_roles():
    names = set(Group.objects.values_list("name", flat=True))

    assert {roles.REVIEWERS, roles.AGENT_ADMINS, roles.AUDITORS} <= names


@pytest.mark.parametrize("group", [roles.REVIEWERS, roles.AUDITORS])
def test_reviewers_and_auditors_cannot_add_change_or_delete_anything(group):
    writes = {
        p
        for p in group_permissions(group)
        if p.split(".")[1].startswith(("add_", "change_", "delete_"))
    }

    assert writes == set()


def test_agent_admins_only_view_decisions_and_audit_events():
    perms = group_permissions(roles.AGENT_ADMINS)
    outside_agents = {p for p in perms if not p.startswith("agents.")}

    assert all(p.split(".")[1].startswith("view_") for p in outside_agents)
    assert "audit.view_auditevent" not in perms


@pytest.mark.parametrize("make_user", [reviewer, auditor])
def test_reviewers_and_auditors_cannot_change_agents(make_user):
    user = make_user()

    for perm in [
        "agents.change_agent",
        "agents.add_grant",
        "agents.change_grant",
        "agents.delete_grant",
        "agents.add_agentkey",
        roles.MANAGE_AGENTS_PERMISSION,
    ]:
        assert not user.has_perm(perm), perm


def test_agent_admins_can_manage_agents_but_not_review_or_export():
    user = agent_admin()

    assert user.has_perm(roles.MANAGE_AGENTS_PERMISSION)
    assert user.has_perm("agents.change_agent")
    assert not user.has_perm(roles.REVIEW_PERMISSION)
    assert not user.has_perm(roles.AUDIT_PERMISSION)


@pytest.mark.usefixtures("workspace_urls")
@pytest.mark.parametrize(
    ("make_user", "expected"),
    [
        (reviewer, ["Inbox"]),
        (agent_admin, ["Agents", "Alerts", "Posture"]),
        (auditor, ["Audit", "Posture"]),
        (UserFactory, []),
    ],
)
def test_navigation_shows_each_role_only_its_own_links(client, make_user, expected):
    assert nav_labels(client, make_user()) == expected


@pytest.mark.usefixtures("workspace_urls")
def test_navigation_links_point_at_the_workspace_screens(client):
    client.force_login(reviewer())

    response = client.get("/")

    assert b'href="/inbox/"' in response.content
    assert b'href="/agents/"' not in response.content
    assert b'href="/audit/"' not in response.content


@pytest.mark.usefixtures("workspace_urls")
def test_a_user_with_two_roles_sees_both_links(client):
    user = UserFactory(groups=[roles.REVIEWERS, roles.AUDITORS])

    assert nav_labels(client, user) == ["Inbox", "Audit", "Posture"]


@pytest.mark.usefixtures("workspace_urls")
def test_superuser_sees_every_link_and_admin(client):
    user = UserFactory(is_superuser=True, is_staff=True)

    assert nav_labels(client, user) == [
        "Inbox",
        "Agents",
        "Alerts",
        "Audit",
        "Posture",
        "Admin",
    ]


@pytest.mark.usefixtures("workspace_urls")
def test_staff_without_a_role_sees_only_admin(client):
    assert nav_labels(client, UserFactory(is_staff=True)) == ["Admin"]


@pytest.mark.usefixtures("workspace_urls")
def test_navigation_marks_the_current_screen():
    request = RequestFactory().get("/inbox/?page=2")
    request.user = reviewer()

    items = context_processors.navigation(request)["nav_items"]

    assert [(i["label"], i["current"]) for i in items] == [("Inbox", True)]


def test_navigation_skips_a_screen_whose_url_does_not_exist(monkeypatch):
    monkeypatch.setattr(
        context_processors,
        "WORKSPACES",
        [
            context_processors.Workspace(
                "Ghost", "nowhere:ghost", roles.REVIEW_PERMISSION, "Not built."
            )
        ],
    )
    request = RequestFactory().get("/")
    request.user = reviewer()

    assert context_processors.navigation(request) == {"nav_items": []}


def test_navigation_is_empty_for_anonymous_users(client):
    request = RequestFactory().get("/accounts/login/")
    request.user = None

    assert context_processors.navigation(request) == {"nav_items": []}
    assert client.get("/accounts/login/").context["nav_items"] == []


@pytest.mark.usefixtures("workspace_urls")
def test_home_lists_the_workspaces_of_the_users_role(client):
    client.force_login(auditor())

    response = client.get("/")

    assert [w["label"] for w in response.context["workspaces"]] == ["Audit", "Posture"]
    assert b"You have no role yet" not in response.content


def test_home_lists_a_workspace_whose_screen_is_missing_as_not_available(client, monkeypatch):
    monkeypatch.setattr(
        context_processors,
        "WORKSPACES",
        [
            context_processors.Workspace(
                "Ghost", "nowhere:ghost", roles.REVIEW_PERMISSION, "Not built."
            )
        ],
    )
    client.force_login(reviewer())

    response = client.get("/")

    assert response.context["workspaces"] == [
        {"label": "Ghost", "description": "Not built.", "url": None}
    ]
    assert b"Not available yet" in response.content


def test_home_explains_that_a_user_without_a_role_has_nothing_to_open(client):
    client.force_login(UserFactory())

    response = client.get("/")

    assert response.context["workspaces"] == []
    assert b"You have no role yet" in response.content


@pytest.mark.parametrize("make_user", [agent_admin, auditor])
def test_posture_is_in_the_navigation_of_those_who_may_open_it(client, make_user):
    client.force_login(make_user())

    response = client.get("/")

    assert b'<a href="/posture/"' in response.content
    assert "Posture" in [item["label"] for item in response.context["nav_items"]]
    page = client.get("/posture/")
    assert page.status_code == 200
    assert [i["label"] for i in page.context["nav_items"] if i["current"]] == ["Posture"]


@pytest.mark.parametrize("make_user", [reviewer, UserFactory])
def test_posture_is_neither_shown_nor_opened_for_anyone_else(client, make_user):
    client.force_login(make_user())

    home = client.get("/")

    assert b'href="/posture/' not in home.content
    assert "Posture" not in [item["label"] for item in home.context["nav_items"]]
    assert "Posture" not in [w["label"] for w in home.context["workspaces"]]
    assert client.get("/posture/").status_code == 403
    assert client.get("/posture/report/").status_code == 403
