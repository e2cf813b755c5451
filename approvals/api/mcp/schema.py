"""JSON Schemas of the MCP tools: the submission input and the decision output."""

from approvals.models import Decision

_NULLABLE_STRING = {"type": ["string", "null"]}

DECISION_SCHEMA = {
    "type": "object",
    "description": "The decision, as GET /api/v1/decisions/<id>/ returns it.",
    "required": ["id", "status", "action", "params", "policy", "release"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": list(Decision.Status.values)},
        "action": {"type": "string"},
        "summary": {"type": "string"},
        "params": {"type": "object"},
        "approved_params": {"type": ["object", "null"]},
        "policy": {
            "type": "object",
            "properties": {
                "outcome": {"type": "string"},
                "rule": {"type": "string"},
                "explanation": {"type": "string"},
            },
        },
        "risk": {"type": "string"},
        "required_approvals": {"type": "integer"},
        "reviews": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "verdict": {"type": "string"},
                    "comment": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "reviewer": {"type": "string"},
                    "at": _NULLABLE_STRING,
                },
            },
        },
        "behaviour_version": {"type": ["integer", "null"]},
        "created_at": _NULLABLE_STRING,
        "expires_at": _NULLABLE_STRING,
        "release": {
            "type": "object",
            "properties": {
                "status": _NULLABLE_STRING,
                "attempts": {"type": "integer"},
                "result": {"type": ["object", "null"]},
                "released_at": _NULLABLE_STRING,
            },
        },
        "external_ref": {"type": "string"},
        "status_reason": {"type": "string"},
    },
}


def submission_schema(params_schema: dict) -> dict:
    params = dict(params_schema) if params_schema else {"type": "object"}
    params.setdefault("type", "object")
    return {
        "type": "object",
        "required": ["params", "reasoning"],
        "additionalProperties": False,
        "properties": {
            "params": params,
            "reasoning": {
                "type": "string",
                "minLength": 1,
                "maxLength": 50000,
                "description": "Why you propose this action; reviewers read it.",
            },
            "evidence": {"type": "object", "description": "What you detected, as data."},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "idempotency_key": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "description": "Reuse it when you retry the same call, so it is not duplicated.",
            },
        },
    }


DECISION_ID_SCHEMA = {
    "type": "object",
    "required": ["decision_id"],
    "additionalProperties": False,
    "properties": {"decision_id": {"type": "string", "format": "uuid"}},
}
