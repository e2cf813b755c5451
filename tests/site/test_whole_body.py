"""aispm_site.wsgi hands the server a finished response's body in one piece, and
streamed responses as they are."""

import io

from django.core.signals import request_finished
from django.http import HttpResponse, StreamingHttpResponse

from aispm_site.wsgi import WholeBody, application


def environ(path: str) -> dict:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }


def finished_count():
    calls = []

    def receiver(**kwargs):
        calls.append(kwargs)

    request_finished.connect(receiver, weak=False)
    return calls, receiver


def test_a_finished_response_is_one_bytes_object_and_is_closed_once():
    response = HttpResponse(b"")
    response.write(b"first ")
    response.write(b"second")
    calls, receiver = finished_count()
    try:
        body = WholeBody(lambda environ, start_response: response)({}, None)
    finally:
        request_finished.disconnect(receiver)
    assert body == [b"first second"]
    assert response.closed
    assert len(calls) == 1


def test_a_streamed_response_is_passed_through_unread():
    read = []

    def rows():
        for row in (b"a,b\r\n", b"1,2\r\n"):
            read.append(row)
            yield row

    response = StreamingHttpResponse(rows())
    result = WholeBody(lambda environ, start_response: response)({}, None)
    assert result is response
    assert read == []  # nothing consumed: the server streams it
    assert b"".join(result) == b"a,b\r\n1,2\r\n"


def test_the_deployed_application_answers_with_a_list(db, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    started = []
    body = application(
        environ("/healthz/"), lambda status, headers, exc=None: started.append(status)
    )
    assert type(body) is list and len(body) == 1
    assert started and started[0].startswith("200")
