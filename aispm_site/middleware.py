import logging
import re
import time
import uuid

from django.conf import settings
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.core.signals import request_finished
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.middleware.locale import LocaleMiddleware
from django.utils import translation
from django.utils.module_loading import import_string

from .hostile import parse_int, text_problem
from .logging import current_decision_id, current_request, current_request_id

log = logging.getLogger("aispm.request")

# An incoming id is reused only when it cannot smuggle anything into a log line or header.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{7,127}")


def request_id_from(request) -> str:
    # META rather than request.headers, which would parse every header on each request.
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
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


class RefuseHostileInputMiddleware:
    """A 400, before any view, for a NUL in the query string or (outside the API, whose
    path parameters are ids it parses itself) the path; and a 413 for a form body over
    DATA_UPLOAD_MAX_MEMORY_SIZE.

    PostgreSQL cannot store or compare text holding NUL, so a filter or a path segment
    with one would otherwise fail deep in a query. Lone surrogates cannot arrive here:
    Django decodes the URL as UTF-8 and replaces what is not. An oversized form body
    would otherwise surface as RequestDataTooBig in whatever first reads request.POST,
    logged with a traceback. (The agent API answers its own 413 with the error envelope.)
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        api = request.path.startswith("/api/")
        # The API's path parameters are ids it parses itself: a NUL there is a 404.
        nul_in_path = not api and text_problem(request.path)
        if nul_in_path or "%00" in query or "\x00" in query:
            message = "The URL contains a NUL character."
            if api:
                return JsonResponse({"error": {"code": "invalid", "message": message}}, status=400)
            return HttpResponseBadRequest(message, content_type="text/plain")
        size = parse_int(request.META.get("CONTENT_LENGTH") or "0", minimum=0)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if not api and limit is not None and size is not None and size > limit:
            return HttpResponse("The form is too large.", status=413, content_type="text/plain")
        return self.get_response(request)


class ApiFastPathMiddleware:
    """Send agent API requests (AISPM_API_PREFIX) down a short middleware chain.

    Agents authenticate with a key on every request: sessions, messages, CSRF,
    authentication from the session, htmx and django-axes do nothing for them, but
    each costs Python on every call. Django has no per-URL middleware, so this one
    short-circuits: an API request skips the rest of MIDDLEWARE and goes through
    AISPM_API_MIDDLEWARE (the response headers: Content-Length, X-Frame-Options,
    Content-Security-Policy) to the view, resolved and called as Django's handler
    does, with the same handling of exceptions. Everything above this middleware
    (the request id, the log line, the hostile-input refusals, the security headers)
    applies to both paths. Other paths, the API's schema and docs pages included,
    take the whole chain.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.prefix = settings.AISPM_API_PREFIX
        self.api_chain = _ApiHandler(
            settings.AISPM_API_MIDDLEWARE,
            {
                (method, self.prefix + path): import_string(view)
                for (method, path), view in settings.AISPM_API_LEAN_VIEWS.items()
            },
        ).chain

    def __call__(self, request):
        if request.path_info.startswith(self.prefix):
            return self.api_chain(request)
        return self.get_response(request)


class ReaderLocaleMiddleware(LocaleMiddleware):
    """Django's LocaleMiddleware, choosing among LANGUAGES from Accept-Language (or the
    language cookie) the locale that money and numbers are written in.

    aispm has no translations, so the interface stays in English: the chosen language is
    kept as `request.reader_language` for approvals.readable, and English is activated
    again. Otherwise Django's own catalogues would mix German into English pages (form
    errors, "timesince") and its number localisation would put decimal commas into
    numbers that templates write into HTML and SVG attributes. The response still varies
    on Accept-Language, as LocaleMiddleware marks it.
    """

    def process_request(self, request):
        super().process_request(request)
        request.reader_language = request.LANGUAGE_CODE
        translation.activate(settings.LANGUAGE_CODE)
        request.LANGUAGE_CODE = translation.get_language()


class _ApiHandler(BaseHandler):
    """Django's own resolve-and-call (BaseHandler._get_response) under a short,
    synchronous middleware list, assembled as BaseHandler.load_middleware does.

    `lean` maps (method, path) to a function that answers the common case of that
    operation without resolving the URL or entering DRF (AISPM_API_LEAN_VIEWS); when it
    returns None, the request is resolved and its view called as usual. Its response
    passes through the same middleware.
    """

    def __init__(self, paths: list[str], lean: dict | None = None):
        self.lean = lean or {}
        self._view_middleware, self._template_response_middleware = [], []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(paths):
            instance = import_string(path)(handler)
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(instance.process_template_response)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self.chain = handler

    def _get_response(self, request):
        lean = self.lean.get((request.method, request.path_info))
        if lean is not None:
            response = lean(request)
            if response is not None:
                return response
        return super()._get_response(request)


def clear_request_context(**kwargs) -> None:
    current_request.set(None)
    current_request_id.set(None)
    current_decision_id.set(None)


request_finished.connect(clear_request_context, dispatch_uid="aispm_clear_request_context")
