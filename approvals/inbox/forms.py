import json

from django import forms

from aispm_site import hostile

from .. import scope
from ..templatetags.approvals_extras import field_label

REJECT_TAGS = [
    ("wrong recipient", "Wrong recipient"),
    ("wrong amount", "Wrong amount"),
    ("tone", "Tone"),
    ("not needed", "Not needed"),
    ("policy", "Against policy"),
    ("insufficient evidence", "Insufficient evidence"),
]


class ParamsHashField(forms.RegexField):
    """The params_fingerprint() the reviewer was shown: 64 hex digits, nothing else."""

    def __init__(self, **kwargs):
        super().__init__(r"^[0-9a-f]{64}\Z", max_length=64, widget=forms.HiddenInput, **kwargs)


class ViewedField(forms.CharField):
    """When the page was shown, signed (approvals.attention.viewed_token). Optional and
    never a reason to refuse: a value too long to be a token is dropped, not an error."""

    MAX = 500

    def __init__(self, **kwargs):
        super().__init__(required=False, widget=forms.HiddenInput, **kwargs)

    def to_python(self, value):
        value = super().to_python(value)
        return value if len(value) <= self.MAX else ""


class ApproveForm(hostile.Form):
    params_hash = ParamsHashField()
    comment = forms.CharField(required=False, max_length=2000, widget=forms.Textarea)
    # Attention signals (approvals.attention): optional, and never a reason to refuse.
    viewed = ViewedField()
    params_expanded = forms.TypedChoiceField(
        required=False,
        choices=[("", ""), ("0", "0"), ("1", "1")],
        coerce=lambda value: value == "1",
        empty_value=None,
        widget=forms.HiddenInput,
    )
    # A WebAuthn assertion, for decisions that need a passkey-signed approval.
    assertion = forms.CharField(required=False, max_length=64 * 1024, strip=False)


class RejectForm(hostile.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": "Say why, so the agent can learn from it."},
    )
    tags = forms.MultipleChoiceField(
        choices=REJECT_TAGS, required=False, widget=forms.CheckboxSelectMultiple
    )

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why, so the agent can learn from it.")
        return reason


class BulkApproveForm(hostile.Form):
    decisions = forms.TypedMultipleChoiceField(coerce=str, choices=())

    def __init__(self, *args, eligible_ids=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["decisions"].choices = [(str(pk), str(pk)) for pk in eligible_ids]


def _kind(schema: dict) -> str:
    types = schema.get("type")
    if "enum" in schema and all(isinstance(v, str) for v in schema["enum"]):
        return "enum"
    if types == "string":
        return "string"
    if types == "integer":
        return "integer"
    if types == "number":
        return "number"
    if types == "boolean":
        return "boolean"
    if types == "array" and (schema.get("items") or {}).get("type") == "string":
        return "lines"
    return "json"


class ParamsEditForm(hostile.Form):
    """A form generated from an action type's params JSON Schema.

    Each top-level property gets a field that suits its type; anything richer is
    edited as JSON. The cleaned result is checked against the schema here, for field
    errors; the approval service then puts it through the agent's whole gate (grant,
    constraint, anomaly rules, policy), so an edit can never approve params the agent
    would not have been allowed to send.
    """

    comment = forms.CharField(
        label="Comment for the agent", required=False, max_length=2000, widget=forms.Textarea
    )
    params_hash = ParamsHashField()
    viewed = ViewedField()

    def __init__(self, *args, action_type, params: dict, **kwargs):
        self.action_type = action_type
        self.original = params
        schema = action_type.params_schema or {}
        self.properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        initial = kwargs.pop("initial", {}) or {}
        super().__init__(*args, initial=initial, **kwargs)
        self.kinds = {}
        param_fields = {}
        for name, prop in self.properties.items():
            kind = self.kinds[name] = _kind(prop if isinstance(prop, dict) else {})
            param_fields[f"p_{name}"] = self._field(name, kind, prop, name in required)
            if name in params:
                self.initial[f"p_{name}"] = self._initial(kind, params[name])
        # Param fields first, in schema order; then the comment.
        self.fields = {**param_fields, **self.fields}

    @staticmethod
    def _field(name: str, kind: str, prop: dict, required: bool) -> forms.Field:
        label = field_label(name, {"properties": {name: prop}})
        help_text = prop.get("description", "")
        common = {
            "label": label,
            "required": required and kind != "boolean",
            "help_text": help_text,
        }
        if kind == "enum":
            choices = [("", "—")] if not required else []
            return forms.ChoiceField(choices=choices + [(v, v) for v in prop["enum"]], **common)
        if kind == "string":
            long = prop.get("maxLength") is None or prop.get("maxLength", 0) > 200
            widget = forms.Textarea(attrs={"rows": 6}) if long else forms.TextInput
            return forms.CharField(
                strip=False,
                widget=widget,
                max_length=prop.get("maxLength"),
                min_length=prop.get("minLength"),
                **common,
            )
        if kind == "integer":
            return forms.IntegerField(**common)
        if kind == "number":
            return forms.FloatField(**common)
        if kind == "boolean":
            return forms.BooleanField(**common)
        if kind == "lines":
            common["help_text"] = help_text or "One per line."
            return forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), **common)
        common["help_text"] = help_text or "JSON."
        return forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), **common)

    @staticmethod
    def _initial(kind: str, value):
        if kind == "lines" and isinstance(value, list):
            return "\n".join(str(item) for item in value)
        if kind == "json":
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value

    def _value(self, name: str, kind: str, raw):
        if kind == "lines":
            return [line.strip() for line in (raw or "").splitlines() if line.strip()]
        if kind == "json":
            try:
                return hostile.json_loads(raw)
            except (TypeError, ValueError):
                raise forms.ValidationError({f"p_{name}": "Enter valid JSON."}) from None
        if kind == "number" and raw is not None and float(raw).is_integer():
            # Keep whole numbers whole, as the agent sent them.
            original = self.original.get(name)
            return int(raw) if isinstance(original, int) else raw
        return raw

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        # Keys the schema does not describe pass through unchanged.
        params = {k: v for k, v in self.original.items() if k not in self.properties}
        for name, kind in self.kinds.items():
            raw = cleaned.get(f"p_{name}")
            if raw in (None, "") and kind not in ("boolean",) and name not in self.original:
                continue
            if raw in (None, "", []) and kind != "boolean":
                continue
            params[name] = self._value(name, kind, raw)
        errors = scope.params_errors(action_type=self.action_type, params=params)
        for path, messages in errors.items():
            field = path.removeprefix("params").lstrip(".").split("[")[0].split(".")[0]
            target = f"p_{field}" if f"p_{field}" in self.fields else None
            for message in messages:
                self.add_error(target, message)
        cleaned["params"] = params
        return cleaned
