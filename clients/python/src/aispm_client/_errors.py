"""Every error this client raises derives from AispmError.

ApiError and its subclasses map the API's error codes (one class per code).
NotApproved and its subclasses are outcomes: the decision exists, but the action
may not go ahead (a policy denial, a reviewer's rejection, an expiry, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import Decision


class AispmError(Exception):
    """The base of every error raised by aispm_client."""


class ApiError(AispmError):
    """The server answered with an error; `code` is the API's error code."""

    code = "error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        details: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code or type(self).code
        self.details = details or {}
        self.headers = headers or {}

    def __str__(self) -> str:
        return f"{self.code} ({self.status_code}): {self.message}"


class Unauthenticated(ApiError):
    """401: the key is missing, malformed, revoked or expired."""

    code = "unauthenticated"


class Invalid(ApiError):
    """400: validation failed; `details` maps each field to its messages."""

    code = "invalid"


class Forbidden(ApiError):
    """403: the agent may not do this."""

    code = "forbidden"


class OutOfScope(Forbidden):
    """403: the action is unknown or not granted to this agent."""

    code = "out_of_scope"


class AgentSuspended(Forbidden):
    """403: the agent is suspended."""

    code = "agent_suspended"


class NotFound(ApiError):
    """404: no such decision (or another agent's), or no active behaviour version."""

    code = "not_found"


class MethodNotAllowed(ApiError):
    code = "method_not_allowed"


class NotAcceptable(ApiError):
    code = "not_acceptable"


class Conflict(ApiError):
    """409: the decision is in the wrong state, or an idempotency key was reused
    with another body."""

    code = "conflict"


class TooLarge(ApiError):
    """413: the body is over the server's limit (256 KiB)."""

    code = "too_large"


class UnsupportedMediaType(ApiError):
    code = "unsupported_media_type"


class RateLimited(ApiError):
    """429: over a limit; retry after `retry_after` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: the server failed; the client already retried what it safely could."""

    code = "server_error"


class ConnectionFailed(AispmError):
    """The server could not be reached (or timed out) on every attempt."""


class NotApproved(AispmError):
    """The decision ended without approval; `decision` is its final state."""

    def __init__(self, decision: Decision, message: str | None = None) -> None:
        self.decision = decision
        self.reason = decision.reason
        super().__init__(message or f"{decision.action} {decision.status}: {self.reason}")


class Denied(NotApproved):
    """The policy denied the action; `reason` is the policy's explanation."""


class Rejected(NotApproved):
    """A reviewer rejected the action; `reason` is the reviewer's words."""

    @property
    def reviewer(self) -> str | None:
        rejections = [r for r in self.decision.reviews if r.verdict == "reject"]
        return rejections[-1].reviewer if rejections else None


class Expired(NotApproved):
    """Nobody decided before the decision expired."""


class Cancelled(NotApproved):
    """The decision was cancelled."""


class Blocked(NotApproved):
    """Approved, but release was blocked (a suspension, revoked grant or the kill switch)."""


class ReleaseFailed(NotApproved):
    """Approved, but the connector failed to perform the action."""


class WaitTimeout(AispmError, TimeoutError):
    """The wait ended before the decision settled; `decision` is the last state seen."""

    def __init__(self, decision: Decision, timeout: float) -> None:
        self.decision = decision
        self.timeout = timeout
        super().__init__(
            f"decision {decision.id} is still {decision.status} after {timeout:g} seconds"
        )


ERRORS_BY_CODE: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        Unauthenticated,
        Invalid,
        Forbidden,
        OutOfScope,
        AgentSuspended,
        NotFound,
        MethodNotAllowed,
        NotAcceptable,
        Conflict,
        TooLarge,
        UnsupportedMediaType,
        RateLimited,
    )
}
ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    400: Invalid,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    406: NotAcceptable,
    409: Conflict,
    413: TooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
}
OUTCOMES: dict[str, type[NotApproved]] = {
    "denied": Denied,
    "rejected": Rejected,
    "expired": Expired,
    "cancelled": Cancelled,
    "blocked": Blocked,
    "failed": ReleaseFailed,
}
