"""The agent API's error envelope: every 4xx is {"error": {"code", "message", "details"?}}."""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import set_rollback


class ApiError(exceptions.APIException):
    code = "invalid"

    def __init__(self, message: str, *, details: dict | None = None, headers=None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class Invalid(ApiError):
    status_code, code = status.HTTP_400_BAD_REQUEST, "invalid"


class OutOfScope(ApiError):
    status_code, code = status.HTTP_403_FORBIDDEN, "out_of_scope"


class AgentSuspended(ApiError):
    status_code, code = status.HTTP_403_FORBIDDEN, "agent_suspended"


class NotFound(ApiError):
    status_code, code = status.HTTP_404_NOT_FOUND, "not_found"


class Conflict(ApiError):
    status_code, code = status.HTTP_409_CONFLICT, "conflict"


class TooLarge(ApiError):
    status_code, code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large"


class RateLimited(ApiError):
    status_code, code = status.HTTP_429_TOO_MANY_REQUESTS, "rate_limited"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message, headers={"Retry-After": str(max(int(retry_after), 1))})
        self.retry_after = max(int(retry_after), 1)


_REFUSALS = {
    "invalid": Invalid,
    "out_of_scope": OutOfScope,
    "agent_suspended": AgentSuspended,
    "conflict": Conflict,
}


def from_refusal(refusal) -> ApiError:
    """The API error for a services.SubmissionRefused."""
    if refusal.code == "rate_limited":
        return RateLimited(refusal.message, retry_after=refusal.retry_after or 1)
    return _REFUSALS[refusal.code](refusal.message, details=refusal.details)


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field.sub": [messages]}."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            path = f"{prefix}.{name}" if prefix and name else (prefix or name or "body")
            for sub_key, messages in _flatten(value, path).items():
                flat.setdefault(sub_key, []).extend(messages)
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix or "body": [str(item) for item in detail]}
        flat = {}
        for index, item in enumerate(detail):
            for sub_key, messages in _flatten(item, f"{prefix}[{index}]").items():
                flat.setdefault(sub_key, []).extend(messages)
        return flat
    return {prefix or "body": [str(detail)]}


def envelope(code: str, message: str, details: dict | None = None) -> dict:
    error = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


_DRF_CODES = {
    exceptions.ParseError: ("invalid", 400),
    exceptions.AuthenticationFailed: ("unauthenticated", 401),
    exceptions.NotAuthenticated: ("unauthenticated", 401),
    exceptions.PermissionDenied: ("forbidden", 403),
    exceptions.NotFound: ("not_found", 404),
    exceptions.MethodNotAllowed: ("method_not_allowed", 405),
    exceptions.NotAcceptable: ("not_acceptable", 406),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", 415),
    exceptions.Throttled: ("rate_limited", 429),
}


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = NotFound("Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, ApiError):
        set_rollback()
        return Response(
            envelope(exc.code, exc.message, exc.details),
            status=exc.status_code,
            headers=exc.headers,
        )
    if isinstance(exc, exceptions.ValidationError):
        set_rollback()
        return Response(
            envelope("invalid", "The request is not valid.", _flatten(exc.detail)),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, exceptions.APIException):
        code, status_code = next(
            (value for cls, value in _DRF_CODES.items() if isinstance(exc, cls)),
            ("error", exc.status_code),
        )
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        set_rollback()
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        return Response(envelope(code, str(message)), status=status_code, headers=headers)
    return None


class ErrorBody(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


class ErrorOut(serializers.Serializer):
    error = ErrorBody()


def _documented(description: str):
    return OpenApiResponse(response=ErrorOut, description=description)


DOCUMENTED = {
    400: _documented("`invalid`: validation failed; `details` maps field to messages."),
    401: _documented("`unauthenticated`: missing, bad, revoked or expired key."),
    403: _documented("`out_of_scope` or `agent_suspended`."),
    404: _documented("`not_found`: no such decision, or another agent's decision."),
    409: _documented("`conflict`: wrong state, or an idempotency key reused."),
    413: _documented("`too_large`: body over 256 KiB."),
    429: _documented("`rate_limited`: over the limit; `Retry-After` says when."),
}


def documented(*codes: int) -> dict:
    """The OpenAPI responses for these error statuses."""
    return {code: DOCUMENTED[code] for code in codes}
