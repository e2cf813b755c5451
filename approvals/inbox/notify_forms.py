from django import forms

from agents.models import Risk
from aispm_site import hostile

from ..models import NotificationPreference
from .forms import ViewedField


class SecretURLInput(forms.URLInput):
    """A URL input for a credential: a page never renders back what was typed."""

    def format_value(self, value):
        return None


class PreferenceForm(hostile.Form):
    channel = forms.ChoiceField(
        choices=NotificationPreference.Channel.choices, widget=forms.HiddenInput
    )
    mode = forms.ChoiceField(choices=NotificationPreference.Mode.choices)
    min_risk = forms.ChoiceField(label="At or above risk", choices=Risk.choices)
    digest_minutes = forms.IntegerField(
        label="Digest every (minutes)", min_value=5, max_value=1440, initial=60
    )
    webhook_url = forms.URLField(
        label="Incoming webhook URL",
        required=False,
        max_length=2000,
        assume_scheme="https",
        help_text="Stored encrypted and never shown again; leave blank to keep the current one.",
        widget=SecretURLInput(attrs={"autocomplete": "off"}),
    )


class ChatApproveForm(hostile.Form):
    comment = forms.CharField(required=False, max_length=2000, widget=forms.Textarea)
    viewed = ViewedField()
