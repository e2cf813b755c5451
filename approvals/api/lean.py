"""The common case of a submission, without DRF.

POST decisions/ is the agent API's busiest operation, and DRF's request wrapping,
content negotiation, serializer construction and response rendering cost more Python
than the whole submission pipeline. `decision_submit` answers the common case itself:
a UTF-8 JSON body whose fields plainly have the request's shape (what
DecisionSubmitView.InputSerializer would accept unchanged), with a key that
authenticates. It runs the same pipeline (services.decision_submit), renders the same
representation and refusals, and sends the same headers.

For anything else it returns None before it has changed anything, and the DRF view
(approvals/api/decisions.py) answers, as it answers every other request: so every
refusal of a malformed request, with its message and status, is the DRF view's.
tests/approvals/api/test_lean_submit.py holds the two paths equal.
"""

import math

import orjson
from django.conf import settings
from django.http import HttpResponse
from rest_framework.exceptions import AuthenticationFailed

from agents.auth import agent_for_header
from aispm_site import hostile
from approvals import services

from . import errors as api_errors
from .decisions import DecisionSubmitView, DecisionsView, submission_response
from .fast_json import LONG_NUMBER, FastJSONRenderer
from .parsers import MAX_JSON_DEPTH

_JSON_TYPES = {"application/json", "application/json;charset=utf-8"}
_ANY = {None, "*/*", "application/json", "application/*"}
_FIELDS = frozenset(DecisionSubmitView.InputSerializer().fields)


# What DRF's APIView adds to every response of the view on this path (one renderer,
# so no Vary).
def _allow() -> str:
    view = DecisionsView()
    view.setup(None)  # as for each request: it answers HEAD where it answers GET
    return ", ".join(view.allowed_methods)


_ALLOW = _allow()
_RENDERER = FastJSONRenderer()


def _text(value, *, longest: int, blank: bool = False) -> bool:
    """Whether DRF's CharField would take this value unchanged."""
    return (
        type(value) is str
        and (blank or value != "")
        and len(value) <= longest
        and value.strip() == value
        and "\x00" not in value
    )


def _plain_object(value, name: str) -> bool:
    if type(value) is not dict:
        return False
    try:
        hostile.check_structure(value, name=name, max_depth=MAX_JSON_DEPTH)
    except hostile.Refused:
        return False
    return True


def _shaped(data) -> dict | None:
    """The validated fields, if the serializer would accept `data` as it is; else None."""
    if type(data) is not dict or not _FIELDS.issuperset(data):
        return None
    action, reasoning = data.get("action"), data.get("reasoning")
    params, evidence = data.get("params"), data.get("evidence", {})
    confidence = data.get("confidence")
    key, ref = data.get("idempotency_key"), data.get("external_ref", "")
    if not (
        _text(action, longest=100)
        and _text(reasoning, longest=50000)
        and _text(ref, longest=255, blank=True)
        and (key is None or _text(key, longest=255))
        and _plain_object(params, "params")
        and _plain_object(evidence, "evidence")
    ):
        return None
    if confidence is not None:
        if type(confidence) not in (int, float) or not math.isfinite(confidence):
            return None
        if not 0 <= confidence <= 1:
            return None
        confidence = float(confidence)
    return {
        "action": action,
        "params": params,
        "reasoning": reasoning,
        "evidence": evidence,
        "confidence": confidence,
        "idempotency_key": key,
        "external_ref": ref,
    }


def _header_key(request, body_key: str | None) -> tuple[bool, str | None]:
    """(plain, key): the idempotency key, unless the header needs the view's checks."""
    header_key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if header_key is None:
        return True, body_key
    if not _text(header_key, longest=255) or hostile.text_problem(header_key):
        return False, None
    if body_key and body_key != header_key:
        return False, None
    return True, header_key


def _media_type(value: str | None) -> str | None:
    return None if value is None else value.replace(" ", "").lower()


def _response(data: dict, status: int, headers: dict | None = None) -> HttpResponse:
    response = HttpResponse(
        _RENDERER.render(data), status=status, content_type="application/json", headers=headers
    )
    response["Allow"] = _ALLOW
    return response


def decision_submit(request) -> HttpResponse | None:
    """The submission's response, or None for the DRF view to answer the request."""
    meta = request.META
    size = hostile.parse_int(meta.get("CONTENT_LENGTH") or "", minimum=0)
    if (
        meta.get("QUERY_STRING")
        or _media_type(meta.get("CONTENT_TYPE")) not in _JSON_TYPES
        or _media_type(meta.get("HTTP_ACCEPT")) not in _ANY
        or size is None
        or size > settings.AISPM_MAX_BODY_BYTES
        or not meta.get("HTTP_AUTHORIZATION")
    ):
        return None
    body = request.body
    if LONG_NUMBER.search(body):
        return None
    try:
        data = _shaped(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None
    if data is None:
        return None
    plain, idempotency_key = _header_key(request, data["idempotency_key"])
    if not plain:
        return None
    header, ip = meta["HTTP_AUTHORIZATION"], meta.get("REMOTE_ADDR") or None
    try:
        # A key this process read before comes from memory; the pipeline confirms it
        # against the database before anything it does counts (services.KeyChanged).
        agent, key = agent_for_header(header, ip=ip, remember=True)
        # As DRF copies them, for the request's log line.
        request.user, request.auth = agent, key
        try:
            representation, status = submission_response(key, data, idempotency_key)
        except services.KeyChanged:
            agent, key = agent_for_header(header, ip=ip)
            request.user, request.auth = agent, key
            representation, status = submission_response(key, data, idempotency_key)
    except AuthenticationFailed:
        return None
    except api_errors.ApiError as error:
        return _response(
            api_errors.envelope(error.code, error.message, error.details),
            error.status_code,
            error.headers,
        )
    return _response(representation, status)
