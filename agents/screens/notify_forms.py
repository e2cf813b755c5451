from django import forms

from approvals.inbox.notify_forms import PreferenceForm
from approvals.models import NotificationPreference


class GroupPreferenceForm(PreferenceForm):
    """A group's preference for one channel: the profile page's fields, for a group."""

    group = forms.ChoiceField(label="Group", choices=())
    channel = forms.ChoiceField(label="Channel", choices=NotificationPreference.Channel.choices)
    field_order = ["group", "channel", "mode", "min_risk", "digest_minutes", "webhook_url"]

    def __init__(self, *args, groups=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].choices = [(name, name) for name in groups]
        self.fields["webhook_url"].help_text = (
            "Only for Slack, Teams or generic JSON. Stored encrypted and never shown again; "
            "leave blank to keep the group's current one."
        )
