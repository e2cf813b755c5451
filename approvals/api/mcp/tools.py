"""The MCP tools: one per granted action type, plus aispm.decision_status and aispm.cancel.

The sync functions here run in Django's thread through sync_to_async; the event loop
only waits.
"""

import json
import uuid
from dataclasses import dataclass, field

import mcp_types as types
from django.db import close_old_connections

from agents.selectors import active_behaviour, agent_grants
from approvals import selectors, services
from approvals.models import Decision, Review

from ..decisions import DecisionsView
from ..errors import _flatten
from ..parsers import MAX_JSON_DEPTH
from ..representation import decision_representation
from .schema import DECISION_ID_SCHEMA, DECISION_SCHEMA, submission_schema

STATUS_TOOL = "aispm.decision_status"
CANCEL_TOOL = "aispm.cancel"
ARGUMENTS = {"params", "reasoning", "evidence", "confidence", "idempotency_key"}
EXCERPT_CHARS = 200
WAITING = {Decision.Status.PENDING}
RELEASING = {Decision.Status.APPROVED, Decision.Status.RELEASING}


@dataclass
class ToolError(Exception):
    """A refusal the agent's model reads: `isError: true` with the API's error code."""

    code: str
    message: str
    details: dict = field(default_factory=dict)
    decision: dict | None = None


def _rule_line(rule: dict) -> str:
    line = f"- {rule['outcome']}"
    if rule.get("when"):
        line += f" when {rule['when']}"
    if rule["outcome"] == "review" and int(rule.get("approvals", 1)) > 1:
        line += f" ({rule['approvals']} approvals)"
    if rule.get("reason"):
        line += f": {rule['reason']}"
    return line


def describe(action_type, version) -> str:
    """The action type's name and what in the active policy may send it to review or deny."""
    lines = [f"{action_type.name}. Calling this tool proposes the action to aispm."]
    rules = [
        rule
        for rule in (version.policy if version else [])
        if isinstance(rule, dict)
        and rule.get("action") in (None, "*", action_type.key)
        and rule.get("outcome") in ("review", "deny")
    ]
    if rules:
        lines.append("Policy rules that may route it to human review or deny it:")
        lines += [_rule_line(rule) for rule in rules]
    default = action_type.default_outcome or "review"
    if default == "allow" and action_type.irreversible:
        default = "review"
    lines.append(f"When no rule matches: {default}.")
    if action_type.irreversible:
        lines.append("It is irreversible, so it is never allowed without a reviewer.")
    return "\n".join(lines)


def _builtin_tools() -> list[types.Tool]:
    return [
        types.Tool(
            name=STATUS_TOOL,
            description="The current state of one of your decisions, e.g. one left pending.",
            input_schema=DECISION_ID_SCHEMA,
            output_schema=DECISION_SCHEMA,
        ),
        types.Tool(
            name=CANCEL_TOOL,
            description="Cancel one of your decisions that is still pending review.",
            input_schema=DECISION_ID_SCHEMA,
            output_schema=DECISION_SCHEMA,
        ),
    ]


def tool_list(key) -> list[types.Tool]:
    close_old_connections()
    agent = key.agent
    version = active_behaviour(agent)
    tools = [
        types.Tool(
            name=action_key,
            title=grant.action_type.name,
            description=describe(grant.action_type, version),
            input_schema=submission_schema(grant.action_type.params_schema),
            output_schema=DECISION_SCHEMA,
        )
        for action_key, grant in sorted(agent_grants(agent).items())
    ]
    return tools + _builtin_tools()


def _screen(value) -> None:
    """Refuse what the REST API's JSON parser never hands on: lone surrogates and
    deep nesting (the serializer checks NUL, non-finite and 64-bit bounds)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        # The arguments object is one level above params and evidence, where the REST
        # API starts counting.
        if depth > MAX_JSON_DEPTH + 1:
            raise ToolError(
                "invalid", f"The arguments are nested more than {MAX_JSON_DEPTH} levels."
            )
        if isinstance(item, dict):
            stack.extend((key, depth + 1) for key in item)
            stack.extend((sub, depth + 1) for sub in item.values())
        elif isinstance(item, list):
            stack.extend((sub, depth + 1) for sub in item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ToolError("invalid", "The arguments contain a lone surrogate.") from None


def submit(key, action: str, arguments: dict | None) -> Decision:
    """Validate the arguments as POST /api/v1/decisions/ does, and submit."""
    close_old_connections()
    arguments = arguments if isinstance(arguments, dict) else {}
    _screen(arguments)
    unknown = sorted(set(arguments) - ARGUMENTS)
    if unknown:
        raise ToolError(
            "invalid", "Unknown arguments.", {name: ["Unknown field."] for name in unknown}
        )
    serializer = DecisionsView.InputSerializer(data={**arguments, "action": action})
    if not serializer.is_valid():
        raise ToolError("invalid", "The arguments are not valid.", _flatten(serializer.errors))
    data = serializer.validated_data
    try:
        submission = services.decision_submit(
            key=key,
            action=action,
            params=data["params"],
            reasoning=data["reasoning"],
            evidence=data.get("evidence") or {},
            confidence=data.get("confidence"),
            idempotency_key=data.get("idempotency_key") or None,
            channel="mcp",
        )
    except services.SubmissionRefused as refusal:
        details = dict(refusal.details or {})
        if refusal.retry_after:
            details["retry_after"] = [f"{refusal.retry_after} seconds"]
        raise ToolError(refusal.code, refusal.message, details) from None
    return submission.decision


def _decision_id(arguments) -> uuid.UUID:
    raw = arguments.get("decision_id") if isinstance(arguments, dict) else None
    try:
        return uuid.UUID(raw)
    except (TypeError, ValueError, AttributeError):
        raise ToolError(
            "invalid", "decision_id must be a UUID.", {"decision_id": ["Not a UUID."]}
        ) from None


def load(key, decision_id: uuid.UUID) -> Decision:
    close_old_connections()
    decision = selectors.decision_for_agent(agent=key.agent, decision_id=decision_id)
    if decision is None:
        raise ToolError("not_found", "No such decision.")
    return decision


def load_arguments(key, arguments) -> Decision:
    return load(key, _decision_id(arguments))


def cancel(key, arguments) -> Decision:
    decision = load_arguments(key, arguments)
    try:
        services.decision_cancel(decision=decision, agent=key.agent)
    except services.DecisionConflict as exc:
        raise ToolError("conflict", str(exc), decision=decision_representation(decision)) from None
    return load(key, decision.pk)


def approvals_given(decision: Decision) -> int:
    return sum(
        review.verdict in (Review.Verdict.APPROVE, Review.Verdict.EDIT_APPROVE)
        for review in decision.reviews.all()
    )


def waiting_message(decision: Decision) -> str:
    given = approvals_given(decision)
    return f"waiting for {given + 1} of {decision.required_approvals} approvals"


def _rejection(decision: Decision) -> str:
    rejects = [r for r in decision.reviews.all() if r.verdict == Review.Verdict.REJECT]
    return rejects[-1].comment if rejects else decision.status_reason


def _release_line(decision: Decision) -> str:
    result = decision.release_result or {}
    code = result.get("status_code")
    excerpt = (result.get("excerpt") or result.get("error") or "")[:EXCERPT_CHARS]
    if code is None:
        return f"connector: {excerpt}" if excerpt else "connector done"
    return f"connector answered {code}: {excerpt}".rstrip(": ")


def _edited(decision: Decision) -> str:
    if decision.approved_params is not None and decision.approved_params != decision.params:
        return " A reviewer edited the params; approved params: " + json.dumps(
            decision.approved_params, ensure_ascii=False
        )
    return ""


def outcome(decision: Decision) -> types.CallToolResult:
    """The tool result for a decision as it stands: structured, plus one line of text."""
    status = decision.status
    representation = decision_representation(decision)
    refusals = {
        Decision.Status.DENIED: ("denied", decision.policy_explanation),
        Decision.Status.REJECTED: ("rejected", _rejection(decision)),
        Decision.Status.EXPIRED: ("expired", decision.status_reason or "No reviewer decided."),
        Decision.Status.FAILED: ("release_failed", _release_line(decision)),
        Decision.Status.BLOCKED: ("blocked", decision.status_reason),
    }
    if status in refusals:
        code, message = refusals[status]
        return error_result(ToolError(code, message, decision=representation))
    ref = f"decision_id {decision.pk}"
    if status == Decision.Status.RELEASED:
        text = f"released: {decision.summary} ({ref}); {_release_line(decision)}."
    elif status in RELEASING:
        text = (
            f"approved, release still {status} ({ref}). "
            f"Call {STATUS_TOOL} with this decision_id for the result."
        )
    elif status == Decision.Status.PENDING:
        text = (
            f"pending: {waiting_message(decision)} ({ref}). Call {STATUS_TOOL} later "
            f"with this decision_id, or {CANCEL_TOOL}."
        )
    else:
        text = f"{status} ({ref})."
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text + _edited(decision))],
        structured_content=representation,
    )


def error_result(error: ToolError) -> types.CallToolResult:
    text = f"{error.code}: {error.message}"
    if error.details:
        text += " " + json.dumps(error.details, ensure_ascii=False)
    structured = {"error": {"code": error.code, "message": error.message}}
    if error.details:
        structured["error"]["details"] = error.details
    if error.decision is not None:
        structured["decision"] = error.decision
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=structured,
        is_error=True,
    )
