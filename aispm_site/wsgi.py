import io
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aispm_site.settings")


class ChunkedBody:
    """Give Django a Content-Length for a body sent without one (chunked).

    Django reads CONTENT_LENGTH bytes of wsgi.input and no more, so a chunked body read
    as empty. A server that sets wsgi.input_terminated (gunicorn) ends wsgi.input where
    the body ends, so it is safe to read. At most one byte past AISPM_MAX_BODY_BYTES is
    read: the length then says "too large", and the limits that refuse a declared
    Content-Length refuse it too (413 `too_large` on the API).
    """

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if not environ.get("CONTENT_LENGTH") and environ.get("wsgi.input_terminated"):
            body = _read_at_most(environ["wsgi.input"], settings.AISPM_MAX_BODY_BYTES + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            if body:
                environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


class WholeBody:
    """Hand the server a finished response's body as one bytes object.

    Django returns the HttpResponse itself, an iterable that the server walks chunk by
    chunk and then closes. For a response that is not streamed, the body is already in
    memory: a one-item list lets the server write it in one call (granian then skips its
    Python-side iterator wrapper, a measurable part of a small API response's cost).
    The response is closed first, as the server would close it, so its resources are
    freed and request_finished is sent exactly once. Streamed responses (CSV exports,
    files) pass through unchanged and still stream.
    """

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        response = self.app(environ, start_response)
        if not isinstance(response, HttpResponse):
            return response
        try:
            return [response.content]
        finally:
            response.close()


def _read_at_most(stream, limit: int) -> bytes:
    parts, size = [], 0
    while size < limit:
        part = stream.read(limit - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


application = ChunkedBody(WholeBody(get_wsgi_application()))
# Import every URLconf and view now, as each server process starts, rather than in its
# first request: the views' imports build tables that take a second or more, which the
# first agent to reach each new worker would otherwise wait for.
get_resolver().url_patterns  # noqa: B018 - loads them
