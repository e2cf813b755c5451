"""The kill switches: suspend and resume one agent, and the global stop."""

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from agents import services as agent_services
from agents.models import Agent, GlobalStop
from agents.selectors import global_stop_engaged
from approvals.models import Decision

from .access import admin_required, agent_or_404, superuser_required
from .forms import GlobalStopForm, ResumeForm, SuspendForm


@require_http_methods(["GET", "POST"])
@admin_required
def agent_suspend(request: HttpRequest, slug: str) -> HttpResponse:
    agent = agent_or_404(slug)
    form = SuspendForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        agent_services.agent_suspend(
            agent=agent, actor=request.user, reason=form.cleaned_data["reason"]
        )
        messages.success(request, f"Suspended {agent.name}.")
        return redirect(reverse("security:suspend", args=[agent.slug]))
    counts = dict(
        Decision.objects.filter(
            agent=agent,
            status__in=[
                Decision.Status.PENDING,
                Decision.Status.APPROVED,
                Decision.Status.RELEASING,
            ],
        )
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return render(
        request,
        "security/suspend.html",
        {
            "agent": agent,
            "form": form,
            "resume_form": ResumeForm(),
            "pending": counts.get(Decision.Status.PENDING, 0),
            "queued": counts.get(Decision.Status.APPROVED, 0)
            + counts.get(Decision.Status.RELEASING, 0),
            "section": "suspend",
        },
        status=400 if request.method == "POST" else 200,
    )


@require_POST
@admin_required
def agent_resume(request: HttpRequest, slug: str) -> HttpResponse:
    agent = agent_or_404(slug)
    form = ResumeForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    if agent.status == Agent.Status.SUSPENDED:
        agent_services.agent_resume(agent=agent, actor=request.user, reason=reason)
        messages.success(request, f"Resumed {agent.name}; it may submit again.")
    else:
        messages.info(request, f"{agent.name} is not suspended.")
    return redirect(reverse("security:suspend", args=[agent.slug]))


@require_http_methods(["GET", "POST"])
@superuser_required
def global_stop(request: HttpRequest) -> HttpResponse:
    form = GlobalStopForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        engaged = form.cleaned_data["action"] == GlobalStopForm.ENGAGE
        agent_services.global_stop_set(
            engaged=engaged, reason=form.cleaned_data["reason"], actor=request.user
        )
        if engaged:
            messages.warning(request, "Global stop engaged: nothing is released until lifted.")
        else:
            messages.success(request, "Global stop lifted: approved actions release again.")
        return redirect(reverse("security:global-stop"))
    stop = GlobalStop.objects.select_related("changed_by").order_by("-changed_at").first()
    queued = Decision.objects.filter(
        status__in=[Decision.Status.APPROVED, Decision.Status.RELEASING]
    ).count()
    return render(
        request,
        "security/global_stop.html",
        {"stop": stop, "engaged": global_stop_engaged(), "form": form, "queued": queued},
        status=400 if request.method == "POST" else 200,
    )
