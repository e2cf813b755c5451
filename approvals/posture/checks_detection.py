"""Detection: agents nothing watches, and amounts nobody adds up."""

from datetime import datetime

from agents.models import ActionType, Agent

from .common import url
from .registry import Hit, check


@check(
    id="detection.no_anomaly_rules",
    question="compromise",
    severity="medium",
    title="An agent has no anomaly rules",
)
def no_anomaly_rules(now: datetime) -> list[Hit]:
    watched_actions = {
        pk for pk, rules in ActionType.objects.values_list("pk", "anomaly_rules") if rules
    }
    hits = []
    for agent in Agent.objects.filter(status=Agent.Status.ACTIVE, anomaly_rules=[]):
        if watched_actions & set(agent.grants.values_list("action_type_id", flat=True)):
            continue
        hits.append(
            Hit(
                subject=agent.slug,
                agent=agent,
                message=(
                    f"No anomaly rule watches {agent.slug}: a burst of out-of-scope calls or "
                    f"a rate spike would raise no alert."
                ),
                fix_url=url("agents:detail", agent.slug),
            )
        )
    return hits


def _has_amount(schema) -> bool:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return isinstance(properties, dict) and "amount" in properties


def _split_rule_for(action: ActionType, agent_rules: list) -> bool:
    for rule in list(action.anomaly_rules or []):
        if isinstance(rule, dict) and rule.get("rule") == "split_transactions":
            return True
    return any(
        isinstance(rule, dict)
        and rule.get("rule") == "split_transactions"
        and rule.get("for_action") in (None, action.key)
        for rule in agent_rules
    )


@check(
    id="detection.no_split_rule",
    question="compromise",
    severity="medium",
    title="An action with amounts has no split_transactions rule",
)
def no_split_rule(now: datetime) -> list[Hit]:
    agent_rules = [
        rule
        for rules in Agent.objects.filter(status=Agent.Status.ACTIVE).values_list(
            "anomaly_rules", flat=True
        )
        for rule in (rules or [])
    ]
    return [
        Hit(
            subject=action.key,
            message=(
                f"{action.key} carries an amount, but no split_transactions rule adds up "
                f"amounts split into many small requests."
            ),
            evidence={"action": action.key},
            fix_url=url("admin:agents_actiontype_change", action.pk),
        )
        for action in ActionType.objects.all()
        if _has_amount(action.params_schema) and not _split_rule_for(action, agent_rules)
    ]
