from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record

from ..models import ActionType, Agent, Alert, SeenAddress
from .alerts import alert_raise
from .kill_switch import agent_force_review, agent_suspend


def address_seen(*, agent: Agent, ip: str | None) -> bool:
    """Record the address an agent's key was used from; True if it is new (and not the
    agent's first ever, which is its baseline). Runs only for agents with a new_ip rule."""
    if not ip:
        return False
    if SeenAddress.objects.filter(agent=agent, ip=ip).exists():
        return False
    first = not SeenAddress.objects.filter(agent=agent).exists()
    with transaction.atomic():
        _, created = SeenAddress.objects.get_or_create(agent=agent, ip=ip)
    return created and not first


def new_ip_respond(*, agent: Agent, ip: str, rule: dict) -> None:
    subject = f"{agent.pk}:new_ip:{ip}"
    with transaction.atomic():
        if not Alert.objects.filter(subject=subject).exists():
            alert_raise(
                severity=rule["severity"],
                kind="anomaly.new_ip",
                agent=agent,
                subject=subject,
                message=f"{agent.slug}: a key was used from a new address, {ip}.",
                evidence={"ip": ip, "rule": rule},
            )
        if rule["action"] == "suspend":
            agent_suspend(agent=agent, reason=f"Anomaly new_ip: a key was used from {ip}.")
        elif rule["action"] == "force_review":
            agent_force_review(
                agent=agent,
                until=timezone.now() + timedelta(hours=1),
                reason=f"A key was used from a new address, {ip}.",
            )


def anomaly_rules_set(*, target: Agent | ActionType, rules: list, actor: Any = None) -> bool:
    """Replace an agent's or action type's anomaly rules; True if they changed."""
    with transaction.atomic():
        target = type(target).objects.select_for_update().get(pk=target.pk)
        if target.anomaly_rules == rules:
            return False
        before = target.anomaly_rules
        type(target).objects.filter(pk=target.pk).update(
            anomaly_rules=rules, updated_at=timezone.now()
        )
        audit_record(
            event="anomaly_rules.changed",
            actor=actor,
            target=target,
            data={"before": before, "after": rules},
        )
    return True
