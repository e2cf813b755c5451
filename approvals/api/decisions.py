"""The decision operations: list, submit, retrieve, cancel. One view per operation."""

import math
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from aispm_site import hostile
from aispm_site.logging import bind_decision_id

from .. import selectors, services
from ..models import Decision
from . import errors as api_errors
from .base import AgentAPIView
from .errors import documented
from .parsers import json_object
from .representation import DecisionOut, decision_representation


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


class DecisionListView(AgentAPIView):
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
            **documented(400, 401),
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


class DecisionSubmitView(AgentAPIView):
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
            return json_object(value, "params")

        def validate_evidence(self, value):
            return json_object(value, "evidence")

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
            **documented(400, 401, 403, 409, 413, 429),
        },
    )
    def post(self, request):
        size = hostile.parse_int(request.META.get("CONTENT_LENGTH") or "0", minimum=0)
        if size is None or size > settings.AISPM_MAX_BODY_BYTES:
            raise api_errors.TooLarge("The body is over 256 KiB.")
        if not isinstance(request.data, dict):
            raise api_errors.Invalid(
                "The body must be a JSON object.", details={"body": ["Expected an object."]}
            )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        idempotency_key = _idempotency_key(request, data.get("idempotency_key"))
        representation, status_code = submission_response(request.auth, data, idempotency_key)
        return Response(representation, status=status_code)


def submission_response(key, data: dict, idempotency_key: str | None) -> tuple[dict, int]:
    """Submit validated fields as the key's agent: (the decision's representation, 201
    for a new decision or 200 for a replay). A refusal raises the API's error."""
    try:
        submission = services.decision_submit(
            key=key,
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
    return (
        decision_representation(decision, reviews=reviews),
        status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK,
    )


def _idempotency_key(request, body_key: str | None) -> str | None:
    """The body's key, or the Idempotency-Key header's, which must agree with it."""
    header_key = request.headers.get("Idempotency-Key")
    if header_key is None:
        return body_key
    if len(header_key) > 255 or not header_key.strip() or hostile.text_problem(header_key):
        raise api_errors.Invalid(
            "Idempotency-Key must be 1 to 255 characters.",
            details={"idempotency_key": ["Must be 1 to 255 characters."]},
        )
    if body_key and body_key != header_key:
        raise api_errors.Invalid(
            "The Idempotency-Key header and body field differ.",
            details={"idempotency_key": ["Differs from the Idempotency-Key header."]},
        )
    return header_key


# `decisions/` carries two operations: GET lists, POST submits. Each keeps its own
# view class above; this one only mounts both on the one path. (No docstring:
# drf-spectacular would publish it as the list operation's description.)
class DecisionsView(DecisionListView, DecisionSubmitView):
    pass


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
        responses={200: DecisionOut, **documented(401, 404)},
    )
    def get(self, request, decision_id: str):
        return Response(decision_representation(_decision_or_404(request.user, decision_id)))


class DecisionCancelView(AgentAPIView):
    @extend_schema(
        operation_id="decisions_cancel",
        summary="Cancel a pending decision",
        request=None,
        responses={200: DecisionOut, **documented(401, 404, 409)},
    )
    def post(self, request, decision_id: str):
        decision = _decision_or_404(request.user, decision_id)
        try:
            services.decision_cancel(decision=decision, agent=request.user)
        except services.DecisionConflict as exc:
            raise api_errors.Conflict(str(exc)) from None
        decision = selectors.decision_for_agent(agent=request.user, decision_id=decision.pk)
        return Response(decision_representation(decision))
