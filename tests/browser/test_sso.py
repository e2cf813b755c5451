"""Single sign-on in Chromium, through the real provider's own login page."""

import pytest
from django.contrib.auth.models import User

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in_at_the_provider_page(page, login):
    page.locator('input[name="login"]').fill(login)
    page.locator('input[name="password"]').fill("any password")
    page.get_by_role("button", name="Sign-in").click()


def test_a_reviewer_signs_in_through_the_provider_and_out_again(page, live_server, sso):
    page.goto("/accounts/login/?next=/inbox/")
    page.get_by_role("link", name="Sign in with single sign-on").click()
    page.wait_for_url(f"{sso.issuer}/**")
    sign_in_at_the_provider_page(page, "rita")

    page.wait_for_url(f"{live_server.url}/inbox/")
    assert page.locator(".whoami").inner_text() == "rita"
    assert set(User.objects.get(username="rita").groups.values_list("name", flat=True)) == {
        "Reviewers"
    }

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{sso.issuer}/**")
    page.get_by_role("button", name="Yes, sign me out").click()
    page.wait_for_url(f"{live_server.url}/accounts/login/**")

    # The provider's session ended too: signing in asks for the login again.
    page.get_by_role("link", name="Sign in with single sign-on").click()
    page.wait_for_url(f"{sso.issuer}/**")
    assert page.locator('input[name="login"]').is_visible()


def test_a_user_without_a_mapped_group_signs_in_but_sees_no_inbox(page, live_server, sso):
    page.goto("/accounts/login/?next=/")
    page.get_by_role("link", name="Sign in with single sign-on").click()
    sign_in_at_the_provider_page(page, "alan")

    page.wait_for_url(f"{live_server.url}/")
    assert set(User.objects.get(username="alan").groups.values_list("name", flat=True)) == {
        "Agent admins",
        "Auditors",
    }
    assert page.goto("/inbox/").status == 403
