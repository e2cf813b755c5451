"""Routing a proposed action through an agent's active policy.

Rules come from an immutable BehaviourVersion, so each version's CEL programs are
compiled once and cached by the version's primary key. The first matching rule
wins; anything that cannot be evaluated routes to review (fail closed).
"""

from dataclasses import dataclass
from datetime import timedelta

import cel
from django.conf import settings

from agents.models import ActionType, Agent, BehaviourVersion, Outcome
from agents.policy_rules import compile_cel, parse_ttl


@dataclass(frozen=True)
class Route:
    outcome: str
    rule: str
    explanation: str
    approvals: int
    ttl: timedelta
    risk: str
    bulk: bool
    # Escalation (issue 17): after this long pending, the group is added and notified.
    escalate_after: timedelta | None = None
    escalate_to: str = ""


@dataclass(frozen=True)
class CompiledRule:
    id: str
    action: str | None
    program: cel.Program | None
    outcome: str
    approvals: int
    ttl: timedelta | None
    risk: str
    bulk: bool
    reason: str
    escalate_after: timedelta | None = None
    escalate_to: str = ""


def _compile_rule(raw: dict) -> CompiledRule:
    action = raw.get("action")
    return CompiledRule(
        id=str(raw["id"]),
        action=None if action in (None, "*") else action,
        program=compile_cel(raw["when"]) if raw.get("when") else None,
        outcome=raw["outcome"],
        approvals=int(raw.get("approvals", 1)),
        ttl=parse_ttl(raw["ttl"]) if raw.get("ttl") else None,
        risk=raw.get("risk", ""),
        bulk=bool(raw.get("bulk", False)),
        reason=str(raw.get("reason", "")),
        escalate_after=parse_ttl(raw["escalate_after"]) if raw.get("escalate_after") else None,
        escalate_to=str(raw.get("escalate_to", "")),
    )


_CACHE: dict[tuple[int, str], tuple[CompiledRule, ...]] = {}
_CACHE_SIZE = 1024


def compiled_rules(version: BehaviourVersion | None) -> tuple[CompiledRule, ...]:
    """A version's rules, compiled once per version (versions are immutable)."""
    if version is None or not version.policy:
        return ()
    if version.pk is None:  # an unsaved candidate, e.g. a dry run
        return tuple(_compile_rule(rule) for rule in version.policy)
    cache_key = (version.pk, version.content_hash)
    rules = _CACHE.get(cache_key)
    if rules is None:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        rules = _CACHE[cache_key] = tuple(_compile_rule(rule) for rule in version.policy)
    return rules


def _default_ttl() -> timedelta:
    return timedelta(hours=settings.AISPM_DEFAULT_TTL_HOURS)


def route(
    *,
    version: BehaviourVersion | None,
    agent: Agent,
    action_type: ActionType,
    params: dict,
    evidence: dict,
    confidence: float | None,
) -> Route:
    activation = {
        "params": params,
        "evidence": evidence,
        "confidence": confidence,
        "agent": {"slug": agent.slug, "name": agent.name},
        "action": {
            "key": action_type.key,
            "irreversible": action_type.irreversible,
            "risk": action_type.effective_risk,
        },
    }
    context = None  # the activation converted to CEL once, for every rule that reads it
    for rule in compiled_rules(version):
        if rule.action is not None and rule.action != action_type.key:
            continue
        if rule.program is not None:
            try:
                if context is None:
                    context = cel.Context(activation)
                matched = rule.program.execute(context)
            except Exception as exc:  # noqa: BLE001 - any evaluation failure fails closed
                return Route(
                    outcome=Outcome.REVIEW,
                    rule=rule.id,
                    explanation=(
                        f"Rule {rule.id!r} could not be evaluated ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); routed to review."
                    ),
                    approvals=max(rule.approvals, 1),
                    ttl=rule.ttl or _default_ttl(),
                    risk=rule.risk or action_type.effective_risk,
                    bulk=False,
                    escalate_after=rule.escalate_after,
                    escalate_to=rule.escalate_to,
                )
            if matched is not True:
                if isinstance(matched, bool):
                    continue
                return Route(
                    outcome=Outcome.REVIEW,
                    rule=rule.id,
                    explanation=(
                        f"Rule {rule.id!r} returned {type(matched).__name__}, not a boolean; "
                        "routed to review."
                    ),
                    approvals=max(rule.approvals, 1),
                    ttl=rule.ttl or _default_ttl(),
                    risk=rule.risk or action_type.effective_risk,
                    bulk=False,
                    escalate_after=rule.escalate_after,
                    escalate_to=rule.escalate_to,
                )
        outcome, explanation = rule.outcome, rule.reason or f"Matched rule {rule.id!r}."
        if outcome == Outcome.ALLOW and action_type.irreversible:
            outcome = Outcome.REVIEW
            explanation += " Irreversible actions are never auto-allowed; routed to review."
        return Route(
            outcome=outcome,
            rule=rule.id,
            explanation=explanation,
            approvals=rule.approvals,
            ttl=rule.ttl or _default_ttl(),
            risk=rule.risk or action_type.effective_risk,
            bulk=rule.bulk,
            escalate_after=rule.escalate_after,
            escalate_to=rule.escalate_to,
        )
    outcome = action_type.default_outcome or Outcome.REVIEW
    if outcome == Outcome.ALLOW and action_type.irreversible:
        outcome = Outcome.REVIEW
    return Route(
        outcome=outcome,
        rule="",
        explanation=f"No rule matched; the default for {action_type.key} is {outcome}.",
        approvals=1,
        ttl=_default_ttl(),
        risk=action_type.effective_risk,
        bulk=False,
    )
