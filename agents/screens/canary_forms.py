from django import forms

from aispm_site import hostile


class CanaryTemplateForm(hostile.Form):
    action = forms.ChoiceField(label="Action", choices=())
    params = forms.CharField(
        label="Params (JSON)",
        max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 5, "class": "mono"}),
        help_text="A request a careful reviewer rejects on sight, e.g. a payment to an "
        "unknown IBAN.",
    )
    reasoning = forms.CharField(
        label="Reasoning shown to reviewers",
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    rate_percent = forms.IntegerField(
        label="Chance per run (%)",
        min_value=1,
        max_value=100,
        initial=5,
        help_text="Beat runs every 15 minutes; each run inserts one canary with this chance.",
    )

    def __init__(self, *args, actions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [(key, key) for key in actions]

    def clean_params(self):
        try:
            value = hostile.json_loads(self.cleaned_data["params"], name="Params")
        except hostile.Refused as exc:
            raise forms.ValidationError(str(exc)) from None
        except ValueError:
            raise forms.ValidationError("Enter a JSON object.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Enter a JSON object.")
        return value


class CanaryToggleForm(hostile.Form):
    enabled = forms.BooleanField(required=False)


class StandingPermissionForm(hostile.Form):
    username = forms.ChoiceField(choices=())
    granted = forms.BooleanField(required=False)

    def __init__(self, *args, usernames=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].choices = [(name, name) for name in usernames]
