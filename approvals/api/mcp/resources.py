"""MCP resources and the prompt: the active behaviour version and recent feedback."""

import json

import mcp_types as types
from django.db import close_old_connections

from agents.selectors import active_behaviour
from approvals import selectors
from approvals.models import Review

from ..representation import _iso
from .tools import ToolError

BEHAVIOUR_URI = "aispm://behaviour"
FEEDBACK_URI = "aispm://feedback"
PROMPT_NAME = "aispm.behaviour"
FEEDBACK_ITEMS = 50

RESOURCES = [
    types.Resource(
        uri=BEHAVIOUR_URI,
        name="behaviour",
        title="Active behaviour version",
        description="Your instructions, settings and policy, as GET /api/v1/behaviour/.",
        mime_type="application/json",
    ),
    types.Resource(
        uri=FEEDBACK_URI,
        name="feedback",
        title="Recent reviewer feedback",
        description="Reviewer verdicts, comments and edits on your decisions, newest last.",
        mime_type="application/json",
    ),
]

PROMPTS = [
    types.Prompt(
        name=PROMPT_NAME,
        title="aispm behaviour instructions",
        description="Your active behaviour version's instructions, to use as a system prompt.",
    )
]


def behaviour(key) -> dict:
    close_old_connections()
    agent = key.agent
    version = active_behaviour(agent)
    if version is None:
        raise ToolError("not_found", "This agent has no active behaviour version.")
    return {
        "version": version.number,
        "instructions": version.instructions,
        "settings": version.settings,
        "policy": version.policy,
        "activated_at": _iso(agent.behaviour_activated_at),
    }


def feedback(key) -> dict:
    """The most recent feedback, oldest first, with the cursor GET /api/v1/feedback/ takes."""
    close_old_connections()
    recent = (
        Review.objects.filter(decision__agent=key.agent, decision__canary=False)
        .select_related("reviewer", "decision__action_type")
        .order_by("-txid", "-pk")[:FEEDBACK_ITEMS]
    )
    items = list(reversed(recent))
    return {
        "results": [
            {
                "cursor": selectors.encode_feedback_cursor(review),
                "decision_id": str(review.decision_id),
                "action": review.decision.action_type.key,
                "verdict": review.verdict,
                "comment": review.comment,
                "tags": review.tags,
                "reviewer": review.reviewer.username,
                "params_before": review.params_before,
                "params_after": review.params_after,
                "decision_status": review.decision.status,
                "at": _iso(review.created_at),
            }
            for review in items
        ],
    }


def read(key, uri: str) -> types.ReadResourceResult:
    readers = {BEHAVIOUR_URI: behaviour, FEEDBACK_URI: feedback}
    if uri not in readers:
        raise ToolError("not_found", f"No resource {uri}.")
    text = json.dumps(readers[uri](key), ensure_ascii=False)
    return types.ReadResourceResult(
        contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
    )


def prompt(key, name: str) -> types.GetPromptResult:
    if name != PROMPT_NAME:
        raise ToolError("not_found", f"No prompt {name}.")
    data = behaviour(key)
    return types.GetPromptResult(
        description=f"Behaviour version {data['version']}",
        messages=[
            types.PromptMessage(
                role="user", content=types.TextContent(type="text", text=data["instructions"])
            )
        ],
    )
