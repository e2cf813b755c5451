"""Agent admins: how a group hears about decisions waiting for review (issue 17).

The screen for what `manage.py notification_preference` does. A chat webhook URL is a
credential: it goes through the same checks (https, no credentials, no private or
link-local target), is stored encrypted, and only its host is ever shown.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.models import Group
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from aispm_site import hostile
from aispm_site.roles import MANAGE_AGENTS_PERMISSION, permission_required
from approvals import notifications
from approvals.models import NotificationPreference

from .notify_forms import GroupPreferenceForm

admin_required = permission_required(MANAGE_AGENTS_PERMISSION)
Channel = NotificationPreference.Channel
SHOWN = 500


def _initial(query, groups: list[str]) -> dict:
    """The form's start: the saved preference named by ?group=&channel=, if any."""
    initial = {"mode": NotificationPreference.Mode.IMMEDIATE, "min_risk": "high"}
    initial["digest_minutes"] = 60
    group = hostile.query_text(query, "group", max_length=150)
    channel = hostile.query_text(query, "channel", max_length=10)
    if group in groups:
        initial["group"] = group
    if channel in Channel.values:
        initial["channel"] = channel
    saved = NotificationPreference.objects.filter(group__name=group, channel=channel).first()
    if group in groups and saved is not None:
        initial.update(
            mode=saved.mode, min_risk=saved.min_risk, digest_minutes=saved.digest_minutes
        )
    return initial


def _rows() -> list[dict]:
    saved = (
        NotificationPreference.objects.filter(group__isnull=False)
        .select_related("group")
        .order_by("group__name", "channel")[:SHOWN]
    )
    return [
        {
            "p": p,
            "is_chat": p.channel in notifications.CHAT_CHANNELS,
            "edit_query": urlencode({"group": p.group.name, "channel": p.channel}),
        }
        for p in saved
    ]


@require_http_methods(["GET", "POST"])
@admin_required
def group_notifications(request: HttpRequest) -> HttpResponse:
    groups = list(Group.objects.order_by("name").values_list("name", flat=True)[:SHOWN])
    posted = request.POST if request.method == "POST" else None
    initial = _initial(request.GET, groups) if posted is None else None
    form = GroupPreferenceForm(posted, groups=groups, initial=initial)
    if posted is not None and form.is_valid():
        data = form.cleaned_data
        group = Group.objects.get(name=data["group"])
        is_chat = data["channel"] in notifications.CHAT_CHANNELS
        try:
            preference = notifications.preference_save(
                actor=request.user,
                group=group,
                channel=data["channel"],
                mode=data["mode"],
                min_risk=data["min_risk"],
                digest_minutes=data["digest_minutes"],
                webhook_url=(data["webhook_url"] or None) if is_chat else None,
            )
        except notifications.PreferenceRefused as exc:
            form.add_error("webhook_url", str(exc))
        else:
            messages.success(
                request,
                f"Saved: {group.name} by {preference.get_channel_display()}, "
                f"{preference.get_mode_display().lower()}.",
            )
            return redirect("agents:group-notifications")
    context = {"form": form, "rows": _rows(), "has_groups": bool(groups)}
    return render(
        request, "agents/group_notifications.html", context, status=400 if posted else 200
    )
