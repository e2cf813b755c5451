"""A Content-Length that is not ASCII digits is never a server error: '²' passes
str.isdigit() but not int(), '٣' passes both."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("length", ["²", "٣", "-1", "1_000", " 12", "9" * 40])
@pytest.mark.parametrize("path", ["/accounts/login/", "/api/v1/decisions/"])
def test_a_hostile_content_length_is_not_a_server_error(client, path, length):
    response = client.generic(
        "POST", path, b"username=a&password=b", content_type="text/plain", CONTENT_LENGTH=length
    )
    assert response.status_code < 500
