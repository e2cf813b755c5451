"""The shape of anomaly rules, declared per agent or per action type in governance YAML.

    anomalies:
      - {rule: out_of_scope, threshold: 5, window: 10m, action: suspend}
      - {rule: rate_spike, factor: 4, window: 10m, baseline: 7d, min_count: 30}
      - {rule: new_destination, params: [to, cc], action: force_review}
      - {rule: denial_burst, threshold: 5, window: 15m}
      - {rule: split_transactions, for_action: payment.transfer, param: amount,
         group_by: beneficiary, threshold: 10000, window: 1h, action: force_review}
      - {rule: new_ip, action: alert}
      - {rule: invisible_characters, action: force_review}

`action` is what happens when the rule fires: alert (the default), force_review
(the decision, and the agent's next ones for `window`, go to human review even
where policy would allow) or suspend (the agent's kill switch).
"""

import re
from datetime import timedelta

ACTIONS = ("alert", "force_review", "suspend")
SEVERITIES = ("low", "medium", "high", "critical")
DURATION = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

# rule -> {field: (kind, required, default)}
RULES = {
    "out_of_scope": {"threshold": ("count", True, None), "window": ("duration", False, "10m")},
    "rate_spike": {
        "factor": ("number", True, None),
        "window": ("duration", False, "10m"),
        "baseline": ("duration", False, "7d"),
        "min_count": ("count", False, 20),
    },
    "new_destination": {"params": ("names", False, ["to", "cc", "url"])},
    "denial_burst": {"threshold": ("count", True, None), "window": ("duration", False, "15m")},
    "split_transactions": {
        "param": ("name", False, "amount"),
        "group_by": ("name", False, None),
        "threshold": ("number", True, None),
        "window": ("duration", False, "1h"),
    },
    "new_ip": {},
    "invisible_characters": {},
}
COMMON = {"rule", "action", "severity", "for_action"}


def parse_duration(value) -> timedelta:
    match = DURATION.match(str(value).strip())
    if not match:
        raise ValueError(f"must look like 30s, 10m, 4h or 7d (got {value!r})")
    duration = timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    if not timedelta(0) < duration <= timedelta(days=90):
        raise ValueError(f"must be more than 0 and at most 90d (got {value!r})")
    return duration


def _check(kind: str, value) -> str | None:
    if kind == "count":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        return None if ok else "must be a whole number of at least 1"
    if kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        return None if ok else "must be a number above 0"
    if kind == "duration":
        try:
            parse_duration(value)
        except ValueError as exc:
            return str(exc)
        return None
    if kind == "name":
        return None if isinstance(value, str) and value else "must be a param name"
    if kind == "names":
        ok = isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)
        return None if ok else "must be a list of param names"
    return "unknown kind"


def validate_anomaly_rules(rules, *, path: str, known_actions) -> list[tuple[str, str]]:
    """Every problem with a list of anomaly rules, as (path, message)."""
    if not isinstance(rules, list):
        return [(path, "must be a list of anomaly rules")]
    problems = []
    for index, rule in enumerate(rules):
        here = f"{path}[{index}]"
        if not isinstance(rule, dict):
            problems.append((here, "must be a mapping"))
            continue
        kind = rule.get("rule")
        if kind not in RULES:
            problems.append((f"{here}.rule", f"must be one of {', '.join(RULES)}"))
            continue
        for key in sorted(set(rule) - COMMON - set(RULES[kind])):
            problems.append((f"{here}.{key}", "unknown key"))
        if rule.get("action", "alert") not in ACTIONS:
            problems.append((f"{here}.action", f"must be one of {', '.join(ACTIONS)}"))
        if "severity" in rule and rule["severity"] not in SEVERITIES:
            problems.append((f"{here}.severity", f"must be one of {', '.join(SEVERITIES)}"))
        for_action = rule.get("for_action")
        if for_action is not None and for_action not in known_actions:
            problems.append((f"{here}.for_action", f"unknown action {for_action!r}"))
        for field, (field_kind, required, _default) in RULES[kind].items():
            if field not in rule:
                if required:
                    problems.append((f"{here}.{field}", "is required"))
                continue
            message = _check(field_kind, rule[field])
            if message:
                problems.append((f"{here}.{field}", message))
    return problems


def with_defaults(rule: dict) -> dict:
    """A validated rule with every optional field filled in."""
    full = {"action": "alert", **rule}
    for field, (_kind, _required, default) in RULES[rule["rule"]].items():
        full.setdefault(field, default)
    full.setdefault("severity", "high" if full["action"] == "suspend" else "medium")
    return full
