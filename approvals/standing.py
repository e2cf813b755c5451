"""Standing approvals (issue 17): "Approve, and allow similar for ...".

A reviewer holding `approvals.grant_standing_approval` (which agent admins grant)
approves a decision and, in the same step, lets matching decisions of the same agent
and action through for a while: a CEL condition over params (generated, editable), at
most `max_count` uses, ending within 7 days. Matching decisions are approved with
`approval: standing` and a link to the standing approval.

What a reviewer cannot do with it:
- cover an irreversible action whose risk is high or critical;
- cover a route that needs more than one approver, or skip a deny rule, an anomaly
  signal or a grant (the step runs after those, before a review is asked for);
- cover an agent they own, or a condition that does not match the decision in hand;
- last past 7 days or past MAX_COUNT uses.
Agent admins and the reviewer who made it can revoke it at once; everything is audited.
"""

import json
import re
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents.models import RISK_RANK, ActionType, Agent
from agents.policy_rules import CelSyntaxError, compile_cel
from audit.services import audit_record

from .models import Decision, StandingApproval

PERMISSION = "approvals.grant_standing_approval"
MAX_DAYS = 7
MAX_COUNT = 100
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')


class StandingRefused(Exception):
    pass


def never_standing(action_type: ActionType, risk: str) -> bool:
    return action_type.irreversible and RISK_RANK.get(risk, 2) >= RISK_RANK["high"]


def _literal(value) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) < 2**53:
        return str(value)
    if isinstance(value, float) and value == value and abs(value) < 1e15:
        return repr(value)
    if isinstance(value, str) and len(value) <= 200:
        return json.dumps(value, ensure_ascii=False)
    return None


def condition_suggest(params: dict) -> str:
    """Equal strings and booleans, numbers up to the value seen: `params.vendor == "X" &&
    params.amount <= 500`. Keys that are not plain names, and lists or objects, are
    left out; the reviewer edits the result before saving."""
    clauses = []
    for key, value in sorted(params.items()) if isinstance(params, dict) else []:
        if not isinstance(key, str) or not _IDENT.match(key):
            continue
        literal = _literal(value)
        if literal is None:
            continue
        operator = "<=" if isinstance(value, int | float) and not isinstance(value, bool) else "=="
        clauses.append(f"params.{key} {operator} {literal}")
    return " && ".join(clauses)


def _matches(program, *, params, agent: Agent, action_type: ActionType) -> bool:
    activation = {
        "params": params,
        "agent": {"slug": agent.slug, "name": agent.name},
        "action": {"key": action_type.key},
    }
    try:
        return program.execute(activation) is True
    except Exception:  # noqa: BLE001 - a condition that cannot be evaluated does not match
        return False


def check_condition(condition: str, *, decision: Decision, params: dict) -> None:
    condition = condition.strip()
    if not condition or len(condition) > 2000:
        raise StandingRefused("Write a condition of up to 2,000 characters.")
    # Narrowing only: a conjunction whose every clause tests params. No "or", negation
    # or choice, which could widen it to anything (`params.x == 1 || true`).
    code = _STRINGS.sub('""', condition)
    if "||" in code or "?" in code or re.search(r"!(?!=)", code):
        raise StandingRefused("Use only clauses joined by && (no ||, ! or ?:).")
    if not all("params." in clause for clause in code.split("&&")):
        raise StandingRefused("Every clause must test the params (params.…).")
    try:
        program = compile_cel(condition)
    except CelSyntaxError as exc:
        raise StandingRefused(f"CEL syntax error: {exc}") from None
    if not _matches(program, params=params, agent=decision.agent, action_type=decision.action_type):
        raise StandingRefused("The condition must match the decision you are approving.")


def standing_approval_create(
    *,
    decision: Decision,
    reviewer,
    condition: str,
    max_count: int,
    ends_at: datetime,
    note: str = "",
) -> StandingApproval:
    """Approve `decision` and create the standing approval, in one transaction."""
    from . import services

    now = timezone.now()
    if not reviewer.has_perm(PERMISSION):
        raise StandingRefused("You may not create standing approvals.")
    if decision.agent.owner_id == reviewer.pk:
        raise StandingRefused("You own this agent, so you cannot review its decisions.")
    if never_standing(decision.action_type, decision.risk):
        raise StandingRefused(
            "Standing approvals never cover irreversible actions at high or critical risk."
        )
    if decision.required_approvals > 1:
        raise StandingRefused("This route needs more than one approver; approve it on its own.")
    if not 1 <= max_count <= MAX_COUNT:
        raise StandingRefused(f"The maximum count must be from 1 to {MAX_COUNT}.")
    if not now < ends_at <= now + timedelta(days=MAX_DAYS):
        raise StandingRefused(f"The end must be within {MAX_DAYS} days from now.")
    params = services.effective_params(decision)
    check_condition(condition, decision=decision, params=params)
    with transaction.atomic():
        approved = services.decision_approve(
            decision=decision,
            reviewer=reviewer,
            comment=note,
            expected_params_hash=services.params_fingerprint(params),
        )
        standing = StandingApproval.objects.create(
            agent=decision.agent,
            action_type=decision.action_type,
            condition=condition.strip(),
            max_count=max_count,
            ends_at=ends_at,
            created_by=reviewer,
            from_decision=decision,
            note=note,
            starts_at=now,
            # A canary's params are a trap; allowing "similar" would open the trap to
            # real requests. It is recorded, revoked from the start, and says nothing.
            revoked_at=now if decision.canary else None,
            revoked_reason="canary" if decision.canary else "",
        )
        audit_record(
            event="standing_approval.created",
            actor=reviewer,
            target=standing,
            data={
                "agent": decision.agent.slug,
                "action": decision.action_type.key,
                "condition": standing.condition,
                "max_count": max_count,
                "ends_at": ends_at.isoformat(),
                "from_decision": str(decision.pk),
                "note": note,
                **({"revoked": "canary"} if decision.canary else {}),
            },
        )
    approved.standing_created = standing
    return standing


def standing_approval_revoke(
    *, standing: StandingApproval, actor, reason: str = ""
) -> StandingApproval:
    with transaction.atomic():
        updated = StandingApproval.objects.filter(pk=standing.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=actor, revoked_reason=reason
        )
        standing.refresh_from_db()
        if updated != 1:
            return standing
        audit_record(
            event="standing_approval.revoked",
            actor=actor,
            target=standing,
            data={"reason": reason, "used_count": standing.used_count},
        )
    return standing


def step_up_needed(*, version, rule_id: str, risk: str) -> bool:
    """Whether a decision on this route would need a passkey-signed approval (see
    approvals.passkeys.step_up_required), decided without a query: a standing
    approval must never stand in for a step-up."""
    from django.conf import settings

    for rule in (version.policy if version is not None else None) or []:
        if isinstance(rule, dict) and rule.get("id") == rule_id and rule.get("step_up"):
            return True
    threshold = settings.AISPM_STEP_UP_DEFAULT_RISK
    return bool(threshold) and RISK_RANK.get(risk, 2) >= RISK_RANK.get(threshold, 5)


def standing_match(
    *, agent: Agent, action_type: ActionType, params: dict, risk: str, now: datetime
) -> StandingApproval | None:
    """Inside the submission's transaction: claim one use of a matching standing approval."""
    if never_standing(action_type, risk):
        return None
    candidates = StandingApproval.objects.filter(
        agent=agent,
        action_type=action_type,
        revoked_at__isnull=True,
        starts_at__lte=now,
        ends_at__gt=now,
        used_count__lt=F("max_count"),
    ).order_by("ends_at")
    for standing in candidates:
        try:
            program = compile_cel(standing.condition)
        except CelSyntaxError:
            continue
        if not _matches(program, params=params, agent=agent, action_type=action_type):
            continue
        claimed = StandingApproval.objects.filter(
            pk=standing.pk,
            revoked_at__isnull=True,
            ends_at__gt=now,
            used_count__lt=F("max_count"),
        ).update(used_count=F("used_count") + 1)
        if claimed == 1:
            standing.refresh_from_db()
            return standing
    return None


def standing_permission_set(*, user, granted: bool, actor) -> None:
    """Agent admins give or take the permission to create standing approvals."""
    from django.contrib.auth.models import Permission

    permission = Permission.objects.get(
        content_type__app_label="approvals", codename="grant_standing_approval"
    )
    with transaction.atomic():
        if granted:
            user.user_permissions.add(permission)
        else:
            user.user_permissions.remove(permission)
        audit_record(
            event="standing_approval.permission_granted"
            if granted
            else "standing_approval.permission_removed",
            actor=actor,
            target=user,
            data={"user": user.get_username()},
        )
