"""Anomaly detection on agent behaviour.

Cheap rules run inline at submission (new destination, split transactions, hidden
characters), at a refusal (out-of-scope attempts) or after a denial (denial burst);
the rolling submission-rate baseline runs in beat. A rule that fires raises an alert and, as
configured, forces human review or suspends the agent. See agents.anomaly_rules
for the configuration.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import FloatField, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from agents.anomaly_rules import parse_duration, with_defaults
from agents.models import ActionType, Agent, Alert, SeenDestination
from agents.services import agent_force_review, agent_suspend, alert_raise
from audit.models import AuditEvent

from . import formats
from .invisible import INVISIBLE, marker
from .models import Decision

RISK_ORDER = ["low", "medium", "high", "critical"]
NOT_COUNTED = [
    Decision.Status.DENIED,
    Decision.Status.REJECTED,
    Decision.Status.CANCELLED,
    Decision.Status.EXPIRED,
]

PER_DECISION = ("new_destination", "invisible_characters")


@dataclass(frozen=True)
class Signal:
    rule: dict
    message: str
    evidence: dict = field(default_factory=dict)

    @property
    def forces_review(self) -> bool:
        return self.rule["action"] in ("force_review", "suspend")

    def as_json(self) -> dict:
        return {"rule": self.rule["rule"], "action": self.rule["action"], "message": self.message}


def rules_for(agent: Agent, action_type: ActionType | None = None, kind: str = "") -> list[dict]:
    rules = [with_defaults(rule) for rule in agent.anomaly_rules or []]
    if action_type is not None:
        rules += [
            with_defaults({**rule, "for_action": action_type.key})
            for rule in action_type.anomaly_rules or []
        ]
    return [
        rule
        for rule in rules
        if (not kind or rule["rule"] == kind)
        and (action_type is None or rule.get("for_action") in (None, action_type.key))
    ]


def _destination(item: str) -> str:
    """The canonical email domain or URL host; a value that is neither in canonical form
    counts whole, so that it is always new rather than passing for a known domain."""
    try:
        if "://" in item:
            return urlsplit(formats.canonical_url(item)).hostname or item
        return formats.canonical_email(item).rsplit("@", 1)[1]
    except (formats.NotCanonical, ValueError):
        return item.lower()


def destinations(params: dict, names: list[str]) -> set[str]:
    """Email domains and URL hosts found in the named params."""
    found = set()
    for name in names:
        value = params.get(name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and ("@" in item or "://" in item):
                found.add(_destination(item))
    return {value[:255] for value in found if value}


def at_submission(
    *,
    agent: Agent,
    action_type: ActionType,
    params: dict,
    now: datetime,
    exclude: Decision | None = None,
) -> list[Signal]:
    """`exclude` is a decision whose params are being edited: it does not count itself."""
    signals = []
    for rule in rules_for(agent, action_type):
        if rule["rule"] == "new_destination":
            wanted = destinations(params, rule["params"])
            if not wanted:
                continue
            seen = set(
                SeenDestination.objects.filter(agent=agent, value__in=wanted).values_list(
                    "value", flat=True
                )
            )
            new = sorted(wanted - seen)
            if new:
                signals.append(
                    Signal(
                        rule,
                        f"New destination never approved for this agent: {', '.join(new)}.",
                        {"destinations": new},
                    )
                )
        elif rule["rule"] == "split_transactions":
            signal = _split(
                rule, agent=agent, action_type=action_type, params=params, now=now, exclude=exclude
            )
            if signal:
                signals.append(signal)
        elif rule["rule"] == "invisible_characters":
            found = _invisible(params)
            if found:
                signals.append(
                    Signal(
                        rule,
                        "Params contain invisible or direction-changing characters: "
                        f"{' '.join(found)}.",
                        {"characters": found},
                    )
                )
    return signals


def _invisible(params) -> list[str]:
    """The distinct hidden characters in params' keys and string values, as markers."""
    found, stack = set(), [params]
    while stack and len(found) < 20:
        item = stack.pop()
        if isinstance(item, str):
            found.update(marker(match.group()) for match in INVISIBLE.finditer(item))
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return sorted(found)


def _split(
    rule: dict, *, agent, action_type, params: dict, now: datetime, exclude=None
) -> Signal | None:
    """Several amounts below the threshold that add up past it within the window,
    optionally to the same recipient (`group_by`): the classic way around a limit."""
    amount = params.get(rule["param"])
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        return None
    if amount >= rule["threshold"]:
        return None  # one large amount is not a split; policy routes it on its own
    window = parse_duration(rule["window"])
    same = Decision.objects.filter(
        agent=agent, action_type=action_type, created_at__gte=now - window, canary=False
    ).exclude(status__in=NOT_COUNTED)
    if exclude is not None:
        same = same.exclude(pk=exclude.pk)
    group = rule.get("group_by")
    if group:
        if not isinstance(params.get(group), str):
            return None
        same = same.filter(**{f"params__{group}": params[group]})
    earlier = (
        same.annotate(value=Cast(KT(f"params__{rule['param']}"), FloatField()))
        .filter(value__lt=rule["threshold"])
        .aggregate(total=Sum("value"))["total"]
        or 0
    )
    if not earlier or earlier + amount <= rule["threshold"]:
        return None
    target = f" to {group} {params[group]}" if group else ""
    return Signal(
        rule,
        f"{rule['param']} adds up to {earlier + amount:g}{target} within {rule['window']}, "
        f"over the {rule['threshold']:g} threshold: possible split transactions.",
        {"total": earlier + amount, "threshold": rule["threshold"]},
    )


def _bucket(now: datetime, window: timedelta) -> int:
    return int(now.timestamp() // window.total_seconds())


def after_out_of_scope(*, agent: Agent, now: datetime) -> list[Signal]:
    signals = []
    for rule in rules_for(agent, kind="out_of_scope"):
        window = parse_duration(rule["window"])
        attempts = AuditEvent.objects.filter(
            event="decision.out_of_scope",
            target_type="agents.agent",
            target_id=str(agent.pk),
            created_at__gte=now - window,
        ).count()
        if attempts >= rule["threshold"]:
            signals.append(
                Signal(
                    rule,
                    f"{attempts} out-of-scope attempts within {rule['window']}.",
                    {"attempts": attempts, "bucket": _bucket(now, window)},
                )
            )
    return signals


def after_denial(*, agent: Agent, now: datetime) -> list[Signal]:
    signals = []
    for rule in rules_for(agent, kind="denial_burst"):
        window = parse_duration(rule["window"])
        denials = Decision.objects.filter(
            agent=agent, status=Decision.Status.DENIED, created_at__gte=now - window, canary=False
        ).count()
        if denials >= rule["threshold"]:
            signals.append(
                Signal(
                    rule,
                    f"{denials} decisions denied by policy within {rule['window']}.",
                    {"denials": denials, "bucket": _bucket(now, window)},
                )
            )
    return signals


def rate_spike(*, agent: Agent, now: datetime) -> list[Signal]:
    """Submissions in the last window against the rolling baseline of earlier windows."""
    signals = []
    for rule in rules_for(agent, kind="rate_spike"):
        window, baseline = parse_duration(rule["window"]), parse_duration(rule["baseline"])
        recent = Decision.objects.filter(
            agent=agent, created_at__gte=now - window, canary=False
        ).count()
        if recent < rule["min_count"]:
            continue
        before = Decision.objects.filter(
            agent=agent, created_at__gte=now - baseline, created_at__lt=now - window, canary=False
        ).count()
        windows = max((baseline - window) / window, 1)
        usual = before / windows
        if recent > rule["factor"] * max(usual, 1):
            signals.append(
                Signal(
                    rule,
                    f"{recent} submissions in {rule['window']}, {recent / max(usual, 1):.1f}× "
                    f"the usual {usual:.1f}.",
                    {"recent": recent, "usual": usual, "bucket": _bucket(now, window)},
                )
            )
    return signals


def respond(*, agent: Agent, signals: list[Signal], now: datetime) -> None:
    """Raise one alert per signal (per window), then force review or suspend as configured."""
    for signal in signals:
        rule = signal.rule
        subject = f"{agent.pk}:{rule['rule']}:{signal.evidence.get('bucket', now.isoformat())}"
        with transaction.atomic():
            if not Alert.objects.filter(subject=subject).exists():
                alert_raise(
                    severity=rule["severity"],
                    kind=f"anomaly.{rule['rule']}",
                    agent=agent,
                    subject=subject,
                    message=f"{agent.slug}: {signal.message}",
                    evidence={**signal.evidence, "rule": rule},
                )
            if rule["action"] == "force_review" and rule["rule"] not in PER_DECISION:
                # Burst rules, and split transactions ("the rest"), hold the agent's next
                # decisions for the window; a new destination or hidden characters hold
                # only their own.
                window = parse_duration(rule.get("window", "1h"))
                agent_force_review(agent=agent, until=now + window, reason=signal.message)
            elif rule["action"] == "suspend":
                agent_suspend(agent=agent, reason=f"Anomaly {rule['rule']}: {signal.message}")


def raised_risk(risk: str, anomalies: list) -> str:
    """Anomalies may raise a decision's risk but never lower it."""
    if not anomalies:
        return risk
    return max(risk, "high", key=RISK_ORDER.index)


def remember_destinations(*, decision: Decision) -> None:
    """Once people approve a decision, its destinations count as seen for the agent."""
    rules = rules_for(decision.agent, decision.action_type, kind="new_destination")
    params = decision.approved_params or decision.params
    names = sorted({name for rule in rules for name in rule["params"]})
    for value in destinations(params, names):
        SeenDestination.objects.get_or_create(agent=decision.agent, value=value)
