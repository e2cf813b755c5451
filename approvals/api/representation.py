"""The decision as agents see it: one serializer that documents the shape and renders it.

DecisionOut's declared fields are what the OpenAPI schema publishes; its
to_representation builds the same dict by hand, because this runs on every
submission and DRF's generic field walk costs more than the rest of the view.
A test renders a decision through DRF's generic path and holds the two equal.
"""

from rest_framework import serializers

from ..models import Decision

RELEASE_STATUSES = {
    Decision.Status.APPROVED: "queued",
    Decision.Status.RELEASING: "releasing",
    Decision.Status.RELEASED: "released",
    Decision.Status.FAILED: "failed",
    Decision.Status.BLOCKED: "blocked",
}


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


class ReleaseOut(serializers.Serializer):
    status = serializers.SerializerMethodField()
    attempts = serializers.IntegerField(source="release_attempts")
    result = serializers.JSONField(source="release_result", allow_null=True)
    released_at = serializers.DateTimeField(allow_null=True)

    def get_status(self, decision) -> str | None:
        return RELEASE_STATUSES.get(decision.status)


def _iso(value) -> str | None:
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# No docstring: drf-spectacular would publish it. Pass reviews already at hand
# (prefetched, or none for a new decision) as context={"reviews": ...}.
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
    reviews = ReviewOut(many=True)
    behaviour_version = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    release = ReleaseOut(source="*")
    external_ref = serializers.CharField(allow_blank=True)
    status_reason = serializers.CharField(allow_blank=True)

    def to_representation(self, decision: Decision) -> dict:
        return decision_representation(decision, self.context.get("reviews"))


def decision_representation(decision: Decision, reviews=None) -> dict:
    """DecisionOut.to_representation; callers that render many decisions call it directly."""
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
