"""The submission pipeline: an agent's proposed action becomes a decision.

It reads as one ordered list of steps, `PIPELINE`. The first three are done by the
transport before a request reaches this module (approvals/api: the agent's key
authenticates it, 401 `unauthenticated`; the body is at most 256 KiB, 413
`too_large`; the body has the request's shape, 400 `invalid`). The rest are steps
here, each a function that reads the agents domain and refuses with
SubmissionRefused. A reviewer's edit goes through the same schema, constraint,
anomaly and policy steps (see review.py).
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from agents.auth import key_still_fresh, remembered_fingerprint
from agents.models import ActionType, Agent, AgentKey, Grant
from agents.selectors import active_behaviour
from approvals import anomalies, policy, ratelimit, scope
from approvals.models import Decision
from audit.services import audit_record

from . import ingest
from ._common import ApprovalRefused
from .creation import _decision_store, routed


class SubmissionRefused(ApprovalRefused):
    """A submission the pipeline refuses; `code` is the agent API's error code."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: dict | None = None,
        retry_after: int | None = None,
        audit_event: str = "",
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after
        self.audit_event = audit_event


@dataclass(frozen=True)
class Submission:
    decision: Decision
    created: bool


@dataclass
class Draft:
    """A submission on its way through the steps; each step fills in what it found."""

    agent: Agent
    action: str
    params: dict
    evidence: dict
    confidence: float | None
    now: object
    key: AgentKey | None = None
    reasoning: str = ""
    idempotency_key: str | None = None
    external_ref: str = ""
    request_hash: str = ""
    channel: str = "api"  # the transport: "api" (REST) or "mcp"
    exclude: Decision | None = None  # a reviewer's edit: the decision being edited
    grant: Grant | None = None
    action_type: ActionType | None = None
    originals: dict = field(default_factory=dict)
    signals: list = field(default_factory=list)
    version: object = None
    route: policy.Route | None = None
    notes: list = field(default_factory=list)
    routed_at: object = None
    # When the hourly counter counted this submission (so a replay can take it back).
    counted_at: object = None
    # One statement stores the decision and finds a used idempotency key
    # (ingest.decision_insert); else the ORM path, after looking for a replay first.
    replay_at_insert: bool = False


def check_grant(draft: Draft) -> None:
    """The agent holds a grant for this action."""
    draft.grant = scope.grant_for(agent=draft.agent, action_key=draft.action)
    if draft.grant is None:
        raise SubmissionRefused(
            "out_of_scope",
            f"Action {draft.action!r} is unknown or not granted to this agent.",
            audit_event="decision.out_of_scope",
        )
    draft.action_type = draft.grant.action_type


def check_suspension(draft: Draft) -> None:
    """The agent is not suspended."""
    if not draft.agent.is_active:
        raise SubmissionRefused(
            "agent_suspended", "This agent is suspended.", audit_event="decision.refused"
        )


def check_rate_limit(draft: Draft) -> None:
    """The grant's hourly limit has room; this submission is counted."""
    grant = draft.grant
    now = timezone.now()
    retry_after = ratelimit.check_and_count(
        agent=draft.agent, action_type=draft.action_type, limit=grant.limit_per_hour, now=now
    )
    if grant.limit_per_hour:
        draft.counted_at = now
    if retry_after is not None:
        raise SubmissionRefused(
            "rate_limited",
            f"Over the limit of {grant.limit_per_hour} {draft.action} requests per hour.",
            retry_after=retry_after,
        )
    draft.now = timezone.now()


def check_schema(draft: Draft) -> None:
    """The params match the action type's JSON Schema, which also puts destinations
    in canonical form; the originals are kept for the audit event."""
    action_type = draft.grant.action_type
    checked = scope.checked_params(action_type=action_type, params=draft.params)
    if checked.errors:
        raise SubmissionRefused(
            "invalid",
            f"params do not match the schema of {action_type.key}.",
            details=checked.errors,
        )
    draft.params, draft.originals = checked.params, checked.originals


def check_constraint(draft: Draft) -> None:
    """The params are inside the grant's constraint."""
    grant = draft.grant
    verdict = scope.check_constraint(
        agent=draft.agent,
        grant=grant,
        params=draft.params,
        evidence=draft.evidence,
        confidence=draft.confidence,
    )
    if not verdict.allowed:
        raise SubmissionRefused(
            "out_of_scope",
            verdict.message,
            details={"constraint": [grant.constraint]},
            audit_event="decision.out_of_scope",
        )


def check_anomalies(draft: Draft) -> None:
    """The anomaly rules that inspect params; their signals go to the policy step."""
    agent, action_type = draft.agent, draft.grant.action_type
    if agent.anomaly_rules or action_type.anomaly_rules:
        draft.signals = anomalies.at_submission(
            agent=agent,
            action_type=action_type,
            params=draft.params,
            now=draft.now,
            exclude=draft.exclude,
        )


def check_policy(draft: Draft) -> None:
    """Route the params through the agent's active policy."""
    draft.version = active_behaviour(draft.agent)
    draft.routed_at = timezone.now()
    draft.route, draft.notes = routed(
        version=draft.version,
        agent=draft.agent,
        action_type=draft.action_type,
        params=draft.params,
        evidence=draft.evidence,
        confidence=draft.confidence,
        anomaly_signals=draft.signals,
        now=draft.routed_at,
    )


class _KeyUsed(Exception):
    """The insert found this agent's idempotency key already used."""


class KeyChanged(Exception):
    """The key was answered from this process's memory (agents.auth, remember=True),
    and it or its agent has changed in the database since: nothing was stored or
    refused, and nothing stays counted. The transport authenticates the request afresh
    and submits it again."""


def create(draft: Draft) -> Decision:
    """Store the decision, then answer the anomaly signals (and a denial's)."""
    fields = {
        "agent": draft.agent,
        "action_type": draft.action_type,
        "key": draft.key,
        "params": draft.params,
        "reasoning": draft.reasoning,
        "evidence": draft.evidence,
        "confidence": draft.confidence,
        "idempotency_key": draft.idempotency_key,
        "request_hash": draft.request_hash,
        "external_ref": draft.external_ref,
        "canonicalised": draft.originals,
        "version": draft.version,
        "route": draft.route,
        "notes": draft.notes,
        "now": draft.routed_at,
        "channel": draft.channel,
    }
    stored = None
    if draft.replay_at_insert:
        stored = ingest.decision_insert(**fields)
        if stored is ingest.KEY_CHANGED:
            raise KeyChanged
        if stored is None:
            raise _KeyUsed
    if stored is None or stored is ingest.STANDING_FOUND:
        stored = _decision_store(**fields)
    decision = stored
    agent, signals = draft.agent, draft.signals
    watched = bool(agent.anomaly_rules or draft.action_type.anomaly_rules)
    if watched and decision.status == Decision.Status.DENIED:
        signals += anomalies.after_denial(agent=agent, now=draft.now)
    if signals:
        anomalies.respond(agent=agent, signals=signals, now=draft.now)
    return decision


TRANSPORT = None  # done by the transport (approvals/api) before decision_submit

# The submission pipeline, in order.
PIPELINE: tuple[tuple[str, Callable[[Draft], object] | None], ...] = (
    ("authenticate", TRANSPORT),  # the agent's key: 401 unauthenticated
    ("size", TRANSPORT),  # at most 256 KiB: 413 too_large
    ("shape", TRANSPORT),  # the request's fields and types: 400 invalid
    ("grant", check_grant),
    ("suspension", check_suspension),
    ("rate limit", check_rate_limit),
    ("schema", check_schema),
    ("constraint", check_constraint),
    ("anomalies", check_anomalies),
    ("policy", check_policy),
    ("create", create),
)
# The steps that evaluate params as the agent; a reviewer's edit re-runs them.
PARAMS_STEPS = (check_schema, check_constraint, check_anomalies)


def params_evaluate(
    *,
    agent: Agent,
    grant: Grant,
    params: dict,
    evidence: dict,
    confidence: float | None,
    now,
    exclude: Decision | None = None,
) -> "Evaluated":
    """The checks an agent's params pass, as the agent: PARAMS_STEPS (schema, which
    also puts destinations in canonical form; the grant's constraint; the anomaly rules
    that inspect params). A failed check raises SubmissionRefused. Reviewers' edits go
    through this too, with `exclude` the decision being edited.

    From here on, policy, anomaly rules, the stored decision and the connector see the
    canonical params; the originals are kept for the audit event."""
    draft = Draft(
        agent=agent,
        action=grant.action_type.key,
        params=params,
        evidence=evidence,
        confidence=confidence,
        now=now,
        exclude=exclude,
        grant=grant,
        action_type=grant.action_type,
    )
    for step in PARAMS_STEPS:
        step(draft)
    return Evaluated(params=draft.params, originals=draft.originals, signals=draft.signals)


@dataclass(frozen=True)
class Evaluated:
    """Params that passed the agent's gate, in canonical form, with the anomaly signals."""

    params: dict
    originals: dict
    signals: list


def _run_pipeline(draft: Draft) -> Decision:
    decision = None
    for _name, step in PIPELINE:
        if step is not None:
            decision = step(draft)
    return decision


def request_fingerprint(
    *, action: str, params, reasoning: str, evidence, confidence, external_ref: str
) -> str:
    body = json.dumps(
        [action, params, reasoning, evidence, confidence, external_ref],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _replay(*, agent: Agent, idempotency_key: str | None, request_hash: str) -> Decision | None:
    """The original decision for a replayed idempotency key, or None if there is none."""
    if not idempotency_key:
        return None
    # No ORDER BY: the key is unique per agent, so the (agent, key) index answers it.
    matches = list(
        Decision.objects.filter(agent=agent, idempotency_key=idempotency_key)
        .select_related("action_type")
        .order_by()[:1]
    )
    if not matches:
        return None
    original = matches[0]
    if original.request_hash != request_hash:
        raise SubmissionRefused(
            "conflict",
            "This idempotency key was already used with a different request body.",
            details={"idempotency_key": [f"already used for decision {original.pk}"]},
        )
    return original


def _replay_at_insert(agent: Agent, action: str) -> bool:
    """Whether the idempotency check can wait for the insert (ingest.decision_insert):
    on PostgreSQL, for an agent and action no anomaly rule watches. Then the steps run
    before the replay is known, and the only trace they leave is the hourly count, which
    a replay takes back. Anomaly rules read and write state of their own, so a watched
    submission looks for its replay first, as every submission once did."""
    if agent.anomaly_rules or connections[Decision.objects.db].vendor != "postgresql":
        return False
    grant = scope.grant_for(agent=agent, action_key=action)
    return grant is None or not grant.action_type.anomaly_rules


def _replay_after_steps(draft: Draft) -> Submission | None:
    """The original decision of a replay found after the steps ran, or None if the key
    is unused. A replay uses none of the hourly limit, so the count is taken back, also
    when the body differs (refused, 409, as before)."""
    try:
        original = _replay(
            agent=draft.agent,
            idempotency_key=draft.idempotency_key,
            request_hash=draft.request_hash,
        )
    except SubmissionRefused:
        _uncount(draft)
        raise
    if original is None:
        return None
    _uncount(draft)
    return Submission(original, created=False)


def _uncount(draft: Draft) -> None:
    if draft.counted_at is not None:
        ratelimit.uncount(agent=draft.agent, action_type=draft.action_type, now=draft.counted_at)


def decision_submit(
    *,
    key: AgentKey,
    action: str,
    params: dict,
    reasoning: str,
    evidence: dict | None = None,
    confidence: float | None = None,
    idempotency_key: str | None = None,
    external_ref: str = "",
    channel: str = "api",
) -> Submission:
    """The submission pipeline after the transport's steps: PIPELINE, in order.

    A refusal raises SubmissionRefused. A replayed idempotency key returns the
    original decision (created=False), even when a check would refuse it now, and
    counts nothing against the hourly limit.
    """
    evidence = evidence or {}
    request_hash = request_fingerprint(
        action=action,
        params=params,
        reasoning=reasoning,
        evidence=evidence,
        confidence=confidence,
        external_ref=external_ref,
    )
    agent = key.agent
    draft = Draft(
        agent=agent,
        key=key,
        action=action,
        params=params,
        reasoning=reasoning,
        evidence=evidence,
        confidence=confidence,
        idempotency_key=idempotency_key,
        external_ref=external_ref,
        request_hash=request_hash,
        channel=channel,
        now=timezone.now(),
        replay_at_insert=_replay_at_insert(agent, action),
    )
    # A key answered from memory: the insert checks it in the same statement; anything
    # else done on its authority is confirmed against the database first.
    remembered = remembered_fingerprint(key) is not None
    if remembered and not draft.replay_at_insert and not key_still_fresh(key):
        raise KeyChanged
    # Replays return the original rather than a refusal, so an agent retrying after a
    # timeout gets its decision back even if its grant or limit would refuse it now.
    # Most submissions are new: unless anomaly rules watch them, the insert itself
    # finds a used key (ON CONFLICT), and a refused one looks for its replay then.
    if not draft.replay_at_insert:
        original = _replay(agent=agent, idempotency_key=idempotency_key, request_hash=request_hash)
        if original is not None:
            return Submission(original, created=False)
    try:
        decision = _run_pipeline(draft)
    except KeyChanged:
        _uncount(draft)
        raise
    except _KeyUsed:
        replayed = _replay_after_steps(draft)
        if replayed is None:
            raise RuntimeError("the idempotency key was used, but its decision is gone") from None
        return replayed
    except IntegrityError:
        # A concurrent submission with the same key committed first.
        if remembered and not key_still_fresh(key):
            _uncount(draft)
            raise KeyChanged from None
        replayed = _replay_after_steps(draft)
        if replayed is None:
            raise
        return replayed
    except SubmissionRefused as refusal:
        if remembered and not key_still_fresh(key):
            _uncount(draft)
            raise KeyChanged from None
        if draft.replay_at_insert:
            replayed = _replay_after_steps(draft)
            if replayed is not None:
                return replayed
        if refusal.audit_event:
            with transaction.atomic():
                audit_record(
                    event=refusal.audit_event,
                    actor=agent,
                    target=agent,
                    data={
                        "action": action,
                        "code": refusal.code,
                        "message": refusal.message,
                        "key_id": key.pk,
                        "channel": channel,
                    },
                )
            if refusal.code == "out_of_scope" and agent.anomaly_rules:
                now = timezone.now()
                anomalies.respond(
                    agent=agent,
                    signals=anomalies.after_out_of_scope(agent=agent, now=now),
                    now=now,
                )
        raise
    return Submission(decision, created=True)
