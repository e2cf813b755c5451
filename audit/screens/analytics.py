"""Reviewer analytics for agent admins and auditors (issue 17). Read-only.

Charts are SVG drawn on the server: no script, no inline style, nothing from a CDN.
"""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from aispm_site import hostile
from aispm_site.roles import AUDIT_PERMISSION, MANAGE_AGENTS_PERMISSION
from approvals import analytics

WINDOWS = {"24": 24, "72": 72, "168": 168}
FAST_SECONDS = 10


def admins_or_auditors(view):
    @wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        user = request.user
        if not (user.has_perm(MANAGE_AGENTS_PERMISSION) or user.has_perm(AUDIT_PERMISSION)):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped


@require_GET
@admins_or_auditors
def reviewers(request: HttpRequest) -> HttpResponse:
    window = hostile.query_text(request.GET, "hours", max_length=4, default="24")
    hours = WINDOWS.get(window, 24)
    now = timezone.now()
    since = now - timezone.timedelta(hours=hours)
    health = analytics.queue_health(now=now, hours=hours)
    rows = analytics.reviewer_rows(since=since, fast_seconds=FAST_SECONDS)
    context = {
        "hours": hours,
        "windows": WINDOWS,
        "health": health,
        "pending_chart": analytics.line_chart(health["hourly"], ["pending"]),
        "flow_chart": analytics.line_chart(health["hourly"], ["arrivals", "decisions"]),
        "p95_chart": analytics.bar_chart([(r.username, r.p95) for r in rows]),
        "rows": rows,
        "actions": analytics.action_rows(since=since),
        "fast_seconds": FAST_SECONDS,
    }
    return render(request, "audit/analytics.html", context)
