"""The forms of the agent-admin screens: behaviour versions, keys, scopes, alerts and
the kill switches. They check input; the services decide."""

import yaml
from django import forms

from agents.models import ActionType, Agent
from agents.policy_rules import validate_constraint, validate_policy
from aispm_site import hostile


class BehaviourVersionForm(hostile.Form):
    """A new behaviour version, validated as apply_governance validates it."""

    instructions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}),
        required=False,
        # Kept as typed: stripping the trailing newline made a phantom diff.
        strip=False,
    )
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
            value = hostile.json_loads(self.cleaned_data["settings"] or "{}", name="Settings")
        except hostile.Refused as exc:
            raise forms.ValidationError(str(exc)) from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Settings must be a JSON object.")
        return value

    def clean_policy(self):
        try:
            value = hostile.yaml_load(self.cleaned_data["policy"] or "[]", name="Policy")
        except yaml.YAMLError as exc:
            raise forms.ValidationError(f"Not valid YAML: {exc}") from None
        except hostile.Refused as exc:
            raise forms.ValidationError(str(exc)) from None
        value = [] if value is None else value
        irreversible = dict(ActionType.objects.values_list("key", "irreversible"))
        problems = validate_policy(value, irreversible_actions=irreversible)
        if problems:
            raise forms.ValidationError([str(problem) for problem in problems])
        return value


class DryRunForm(hostile.Form):
    days = forms.IntegerField(label="Replay the last (days)", min_value=1, max_value=90, initial=7)


class ActivateForm(hostile.Form):
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


def _required_text(label: str, message: str, *, max_length: int = 1000, rows: int = 2):
    return forms.CharField(
        label=label,
        max_length=max_length,
        strip=True,
        widget=forms.Textarea(attrs={"rows": rows}),
        error_messages={"required": message},
    )


class KeyIssueForm(hostile.Form):
    label = forms.CharField(
        label="Label",
        max_length=200,
        required=False,
        help_text="Where the key will live, e.g. “prod worker”. Shown in this list.",
    )
    expires_in_days = forms.IntegerField(
        label="Expires after (days)", min_value=1, max_value=365, initial=90
    )


class KeyRotateForm(hostile.Form):
    overlap_hours = forms.IntegerField(
        label="Overlap (hours)",
        min_value=0,
        max_value=720,
        help_text="How long the old key keeps working, so the agent can switch without "
        "downtime. 0 stops it at once.",
    )


class KeyRevokeForm(hostile.Form):
    reason = _required_text("Reason", "Say why the key is revoked.")


class GrantForm(hostile.Form):
    limit_per_hour = forms.IntegerField(
        label="Limit per hour",
        min_value=1,
        max_value=hostile.INT32_MAX,
        required=False,
        help_text="Leave empty for no limit.",
    )
    constraint = forms.CharField(
        label="Constraint (CEL)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "class": "mono"}),
        help_text="Checked on every submission, over params, evidence, confidence, agent "
        "and action; e.g. size(params.to) <= 50. Leave empty for none.",
    )

    def clean_constraint(self):
        constraint = self.cleaned_data["constraint"].strip()
        problems = validate_constraint(constraint)
        if problems:
            raise forms.ValidationError([problem.message for problem in problems])
        return constraint


class GrantCreateForm(GrantForm):
    action_type = forms.ModelChoiceField(
        label="Action",
        queryset=ActionType.objects.none(),
        to_field_name="key",
        empty_label="Choose an action…",
    )
    field_order = ["action_type", "limit_per_hour", "constraint"]

    def __init__(self, *args, agent: Agent, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action_type"].queryset = ActionType.objects.exclude(
            grants__agent=agent
        ).order_by("key")


class SuspendForm(hostile.Form):
    reason = _required_text("Reason", "Say why the agent is suspended.")


class ResumeForm(hostile.Form):
    reason = forms.CharField(
        label="Reason", max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class AcknowledgeForm(hostile.Form):
    comment = _required_text("Comment", "Say what you found or did.", max_length=2000, rows=2)


class GlobalStopForm(hostile.Form):
    ENGAGE, LIFT = "engage", "lift"

    action = forms.ChoiceField(choices=[(ENGAGE, "Engage"), (LIFT, "Lift")])
    reason = forms.CharField(
        label="Reason", max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("action") == self.ENGAGE and not cleaned.get("reason", "").strip():
            self.add_error("reason", "Say why the global stop is engaged.")
        return cleaned
