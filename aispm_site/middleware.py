import logging
import re
import time
import uuid

from django.core.signals import request_finished

from .logging import current_decision_id, current_request, current_request_id

log = logging.getLogger("aispm.request")

# An incoming id is reused only when it cannot smuggle anything into a log line or header.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{7,127}")


def request_id_from(request) -> str:
    incoming = request.headers.get("X-Request-ID", "")
    if REQUEST_ID_PATTERN.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Give each request an id, bind the request for logging, and log one line for it.

    The line holds the method, the path without its query string (which may
    carry a key), the status and the time until the response started. No
    header, cookie or body is ever logged.

    The context stays bound until the response is closed: Django logs 4xx and
    5xx responses after the middleware returns, and a streamed body is produced
    later still.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = request_id_from(request)
        current_request.set(request)
        current_request_id.set(request.request_id)
        current_decision_id.set(None)
        started = time.perf_counter()
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        # Load the session user, if the view did not, so that this line names
        # them; without a session cookie that costs no query.
        getattr(getattr(request, "user", None), "is_authenticated", None)
        log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response


def clear_request_context(**kwargs) -> None:
    current_request.set(None)
    current_request_id.set(None)
    current_decision_id.set(None)


request_finished.connect(clear_request_context, dispatch_uid="aispm_clear_request_context")
