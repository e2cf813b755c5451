"""Agent admins opt an agent in to canary decisions by defining templates (issue 17)."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from agents.models import Agent
from aispm_site.roles import MANAGE_AGENTS_PERMISSION, permission_required
from approvals import canaries
from approvals.models import CanaryTemplate, Decision

from .canary_forms import CanaryTemplateForm, CanaryToggleForm

admin_required = permission_required(MANAGE_AGENTS_PERMISSION)


def _grants(agent: Agent) -> dict:
    return {g.action_type.key: g.action_type for g in agent.grants.select_related("action_type")}


@require_http_methods(["GET", "POST"])
@admin_required
def canary_list(request: HttpRequest, slug: str) -> HttpResponse:
    agent = get_object_or_404(Agent, slug=slug)
    grants = _grants(agent)
    posted = request.POST if request.method == "POST" else None
    form = CanaryTemplateForm(posted, actions=sorted(grants))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            canaries.canary_template_save(
                actor=request.user,
                agent=agent,
                action_type=grants[data["action"]],
                params=data["params"],
                reasoning=data["reasoning"],
                rate_percent=data["rate_percent"],
            )
        except canaries.CanaryRefused as exc:
            form.add_error("params", str(exc))
        else:
            messages.success(request, "Canary template saved.")
            return redirect("agents:canaries", slug=agent.slug)
    templates = agent.canary_templates.select_related("action_type")
    inserted = Decision.objects.filter(agent=agent, canary=True)
    context = {
        "agent": agent,
        "templates": templates,
        "form": form,
        "inserted": inserted.count(),
        "caught": inserted.filter(status=Decision.Status.REJECTED).count(),
        "missed": inserted.filter(status=Decision.Status.BLOCKED).count(),
    }
    status = 400 if request.method == "POST" else 200
    return render(request, "agents/canaries.html", context, status=status)


@require_POST
@admin_required
def canary_toggle(request: HttpRequest, slug: str, template_id: int) -> HttpResponse:
    template = get_object_or_404(
        CanaryTemplate.objects.select_related("agent", "action_type"),
        pk=template_id,
        agent__slug=slug,
    )
    form = CanaryToggleForm(request.POST)
    if form.is_valid():
        canaries.canary_template_save(
            actor=request.user,
            agent=template.agent,
            action_type=template.action_type,
            params=template.params,
            reasoning=template.reasoning,
            evidence=template.evidence,
            rate_percent=template.rate_percent,
            enabled=form.cleaned_data["enabled"],
            template=template,
        )
    return redirect("agents:canaries", slug=slug)
