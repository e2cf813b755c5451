import json

import yaml
from django import forms

from agents.models import ActionType
from agents.policy_rules import validate_policy


class BehaviourVersionForm(forms.Form):
    """A new behaviour version, validated as apply_governance validates it."""

    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), required=False)
    settings = forms.CharField(
        label="Settings (JSON)", widget=forms.Textarea(attrs={"rows": 4}), initial="{}"
    )
    policy = forms.CharField(
        label="Policy rules (YAML or JSON)",
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}),
        help_text="A list of rules: id, action, when (CEL), outcome, approvals, ttl, risk, "
        "bulk, reason, step_up (passkey). The first match wins.",
    )
    note = forms.CharField(
        label="Note",
        max_length=1000,
        help_text="What changed and why; shown in the version history.",
    )

    def clean_instructions(self):
        # Browsers send textarea line breaks as CRLF; agents get the text as written.
        return self.cleaned_data["instructions"].replace("\r\n", "\n").replace("\r", "\n")

    def clean_settings(self):
        try:
            value = json.loads(self.cleaned_data["settings"] or "{}")
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Settings must be a JSON object.")
        return value

    def clean_policy(self):
        try:
            value = yaml.safe_load(self.cleaned_data["policy"] or "[]")
        except yaml.YAMLError as exc:
            raise forms.ValidationError(f"Not valid YAML: {exc}") from None
        value = [] if value is None else value
        irreversible = dict(ActionType.objects.values_list("key", "irreversible"))
        problems = validate_policy(value, irreversible_actions=irreversible)
        if problems:
            raise forms.ValidationError([str(problem) for problem in problems])
        return value


class DryRunForm(forms.Form):
    days = forms.IntegerField(label="Replay the last (days)", min_value=1, max_value=90, initial=7)


class ActivateForm(forms.Form):
    reason = forms.CharField(
        label="Reason", max_length=1000, widget=forms.Textarea(attrs={"rows": 2})
    )
    reroute = forms.BooleanField(
        label="Re-route pending decisions created under the version being left",
        required=False,
        initial=True,
    )


def policy_text(policy: list) -> str:
    return yaml.safe_dump(policy, sort_keys=False, allow_unicode=True) if policy else "[]\n"
