"""The agent reads its active behaviour version, with an ETag."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from agents.selectors import active_behaviour

from . import errors as api_errors
from .base import AgentAPIView
from .errors import documented


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
            **documented(401, 404),
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
