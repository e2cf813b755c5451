"""A side-by-side comparison of two behaviour versions."""

import difflib
import json
from dataclasses import dataclass, field


@dataclass
class VersionDiff:
    instructions: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, left, right)
    settings: list[tuple[str, str, str, str]] = field(default_factory=list)  # (kind, key, a, b)
    rules: list[tuple[str, str, list]] = field(default_factory=list)  # (kind, id, changes)

    @property
    def empty(self) -> bool:
        return (
            all(kind == "same" for kind, *_ in self.instructions)
            and not self.settings
            and not self.rules
        )


def _show(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def diff_versions(left, right) -> VersionDiff:
    result = VersionDiff()
    a, b = left.instructions.splitlines(), right.instructions.splitlines()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b).get_opcodes():
        rows = max(i2 - i1, j2 - j1)
        for n in range(rows):
            old = a[i1 + n] if i1 + n < i2 else ""
            new = b[j1 + n] if j1 + n < j2 else ""
            kind = {"equal": "same", "replace": "changed", "delete": "removed", "insert": "added"}
            result.instructions.append((kind[tag], old, new))
    for key in sorted(set(left.settings) | set(right.settings)):
        if key not in right.settings:
            result.settings.append(("removed", key, _show(left.settings[key]), ""))
        elif key not in left.settings:
            result.settings.append(("added", key, "", _show(right.settings[key])))
        elif left.settings[key] != right.settings[key]:
            result.settings.append(
                ("changed", key, _show(left.settings[key]), _show(right.settings[key]))
            )
    old_rules = {str(rule.get("id")): rule for rule in left.policy}
    new_rules = {str(rule.get("id")): rule for rule in right.policy}
    for rule_id in list(old_rules) + [r for r in new_rules if r not in old_rules]:
        if rule_id not in new_rules:
            removed = [(key, _show(value), "") for key, value in sorted(old_rules[rule_id].items())]
            result.rules.append(("removed", rule_id, removed))
        elif rule_id not in old_rules:
            added = [(key, _show(value), "") for key, value in sorted(new_rules[rule_id].items())]
            result.rules.append(("added", rule_id, added))
        elif old_rules[rule_id] != new_rules[rule_id]:
            old, new = old_rules[rule_id], new_rules[rule_id]
            changes = [
                (key, _show(old.get(key)), _show(new.get(key)))
                for key in sorted(set(old) | set(new))
                if old.get(key) != new.get(key)
            ]
            result.rules.append(("changed", rule_id, changes))
    old_order = [r for r in old_rules if r in new_rules]
    new_order = [r for r in new_rules if r in old_rules]
    if old_order != new_order:
        result.rules.append(("reordered", " → ".join(new_order), []))
    return result
