"""The agent reads reviewers' verdicts on its decisions, oldest first."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from .. import selectors
from . import errors as api_errors
from .base import AgentAPIView
from .errors import documented


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
            **documented(400, 401),
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
