"""Applying validated governance data through the agents services, in one transaction."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from .. import services
from ..models import ActionType, Agent, Outcome
from .load import load_governance_file
from .schema import GovernanceInvalid, validate_governance

ACTOR = "apply_governance"

# How changed model fields are named in the file, for the command's output.
_FILE_FIELD = {
    "summary_template": "summary",
    "connector_type": "connector",
    "connector_config": "connector",
    "connector_secret": "connector",
}


@dataclass(frozen=True)
class GovernanceResult:
    lines: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.lines)


def _file_fields(changed) -> str:
    names: list[str] = []
    for name in changed:
        name = _FILE_FIELD.get(name, name)
        if name not in names:
            names.append(name)
    return ", ".join(names)


def _connector_args(connector: dict) -> dict:
    kind = connector.get("type", ActionType.Connector.NONE)
    config: dict = {}
    if kind == ActionType.Connector.WEBHOOK:
        config["url"] = connector["url"]
        if connector.get("secret_env"):
            config["secret_env"] = connector["secret_env"]
    elif kind == ActionType.Connector.EMAIL and connector.get("from"):
        config["from"] = connector["from"]
    return {
        "connector_type": kind,
        "connector_config": config,
        "connector_secret": connector.get("secret") or "",
    }


def _apply_action_type(spec: dict, *, actor, dry_run: bool) -> list[str]:
    key = spec["key"]
    result = services.action_type_apply(
        key=key,
        name=spec["name"],
        summary_template=spec.get("summary") or "",
        params_schema=spec["params_schema"],
        irreversible=spec["irreversible"],
        risk=spec.get("risk") or "",
        default_outcome=spec.get("default_outcome") or Outcome.REVIEW,
        **_connector_args(spec.get("connector") or {}),
        actor=actor,
    )
    lines = []
    if result.created:
        lines.append(f"created action type {key}")
    elif result.changed:
        lines.append(f"updated action type {key}: {_file_fields(result.changed)}")
    if "anomalies" in spec and services.anomaly_rules_set(
        target=result.instance, rules=spec["anomalies"], actor=actor
    ):
        lines.append(f"updated action type {key}: anomalies")
    if result.generated_secret:
        lines.append(
            f"would generate a webhook secret for {key}"
            if dry_run
            else f"generated webhook secret for {key}: {result.generated_secret} (shown once)"
        )
    return lines


def _apply_grants(agent: Agent, grants: list[dict], *, actor) -> list[str]:
    lines = []
    wanted = {grant["action"]: grant for grant in grants}
    action_types = ActionType.objects.in_bulk(list(wanted), field_name="key")
    for key, grant in wanted.items():
        limit = grant.get("limit_per_hour")
        result = services.grant_apply(
            agent=agent,
            action_type=action_types[key],
            limit_per_hour=int(limit) if limit is not None else None,
            constraint=grant.get("constraint") or "",
            actor=actor,
        )
        if result.created:
            lines.append(f"created grant {agent.slug} → {key}")
        elif result.changed:
            lines.append(f"updated grant {agent.slug} → {key}: {_file_fields(result.changed)}")
    stale = agent.grants.select_related("agent", "action_type").exclude(
        action_type__key__in=list(wanted)
    )
    for grant in stale:
        services.grant_remove(grant=grant, actor=actor)
        lines.append(f"removed grant {agent.slug} → {grant.action_type.key}")
    return lines


def _apply_behaviour(agent: Agent, behaviour: dict, *, actor, source: str) -> list[str]:
    content = {
        "instructions": behaviour.get("instructions", ""),
        "settings": behaviour.get("settings", {}),
        "policy": behaviour.get("policy", []),
    }
    active = agent.active_behaviour
    if active is not None and services.behaviour_content_hash(
        instructions=active.instructions, settings=active.settings, policy=active.policy
    ) == services.behaviour_content_hash(**content):
        return []
    version = services.behaviour_version_create(
        agent=agent, note=f"applied from {source}" if source else "", actor=actor, **content
    )
    services.behaviour_version_activate(version=version, actor=actor)
    return [f"created behaviour {agent.slug} v{version.number} (active)"]


def _apply_agent(spec: dict, *, actor, source: str, dry_run: bool = False) -> list[str]:
    owner = None
    if spec.get("owner"):
        user_model = get_user_model()
        owner = user_model._default_manager.get(**{user_model.USERNAME_FIELD: spec["owner"]})
    result = services.agent_apply(
        slug=spec["slug"],
        name=spec["name"],
        owner=owner,
        callback_url=spec.get("callback_url") or "",
        actor=actor,
    )
    agent = result.instance
    lines = []
    if result.created:
        lines.append(f"created agent {agent.slug}")
    elif result.changed:
        lines.append(f"updated agent {agent.slug}: {_file_fields(result.changed)}")
    if "anomalies" in spec and services.anomaly_rules_set(
        target=agent, rules=spec["anomalies"], actor=actor
    ):
        lines.append(f"updated agent {agent.slug}: anomalies")
    callback_secret = services.agent_callback_secret_ensure(agent=agent, actor=actor)
    if callback_secret:
        lines.append(
            f"would generate a callback secret for {agent.slug}"
            if dry_run
            else f"generated callback secret for {agent.slug}: {callback_secret} (shown once)"
        )
    # An agent without a `grants` key keeps its grants; `grants: []` removes them all.
    if "grants" in spec:
        lines += _apply_grants(agent, spec["grants"], actor=actor)
    if "behaviour" in spec:
        lines += _apply_behaviour(agent, spec["behaviour"], actor=actor, source=source)
    return lines


def apply_governance(
    data: Any, *, dry_run: bool = False, actor: Any = ACTOR, source: str = ""
) -> GovernanceResult:
    """Validate parsed governance data and apply it in one transaction.

    Raises GovernanceInvalid (writing nothing) if anything is wrong. With
    `dry_run`, everything runs and is then rolled back, so the result lists
    exactly what an apply would change.
    """
    prefix = f"{source}: " if source else ""
    lines: list[str] = []
    with transaction.atomic():
        problems = validate_governance(data)
        if problems:
            raise GovernanceInvalid([prefix + problem for problem in problems])
        try:
            for spec in data.get("action_types") or []:
                lines += _apply_action_type(spec, actor=actor, dry_run=dry_run)
            for spec in data.get("agents") or []:
                lines += _apply_agent(spec, actor=actor, source=Path(source).name, dry_run=dry_run)
        except services.AgentsRefusal as exc:
            raise GovernanceInvalid([f"{prefix}{exc}"]) from None
        if dry_run:
            transaction.set_rollback(True)
    return GovernanceResult(lines=lines, dry_run=dry_run)


def apply_governance_file(
    path: str | Path, *, dry_run: bool = False, actor: Any = ACTOR
) -> GovernanceResult:
    """Load, validate and apply a governance YAML file; see apply_governance."""
    data = load_governance_file(path)
    return apply_governance(data, dry_run=dry_run, actor=actor, source=str(path))
