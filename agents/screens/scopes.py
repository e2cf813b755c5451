"""An agent's scopes: its grants, their limits and constraints, and which go unused."""

from dataclasses import dataclass
from datetime import timedelta

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import services as agent_services
from agents.models import ActionType, Agent, Grant
from approvals.models import Decision

from .access import admin_required, agent_or_404
from .forms import GrantCreateForm, GrantForm

USE_WINDOW = timedelta(days=30)


def _grant_or_404(agent: Agent, action_key: str) -> Grant:
    return get_object_or_404(
        Grant.objects.select_related("action_type", "agent"),
        agent=agent,
        action_type__key=action_key,
    )


@dataclass(frozen=True)
class ScopeRow:
    action_type: ActionType
    grant: Grant | None
    uses: int

    @property
    def excess(self) -> bool:
        return self.grant is not None and self.uses == 0


def _scope_rows(agent: Agent) -> list[ScopeRow]:
    grants = {g.action_type_id: g for g in agent.grants.all()}
    uses = dict(
        Decision.objects.filter(
            agent=agent, created_at__gte=timezone.now() - USE_WINDOW, canary=False
        )
        .values("action_type")
        .annotate(n=Count("id"))
        .values_list("action_type", "n")
    )
    return [
        ScopeRow(action_type, grants.get(action_type.pk), uses.get(action_type.pk, 0))
        for action_type in ActionType.objects.order_by("key")
    ]


def _render_scopes(request, agent: Agent, *, grant_form=None, status: int = 200):
    rows = _scope_rows(agent)
    if grant_form is None:
        grant_form = GrantCreateForm(
            agent=agent, initial={"action_type": request.GET.get("action")}
        )
    return render(
        request,
        "security/scopes.html",
        {
            "agent": agent,
            "rows": rows,
            "granted": sum(1 for row in rows if row.grant),
            "excess": sum(1 for row in rows if row.excess),
            "window_days": USE_WINDOW.days,
            "grant_form": grant_form,
            "section": "scopes",
        },
        status=status,
    )


@require_GET
@admin_required
def scopes(request: HttpRequest, slug: str) -> HttpResponse:
    return _render_scopes(request, agent_or_404(slug))


def _apply_grant(request, form: GrantForm, *, agent: Agent, action_type: ActionType):
    """Save through grant_apply; a refusal lands on the constraint field. None on refusal."""
    try:
        return agent_services.grant_apply(
            agent=agent,
            action_type=action_type,
            limit_per_hour=form.cleaned_data["limit_per_hour"],
            constraint=form.cleaned_data["constraint"],
            actor=request.user,
        )
    except agent_services.AgentsRefusal as exc:
        form.add_error("constraint", str(exc))
        return None


@require_POST
@admin_required
def grant_create(request: HttpRequest, slug: str) -> HttpResponse:
    agent = agent_or_404(slug)
    form = GrantCreateForm(request.POST, agent=agent)
    if form.is_valid():
        action_type = form.cleaned_data["action_type"]
        if _apply_grant(request, form, agent=agent, action_type=action_type):
            messages.success(request, f"Granted {action_type.key} to {agent.slug}.")
            return redirect(reverse("security:scopes", args=[agent.slug]))
    return _render_scopes(request, agent, grant_form=form, status=400)


@require_http_methods(["GET", "POST"])
@admin_required
def grant_edit(request: HttpRequest, slug: str, action_key: str) -> HttpResponse:
    agent = agent_or_404(slug)
    grant = _grant_or_404(agent, action_key)
    form = GrantForm(
        request.POST or None,
        initial={"limit_per_hour": grant.limit_per_hour, "constraint": grant.constraint},
    )
    if request.method == "POST" and form.is_valid():
        applied = _apply_grant(request, form, agent=agent, action_type=grant.action_type)
        if applied is not None:
            if applied.happened:
                messages.success(request, f"Saved the {action_key} grant.")
            else:
                messages.info(request, f"Nothing changed in the {action_key} grant.")
            return redirect(reverse("security:scopes", args=[agent.slug]))
    return render(
        request,
        "security/grant_edit.html",
        {"agent": agent, "grant": grant, "form": form, "section": "scopes"},
        status=400 if request.method == "POST" else 200,
    )


@require_http_methods(["GET", "POST"])
@admin_required
def grant_remove(request: HttpRequest, slug: str, action_key: str) -> HttpResponse:
    agent = agent_or_404(slug)
    grant = _grant_or_404(agent, action_key)
    if request.method == "POST":
        agent_services.grant_remove(grant=grant, actor=request.user)
        messages.success(request, f"Removed {action_key} from {agent.slug}'s scopes.")
        return redirect(reverse("security:scopes", args=[agent.slug]))
    in_flight = Decision.objects.filter(
        agent=agent,
        action_type=grant.action_type,
        status__in=[
            Decision.Status.PENDING,
            Decision.Status.APPROVED,
            Decision.Status.RELEASING,
        ],
    ).count()
    return render(
        request,
        "security/grant_remove.html",
        {"agent": agent, "grant": grant, "in_flight": in_flight, "section": "scopes"},
    )
