from django import forms
from django.contrib.auth.models import Group

from aispm_site import hostile

from ..standing import MAX_COUNT, MAX_DAYS


class ReassignForm(hostile.Form):
    reviewer = forms.ChoiceField(required=False, choices=())
    group = forms.ChoiceField(required=False, choices=())
    note = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, reviewers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reviewer"].choices = [("", "—")] + [
            (u.get_username(), u.get_username()) for u in reviewers
        ]
        self.fields["group"].choices = [("", "—")] + [
            (name, name) for name in Group.objects.order_by("name").values_list("name", flat=True)
        ]

    def clean(self):
        data = super().clean()
        if bool(data.get("reviewer")) == bool(data.get("group")):
            raise forms.ValidationError("Choose one reviewer or one group.")
        return data


class SnoozeForm(hostile.Form):
    hours = forms.IntegerField(label="Snooze for (hours)", min_value=1, max_value=24 * 30)


class StandingForm(hostile.Form):
    condition = forms.CharField(
        label="Allow similar when (CEL)",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
        help_text="Clauses joined by &&, each testing params. It must match this decision.",
    )
    max_count = forms.IntegerField(label="At most (decisions)", min_value=1, max_value=MAX_COUNT)
    hours = forms.IntegerField(
        label="For (hours)", min_value=1, max_value=MAX_DAYS * 24, initial=24
    )
    note = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )


class DelegationForm(hostile.Form):
    delegate = forms.ChoiceField(choices=())
    starts_at = forms.DateTimeField(label="From (UTC)")
    ends_at = forms.DateTimeField(label="Until (UTC)")

    def __init__(self, *args, reviewers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["delegate"].choices = [(u.get_username(), u.get_username()) for u in reviewers]
