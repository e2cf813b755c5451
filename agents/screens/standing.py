"""Agent admins: standing approvals on an agent (revoke at once), and who may create them."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents.models import Agent
from aispm_site.roles import MANAGE_AGENTS_PERMISSION, REVIEW_PERMISSION, permission_required
from approvals import standing
from approvals.models import StandingApproval

from .canary_forms import StandingPermissionForm

admin_required = permission_required(MANAGE_AGENTS_PERMISSION)


@require_GET
@admin_required
def standing_list(request: HttpRequest, slug: str) -> HttpResponse:
    agent = get_object_or_404(Agent, slug=slug)
    approvals = (
        StandingApproval.objects.filter(agent=agent)
        .select_related("action_type", "created_by", "revoked_by")
        .order_by("-created_at")[:200]
    )
    now = timezone.now()
    rows = [{"s": s, "active": s.is_active_at(now)} for s in approvals]
    return render(request, "agents/standing.html", {"agent": agent, "rows": rows})


@require_POST
@admin_required
def standing_revoke(request: HttpRequest, slug: str, standing_id) -> HttpResponse:
    found = get_object_or_404(StandingApproval, pk=standing_id, agent__slug=slug)
    standing.standing_approval_revoke(standing=found, actor=request.user, reason="revoked by admin")
    messages.success(request, "Standing approval revoked.")
    return redirect("agents:standing", slug=slug)


@require_http_methods(["GET", "POST"])
@admin_required
def standing_approvers(request: HttpRequest) -> HttpResponse:
    users = [
        u
        for u in get_user_model().objects.filter(is_active=True).order_by("username")[:500]
        if u.has_perm(REVIEW_PERMISSION)
    ]
    posted = request.POST if request.method == "POST" else None
    form = StandingPermissionForm(posted, usernames=[u.get_username() for u in users])
    if posted is not None and form.is_valid():
        user = get_user_model().objects.get(username=form.cleaned_data["username"])
        standing.standing_permission_set(
            user=user, granted=form.cleaned_data["granted"], actor=request.user
        )
        messages.success(request, "Saved.")
        return redirect("agents:standing-approvers")
    rows = [{"user": u, "granted": u.has_perm(standing.PERMISSION)} for u in users]
    status = 400 if posted is not None else 200
    return render(request, "agents/standing_approvers.html", {"rows": rows}, status=status)
