"""Single sign-on against a real OpenID provider (panva/oidc-provider) started by the test."""

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
import time_machine
from django.contrib.auth.models import Group, User
from django.core.exceptions import SuspiciousOperation
from django.utils import timezone

from aispm_site import oidc
from tests.factories import UserFactory
from tests.oidc import ACCOUNTS, CLIENT_ID, CLIENT_SECRET, OpenIDProvider, sign_in_at_provider
from tests.site.test_settings_env import SECRET, run_django

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"


def start_login(client, next_url="/inbox/") -> str:
    response = client.get("/oidc/login/", {"next": next_url})
    assert response.status_code == 302
    return response["Location"]


def local(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("", "", parts.path, parts.query, ""))


def log_in(client, login="rita", *, http=None) -> requests.Session:
    http = http or requests.Session()
    callback = sign_in_at_provider(start_login(client), login, http=http)
    response = client.get(local(callback))
    assert response.status_code == 302, response.content
    assert response["Location"] == "/inbox/"
    return http


def roles_of(username: str) -> set[str]:
    return set(User.objects.get(username=username).groups.values_list("name", flat=True))


@pytest.fixture
def foreign_provider(tmp_path, provider_keys):
    """Another issuer that signs with the very same keys: only `iss` tells them apart."""
    running = OpenIDProvider(tmp_path, jwks=provider_keys, accounts=ACCOUNTS).start()
    yield running
    running.stop()


def test_the_login_request_uses_the_code_flow_with_pkce_state_and_nonce(client, sso):
    location = start_login(client)

    query = parse_qs(urlsplit(location).query)
    assert location.startswith(f"{sso.issuer}/auth?")
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [CLIENT_ID]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) >= 43
    assert len(query["state"][0]) >= 32
    assert len(query["nonce"][0]) >= 32


def test_sso_login_creates_the_user_with_the_mapped_roles(client, sso):
    log_in(client, "rita")

    user = User.objects.get(username="rita")
    assert roles_of("rita") == {"Reviewers"}
    assert user.email == "rita@example.test"
    assert user.first_name == "Rita Reviewer"
    assert not user.has_usable_password()
    assert client.get("/inbox/").status_code == 200


def test_groups_are_synced_at_every_login_and_unmanaged_groups_stay(client, sso):
    custom = Group.objects.create(name="Custom")
    user = User.objects.create(username="alan")
    user.set_unusable_password()
    user.save()
    user.groups.add(Group.objects.get(name="Reviewers"), custom)

    log_in(client, "alan")

    assert roles_of("alan") == {"Agent admins", "Auditors", "Custom"}


def test_a_group_removed_at_the_provider_takes_effect_at_next_login(client, sso):
    log_in(client, "rita")
    assert client.get("/inbox/").status_code == 200
    sso.set_accounts({**ACCOUNTS, "rita": {**ACCOUNTS["rita"], "groups": ["staff-everyone"]}})
    client.post("/accounts/logout/")

    callback = sign_in_at_provider(start_login(client), "rita")
    client.get(local(callback))

    assert roles_of("rita") == set()
    assert client.get("/inbox/").status_code == 403


def test_a_session_whose_roles_shrank_ends_within_the_renew_interval(client, sso, settings):
    http = log_in(client, "rita")
    sso.set_accounts({**ACCOUNTS, "rita": {**ACCOUNTS["rita"], "groups": []}})
    assert client.get("/inbox/").status_code == 200  # until the interval passes

    later = timezone.now() + timezone.timedelta(seconds=settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS)
    with time_machine.travel(later + timezone.timedelta(seconds=1)):
        renewal = client.get("/inbox/")
        assert renewal.status_code == 302
        assert parse_qs(urlsplit(renewal["Location"]).query)["prompt"] == ["none"]
        ended = client.get(local(sign_in_at_provider(renewal["Location"], "rita", http=http)))

    assert ended["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session
    assert roles_of("rita") == set()


def test_an_htmx_request_due_for_renewal_reloads_the_page_instead(client, sso, settings):
    log_in(client, "rita")

    later = timezone.now() + timezone.timedelta(seconds=settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS)
    with time_machine.travel(later + timezone.timedelta(seconds=1)):
        response = client.get("/inbox/counter/", headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response["HX-Refresh"] == "true"


def test_a_renewal_with_the_same_roles_keeps_the_session(client, sso, settings):
    http = log_in(client, "rita")

    later = timezone.now() + timezone.timedelta(seconds=settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS)
    with time_machine.travel(later + timezone.timedelta(seconds=1)):
        renewal = client.get("/inbox/")
        renewed = client.get(local(sign_in_at_provider(renewal["Location"], "rita", http=http)))

        assert renewed["Location"] == "/inbox/"
        assert client.get("/inbox/").status_code == 200


def test_a_session_ends_when_the_provider_no_longer_knows_the_user(client, sso, settings):
    http = log_in(client, "rita")
    sso.set_accounts({"alan": ACCOUNTS["alan"]})

    later = timezone.now() + timezone.timedelta(seconds=settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS)
    with time_machine.travel(later + timezone.timedelta(seconds=1)):
        renewal = client.get("/inbox/")
        client.get(local(sign_in_at_provider(renewal["Location"], "rita", http=http)))

    assert "_auth_user_id" not in client.session
    assert client.get("/inbox/").status_code == 302


def test_a_callback_with_a_state_this_session_did_not_issue_is_refused(client, sso):
    callback = sign_in_at_provider(start_login(client), "rita")
    parts = urlsplit(callback)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    query["state"] = "not-the-state-this-session-was-given-0000000"

    response = client.get(parts.path, query)

    assert response.status_code == 400
    assert "_auth_user_id" not in client.session
    assert not User.objects.filter(username="rita").exists()


def test_an_id_token_with_another_nonce_is_refused(client, sso):
    location = start_login(client)
    parts = urlsplit(location)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    query["nonce"] = "a-nonce-that-this-session-never-issued-000"
    forged = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))

    response = client.get(local(sign_in_at_provider(forged, "rita")))

    assert response.status_code == 400
    assert "_auth_user_id" not in client.session
    assert not User.objects.filter(username="rita").exists()


def test_an_id_token_from_another_issuer_is_refused(client, sso, foreign_provider):
    location = start_login(client)
    state = parse_qs(urlsplit(location).query)["state"][0]
    pending = client.session["oidc_states"][state]
    foreign_location = location.replace(sso.issuer, foreign_provider.issuer)
    callback = sign_in_at_provider(foreign_location, "rita")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    tokens = requests.post(
        f"{foreign_provider.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://testserver/oidc/callback/",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "code_verifier": pending["code_verifier"],
        },
        timeout=10,
    ).json()
    # Same signing keys, so the signature verifies; only the issuer differs.
    with pytest.raises(SuspiciousOperation, match="another issuer"):
        oidc.Backend().verify_token(tokens["id_token"], nonce=pending["nonce"])

    # And through the callback: the configured provider refuses the foreign code.
    response = client.get(local(callback))
    assert response.status_code == 400
    assert "_auth_user_id" not in client.session


def test_logout_ends_the_provider_session_too(client, sso):
    http = log_in(client, "rita")

    response = client.post("/accounts/logout/")

    assert "_auth_user_id" not in client.session
    end_session = response["Location"]
    query = parse_qs(urlsplit(end_session).query)
    assert end_session.startswith(f"{sso.issuer}/session/end?")
    assert query["post_logout_redirect_uri"] == ["http://testserver/accounts/login/"]
    assert query["id_token_hint"]
    confirm = http.get(end_session, timeout=10)
    xsrf = confirm.text.split('name="xsrf" value="')[1].split('"')[0]
    done = http.post(
        f"{sso.issuer}/session/end/confirm",
        data={"xsrf": xsrf, "logout": "yes"},
        allow_redirects=False,
        timeout=10,
    )
    assert done.headers["Location"].startswith("http://testserver/accounts/login/")
    # The provider asks for the login again instead of signing the user straight in.
    again = http.get(start_login(client), allow_redirects=True, timeout=10)
    assert 'name="login"' in again.text


def test_a_local_session_logs_out_locally(client, sso):
    client.force_login(UserFactory())

    response = client.post("/accounts/logout/")

    assert response["Location"] == "/accounts/login/"


def test_the_login_page_offers_single_sign_on_only_when_configured(client, settings, sso):
    assert b'id="sso-login"' in client.get("/accounts/login/").content
    settings.OIDC_ISSUER = ""
    assert b'id="sso-login"' not in client.get("/accounts/login/").content
    assert client.get("/oidc/login/").status_code == 404
    assert client.get("/oidc/callback/").status_code == 404


def test_with_local_login_off_only_the_break_glass_superuser_uses_a_password(client, settings, sso):
    settings.AISPM_LOCAL_LOGIN = False
    UserFactory(username="bob")
    UserFactory(username="root", is_superuser=True, is_staff=True)

    refused = client.post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    allowed = client.post("/accounts/login/", {"username": "root", "password": PASSWORD})

    assert refused.status_code == 200
    assert b"Please enter a correct username and password" in refused.content
    assert allowed.status_code == 302
    assert b"Administrator (break-glass) login" in client.get("/accounts/login/").content


def test_login_throttling_still_locks_out_local_logins(client, settings, sso):
    settings.AISPM_LOCAL_LOGIN = False
    UserFactory(username="root", is_superuser=True, is_staff=True)
    for _ in range(5):
        client.post("/accounts/login/", {"username": "root", "password": "wrong"})

    locked = client.post("/accounts/login/", {"username": "root", "password": PASSWORD})

    assert locked.status_code == 429


def test_a_provider_account_named_like_a_local_user_cannot_take_it_over(client, sso):
    UserFactory(username="rita", is_superuser=True)
    callback = sign_in_at_provider(start_login(client), "rita")

    response = client.get(local(callback))

    assert response["Location"] == "/accounts/login/?sso=failed"
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize(
    "query",
    [
        "code=%00&state=%00",
        "code=a&state=%ED%A0%80",
        "code=a&state=" + "9" * 5000,
        "code=a&state=%E2%80%AEevil",
        "error=%00&state=%00",
        "code=" + "9" * 40 + "&state=" + "1e309",
    ],
)
def test_hostile_callback_parameters_never_cause_a_server_error(client, sso, query):
    start_login(client)

    response = client.generic("GET", "/oidc/callback/", QUERY_STRING=query)

    assert response.status_code in {302, 400}
    assert "_auth_user_id" not in client.session


def test_the_provider_being_down_sends_the_user_back_with_a_message(client, settings, sso):
    settings.OIDC_ISSUER = "http://127.0.0.1:9"
    oidc.forget_discovery()

    response = client.get("/oidc/login/", follow=True)

    assert b"Single sign-on is unavailable right now" in response.content


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OIDC_GROUP_MAP": "aispm-reviewers=Reviewer"}, "OIDC_GROUP_MAP"),
        ({"OIDC_GROUP_MAP": "no-equals-sign"}, "OIDC_GROUP_MAP"),
        ({"OIDC_ISSUER": "ftp://idp.example"}, "OIDC_ISSUER"),
        ({"OIDC_ISSUER": "https://idp.example"}, "OIDC_CLIENT_ID"),
        ({"OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS": "soon"}, "OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS"),
        ({"AISPM_LOCAL_LOGIN": "maybe"}, "AISPM_LOCAL_LOGIN"),
    ],
)
def test_a_bad_sso_setting_fails_naming_the_variable(env, message):
    result = run_django(SECRET_KEY=SECRET, **env)

    assert result.returncode != 0
    assert message in result.stderr


def test_good_sso_settings_are_read(tmp_path):
    script = (
        "import django, json; from django.conf import settings; django.setup(); "
        "print(json.dumps([settings.OIDC_GROUP_MAP, settings.AISPM_LOCAL_LOGIN, "
        "settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS, settings.OIDC_GROUPS_CLAIM, "
        "settings.SECURE_CSP['form-action'][-1]]))"
    )
    result = run_django(
        script,
        SECRET_KEY=SECRET,
        OIDC_ISSUER="https://idp.example/realms/staff",
        OIDC_CLIENT_ID="aispm",
        OIDC_CLIENT_SECRET="s",
        OIDC_GROUP_MAP="aispm-reviewers=Reviewers, aispm-auditors=Auditors",
        OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS="300",
        AISPM_LOCAL_LOGIN="false",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(
        '[{"aispm-reviewers": "Reviewers", "aispm-auditors": "Auditors"}, false, 300, "groups", '
        '"https://idp.example"]'
    )
