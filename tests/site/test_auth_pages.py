import re

import pytest
from django.template import loader

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def user():
    return UserFactory(username="alice")


def test_anonymous_visitor_is_redirected_from_home_to_login(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_login_page_renders_labelled_fields(client):
    response = client.get("/accounts/login/")

    html = response.content.decode()
    assert response.status_code == 200
    assert '<label for="id_username">Username</label>' in html
    assert '<label for="id_password">Password</label>' in html
    assert re.search(r'<input id="id_username" name="username"[^>]*autocomplete="username"', html)
    assert re.search(r'<input id="id_password" name="password" type="password"', html)
    assert 'name="csrfmiddlewaretoken"' in html


def test_good_credentials_log_in_and_redirect_home(client, user):
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert home.context["user"] == user
    assert b"Welcome, alice" in home.content


def test_login_honours_a_safe_next_url(client, user):
    response = client.post(
        "/accounts/login/?next=/admin/",
        {"username": "alice", "password": PASSWORD, "next": "/admin/"},
    )

    assert response["Location"] == "/admin/"


def test_bad_credentials_show_an_error_and_stay_on_the_login_page(client, user):
    response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})

    html = response.content.decode()
    assert response.status_code == 200
    assert 'role="alert"' in html
    assert "Please enter a correct username and password" in html
    assert 'aria-invalid="true"' in html
    assert 'value="alice"' in html
    assert "_auth_user_id" not in client.session


def test_logout_by_post_logs_out_and_returns_to_login(client, user):
    client.force_login(user)

    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302


def test_logout_by_get_is_not_allowed(client, user):
    client.force_login(user)

    response = client.get("/accounts/logout/")

    assert response.status_code == 405
    assert "_auth_user_id" in client.session


def test_home_shows_the_user_and_a_post_logout_button(client, user):
    client.force_login(user)

    html = client.get("/").content.decode()

    assert '<span class="whoami"' in html
    assert re.search(r'<form class="logout" method="post" action="/accounts/logout/">', html)
    assert re.search(r'<button[^>]*type="submit">Log out</button>', html)


def test_home_is_get_only(client, user):
    client.force_login(user)

    assert client.post("/").status_code == 405


def test_home_sends_a_nonce_based_csp_without_unsafe_eval(client, user):
    client.force_login(user)

    response = client.get("/")

    policy = response["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert "script-src 'self' 'nonce-" in policy
    assert "'unsafe-eval'" not in policy
    assert "'unsafe-inline'" not in policy
    assert f'nonce="{nonce}"' in response.content.decode()


@pytest.mark.parametrize("logged_in", [False, True])
def test_pages_have_no_inline_scripts_styles_or_handlers(client, user, logged_in):
    if logged_in:
        client.force_login(user)

    html = client.get("/" if logged_in else "/accounts/login/").content.decode()

    assert "<style" not in html
    assert not re.search(r"<[^>]+\sstyle=", html)
    assert not re.search(r"<[^>]+\son[a-z]+=", html)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)


def test_htmx_is_loaded_from_our_own_static_files(client, user):
    client.force_login(user)

    html = client.get("/").content.decode()

    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert any(re.fullmatch(r"/static/django_htmx/htmx-2(\.min)?\.js", s) for s in scripts)
    assert all(s.startswith("/static/") for s in scripts)
    assert '<link rel="stylesheet" href="/static/aispm.css">' in html


def test_htmx_is_configured_to_work_under_csp(client, user):
    client.force_login(user)

    html = client.get("/").content.decode()

    assert '"includeIndicatorStyles": false' in html
    assert '"allowEval": false' in html


def test_body_sends_the_csrf_token_in_hx_headers(client, user):
    client.force_login(user)

    response = client.get("/")

    match = re.search(
        r"<body[^>]*hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'", response.content.decode()
    )
    assert match
    assert len(match.group(1)) == 64


def test_an_unknown_page_renders_the_styled_404(client, user):
    client.force_login(user)

    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert b"Page not found" in response.content
    assert b'class="topbar"' in response.content


def test_the_500_page_renders_without_a_request():
    html = loader.get_template("500.html").render()

    assert "Something went wrong" in html
    assert "/static/aispm.css" in html


def test_the_403_page_extends_the_base_layout():
    html = loader.get_template("403.html").render()

    assert "have access to this page" in html
    assert 'class="topbar"' in html
