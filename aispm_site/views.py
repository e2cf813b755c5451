from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from . import roles
from .context_processors import workspaces_for


def _pending_counts(user) -> dict[str, str]:
    """What waits for this user in each workspace they may use, by workspace label."""
    from agents.models import Alert
    from approvals import selectors

    counts = {}
    if user.has_perm(roles.REVIEW_PERMISSION):
        queue = selectors.queue_counts(user=user)
        text = f"{queue['mine']} waiting for your review"
        if queue["waiting"]:
            text += f" · {queue['waiting']} waiting for others"
        if queue["snoozed"]:
            text += f" · {queue['snoozed']} snoozed"
        counts["Inbox"] = text
    if user.has_perm(roles.MANAGE_AGENTS_PERMISSION):
        open_alerts = Alert.objects.filter(acknowledged_at__isnull=True).count()
        counts["Alerts"] = f"{open_alerts} open alert{'s' if open_alerts != 1 else ''}"
    return counts


@require_GET
@login_required
def home(request):
    counts = _pending_counts(request.user)
    workspaces = workspaces_for(request.user)
    for workspace in workspaces:
        if workspace["label"] in counts:
            workspace["count"] = counts[workspace["label"]]
    context = {
        "workspaces": workspaces,
        "role_names": sorted(request.user.groups.values_list("name", flat=True)),
    }
    return render(request, "home.html", context)


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})
