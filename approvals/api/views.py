"""The agent API (v1): the contract agents code against. See DESIGN.md."""

import math
import uuid

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import parsers, serializers, status
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.auth import AgentKeyAuthentication, IsAgent
from agents.selectors import active_behaviour
from aispm_site import hostile
from aispm_site.logging import bind_decision_id

from .. import selectors, services
from ..models import Decision
from . import errors as api_errors

MAX_JSON_DEPTH = 32


class SafeJSONParser(parsers.JSONParser):
    """JSON only, and a clear 400 for input the standard parser chokes on."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON is nested too deeply.") from None
        except RequestDataTooBig:
            raise api_errors.TooLarge("The body is over 256 KiB.") from None


def _check_json(value, path: str) -> None:
    try:
        hostile.check_structure(value, name=path, max_depth=MAX_JSON_DEPTH)
    except hostile.Refused as exc:
        raise serializers.ValidationError(str(exc)) from None


def _json_object(value, name: str) -> dict:
    if not isinstance(value, dict):
        raise serializers.ValidationError(f"{name} must be a JSON object.")
    _check_json(value, name)
    return value


class ReviewOut(serializers.Serializer):
    verdict = serializers.CharField()
    comment = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    reviewer = serializers.CharField(source="reviewer.username")
    at = serializers.DateTimeField(source="created_at")


class PolicyOut(serializers.Serializer):
    outcome = serializers.CharField(source="policy_outcome")
    rule = serializers.CharField(source="policy_rule", allow_blank=True)
    explanation = serializers.CharField(source="policy_explanation")


RELEASE_STATUSES = {
    Decision.Status.APPROVED: "queued",
    Decision.Status.RELEASING: "releasing",
    Decision.Status.RELEASED: "released",
    Decision.Status.FAILED: "failed",
    Decision.Status.BLOCKED: "blocked",
}


class ReleaseOut(serializers.Serializer):
    status = serializers.SerializerMethodField()
    attempts = serializers.IntegerField(source="release_attempts")
    result = serializers.JSONField(source="release_result", allow_null=True)
    released_at = serializers.DateTimeField(allow_null=True)

    def get_status(self, decision) -> str | None:
        return RELEASE_STATUSES.get(decision.status)


class DecisionOut(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Decision.Status.choices)
    action = serializers.CharField(source="action_type.key")
    summary = serializers.CharField()
    params = serializers.JSONField()
    approved_params = serializers.JSONField(allow_null=True)
    policy = PolicyOut(source="*")
    risk = serializers.CharField()
    required_approvals = serializers.IntegerField()
    # How it was approved: auto (policy), human, standing (a reviewer's standing
    # approval, linked), or "" while undecided.
    approval = serializers.CharField(allow_blank=True)
    standing_approval = serializers.UUIDField(source="standing_approval_id", allow_null=True)
    reviews = ReviewOut(many=True)
    behaviour_version = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    release = ReleaseOut(source="*")
    external_ref = serializers.CharField(allow_blank=True)
    status_reason = serializers.CharField(allow_blank=True)


class ErrorBody(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


class ErrorOut(serializers.Serializer):
    error = ErrorBody()


def _iso(value) -> str | None:
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def decision_representation(decision: Decision, reviews=None) -> dict:
    """The decision as DecisionOut documents it, built by hand: this runs on every
    submission, and DRF's generic serializer costs more than the rest of the view."""
    if reviews is None:
        reviews = decision.reviews.all()
    return {
        "id": str(decision.pk),
        "status": decision.status,
        "action": decision.action_type.key,
        "summary": decision.summary,
        "params": decision.params,
        "approved_params": decision.approved_params,
        "policy": {
            "outcome": decision.policy_outcome,
            "rule": decision.policy_rule,
            "explanation": decision.policy_explanation,
        },
        "risk": decision.risk,
        "required_approvals": decision.required_approvals,
        "approval": decision.approval,
        "standing_approval": str(decision.standing_approval_id)
        if decision.standing_approval_id
        else None,
        "reviews": [
            {
                "verdict": review.verdict,
                "comment": review.comment,
                "tags": review.tags,
                "reviewer": review.reviewer.username,
                "at": _iso(review.created_at),
            }
            for review in reviews
        ],
        "behaviour_version": decision.behaviour_version,
        "created_at": _iso(decision.created_at),
        "expires_at": _iso(decision.expires_at),
        "release": {
            "status": RELEASE_STATUSES.get(decision.status),
            "attempts": decision.release_attempts,
            "result": decision.release_result,
            "released_at": _iso(decision.released_at),
        },
        "external_ref": decision.external_ref,
        "status_reason": decision.status_reason,
    }


def _error_response(description: str):
    return OpenApiResponse(response=ErrorOut, description=description)


ERRORS = {
    400: _error_response("`invalid`: validation failed; `details` maps field to messages."),
    401: _error_response("`unauthenticated`: missing, bad, revoked or expired key."),
    403: _error_response("`out_of_scope` or `agent_suspended`."),
    404: _error_response("`not_found`: no such decision, or another agent's decision."),
    409: _error_response("`conflict`: wrong state, or an idempotency key reused."),
    413: _error_response("`too_large`: body over 256 KiB."),
    429: _error_response("`rate_limited`: over the limit; `Retry-After` says when."),
}


def _errors(*codes: int) -> dict:
    return {code: ERRORS[code] for code in codes}


class AgentAPIView(APIView):
    authentication_classes = [AgentKeyAuthentication]
    permission_classes = [IsAgent]
    parser_classes = [SafeJSONParser]


class DecisionCursorPagination(CursorPagination):
    page_size = 50
    ordering = ("-created_at", "-id")

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        # A cursor is client-held base64: a forged position that is not a datetime
        # fails in the queryset filter, and is as invalid as an undecodable cursor.
        except (NotFound, DjangoValidationError):
            raise api_errors.Invalid(
                "The cursor is not valid.", details={"cursor": ["Invalid cursor."]}
            ) from None


class DecisionsView(AgentAPIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "DecisionSubmission"

        action = serializers.CharField(min_length=1, max_length=100)
        params = serializers.DictField()
        reasoning = serializers.CharField(min_length=1, max_length=50000)
        evidence = serializers.DictField(required=False)
        confidence = serializers.FloatField(
            required=False, allow_null=True, min_value=0, max_value=1
        )
        idempotency_key = serializers.CharField(
            required=False, allow_null=True, min_length=1, max_length=255
        )
        external_ref = serializers.CharField(required=False, allow_blank=True, max_length=255)

        def validate_params(self, value):
            return _json_object(value, "params")

        def validate_evidence(self, value):
            return _json_object(value, "evidence")

        def validate_confidence(self, value):
            raw = self.initial_data.get("confidence")
            if raw is None:
                return None
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise serializers.ValidationError("confidence must be a number from 0 to 1.")
            if not math.isfinite(value) or not 0 <= value <= 1:
                raise serializers.ValidationError("confidence must be between 0 and 1.")
            return value

        def validate(self, attrs):
            unknown = set(self.initial_data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field."] for name in sorted(unknown)}
                )
            return attrs

    @extend_schema(
        operation_id="decisions_list",
        summary="List this agent's decisions, newest first",
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=Decision.Status.values),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="From `next`."),
        ],
        responses={
            200: inline_serializer(
                name="DecisionPage",
                fields={
                    "next": serializers.CharField(allow_null=True),
                    "previous": serializers.CharField(allow_null=True),
                    "results": DecisionOut(many=True),
                },
            ),
            **_errors(400, 401),
        },
    )
    def get(self, request):
        status_filter = request.query_params.get("status")
        if status_filter is not None and status_filter not in Decision.Status.values:
            raise api_errors.Invalid(
                "Unknown status.",
                details={"status": [f"Must be one of {', '.join(Decision.Status.values)}."]},
            )
        queryset = selectors.decisions_for_agent(agent=request.user, status=status_filter)
        paginator = DecisionCursorPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response([decision_representation(d) for d in page])

    @extend_schema(
        operation_id="decisions_create",
        summary="Propose an action",
        description=(
            "Runs the submission pipeline: scope, suspension, hourly limit, params schema, "
            "grant constraint, then policy. 201 with the new decision; 200 with the original "
            "when the idempotency key (body or `Idempotency-Key` header) is replayed with "
            "the same body."
        ),
        request=InputSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER)],
        responses={
            201: DecisionOut,
            200: DecisionOut,
            **_errors(400, 401, 403, 409, 413, 429),
        },
    )
    def post(self, request):
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > settings.AISPM_MAX_BODY_BYTES:
            raise api_errors.TooLarge("The body is over 256 KiB.")
        if not isinstance(request.data, dict):
            raise api_errors.Invalid(
                "The body must be a JSON object.", details={"body": ["Expected an object."]}
            )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        idempotency_key = data.get("idempotency_key")
        header_key = request.headers.get("Idempotency-Key")
        if header_key is not None:
            if len(header_key) > 255 or not header_key.strip() or hostile.text_problem(header_key):
                raise api_errors.Invalid(
                    "Idempotency-Key must be 1 to 255 characters.",
                    details={"idempotency_key": ["Must be 1 to 255 characters."]},
                )
            if idempotency_key and idempotency_key != header_key:
                raise api_errors.Invalid(
                    "The Idempotency-Key header and body field differ.",
                    details={"idempotency_key": ["Differs from the Idempotency-Key header."]},
                )
            idempotency_key = header_key
        try:
            submission = services.decision_submit(
                key=request.auth,
                action=data["action"],
                params=data["params"],
                reasoning=data["reasoning"],
                evidence=data.get("evidence") or {},
                confidence=data.get("confidence"),
                idempotency_key=idempotency_key or None,
                external_ref=data.get("external_ref", ""),
            )
        except services.SubmissionRefused as refusal:
            raise api_errors.from_refusal(refusal) from None
        decision = submission.decision
        bind_decision_id(decision.pk)
        if submission.created or not services.may_have_reviews(decision):
            reviews = ()
        else:
            reviews = decision.reviews.select_related("reviewer").order_by("id")
        return Response(
            decision_representation(decision, reviews=reviews),
            status=status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK,
        )


def _decision_or_404(agent, decision_id: str) -> Decision:
    try:
        parsed = uuid.UUID(decision_id)
    except ValueError:
        raise api_errors.NotFound("No such decision.") from None
    decision = selectors.decision_for_agent(agent=agent, decision_id=parsed)
    if decision is None:
        raise api_errors.NotFound("No such decision.")
    return decision


class DecisionDetailView(AgentAPIView):
    @extend_schema(
        operation_id="decisions_retrieve",
        summary="One of this agent's decisions",
        responses={200: DecisionOut, **_errors(401, 404)},
    )
    def get(self, request, decision_id: str):
        return Response(decision_representation(_decision_or_404(request.user, decision_id)))


class DecisionCancelView(AgentAPIView):
    @extend_schema(
        operation_id="decisions_cancel",
        summary="Cancel a pending decision",
        request=None,
        responses={200: DecisionOut, **_errors(401, 404, 409)},
    )
    def post(self, request, decision_id: str):
        decision = _decision_or_404(request.user, decision_id)
        try:
            services.decision_cancel(decision=decision, agent=request.user)
        except services.DecisionConflict as exc:
            raise api_errors.Conflict(str(exc)) from None
        decision = selectors.decision_for_agent(agent=request.user, decision_id=decision.pk)
        return Response(decision_representation(decision))


class BehaviourView(AgentAPIView):
    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "Behaviour"

        version = serializers.IntegerField(source="number")
        instructions = serializers.CharField()
        settings = serializers.JSONField()
        policy = serializers.JSONField()
        activated_at = serializers.DateTimeField(
            source="agent.behaviour_activated_at", allow_null=True
        )

    @extend_schema(
        operation_id="behaviour_retrieve",
        summary="This agent's active behaviour version",
        description="Send the ETag back in `If-None-Match`; 304 means nothing changed.",
        parameters=[OpenApiParameter("If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER)],
        responses={
            200: OutputSerializer,
            304: OpenApiResponse(description="Not modified."),
            **_errors(401, 404),
        },
    )
    def get(self, request):
        agent = request.user
        version = active_behaviour(agent)
        if version is None:
            raise api_errors.NotFound("This agent has no active behaviour version.")
        # The activation time is part of the tag, so a rollback to a version the
        # agent saw before still changes it.
        activated = (
            int(agent.behaviour_activated_at.timestamp()) if agent.behaviour_activated_at else 0
        )
        etag = f'"v{version.number}-{version.content_hash[:12]}-{activated}"'
        candidates = {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}
        if etag in candidates or f"W/{etag}" in candidates or "*" in candidates:
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        version.agent = agent
        return Response(self.OutputSerializer(version).data, headers={"ETag": etag})


class FeedbackView(AgentAPIView):
    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "FeedbackItem"

        cursor = serializers.CharField()
        decision_id = serializers.UUIDField(source="decision.id")
        action = serializers.CharField(source="decision.action_type.key")
        verdict = serializers.CharField()
        comment = serializers.CharField()
        tags = serializers.ListField(child=serializers.CharField())
        reviewer = serializers.CharField(source="reviewer.username")
        params_before = serializers.JSONField(allow_null=True)
        params_after = serializers.JSONField(allow_null=True)
        decision_status = serializers.CharField(source="decision.status")
        at = serializers.DateTimeField(source="created_at")

    @extend_schema(
        operation_id="feedback_list",
        summary="Reviewer verdicts on this agent's decisions, oldest first",
        parameters=[
            OpenApiParameter("after", OpenApiTypes.STR, description="The last cursor you saw."),
        ],
        responses={
            200: inline_serializer(
                name="FeedbackPage",
                fields={
                    "results": OutputSerializer(many=True),
                    "next": serializers.CharField(
                        allow_null=True, help_text="Pass as `after` to continue."
                    ),
                },
            ),
            **_errors(400, 401),
        },
    )
    def get(self, request):
        raw = request.query_params.get("after", "")
        try:
            after = selectors.decode_feedback_cursor(raw) if raw else (0, 0)
        except ValueError:
            raise api_errors.Invalid(
                "The cursor is not valid.", details={"after": ["Invalid cursor."]}
            ) from None
        reviews = selectors.feedback_for_agent(agent=request.user, after=after)
        for review in reviews:
            review.cursor = selectors.encode_feedback_cursor(review)
        return Response(
            {
                "results": self.OutputSerializer(reviews, many=True).data,
                "next": reviews[-1].cursor if reviews else (raw or None),
            }
        )
