"""Agent admin screens: behaviour versions, diffs, activation and rollback, metrics,
dry runs and the feedback export."""

import json
from datetime import UTC, datetime, time

from django.contrib import messages
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from agents import services as agent_services
from agents.models import Agent, Alert, BehaviourVersion
from agents.selectors import activation_history, active_behaviour
from aispm_site import hostile
from approvals import selectors, services
from approvals.models import Decision

from .access import admin_required
from .diff import diff_versions
from .forms import ActivateForm, BehaviourVersionForm, DryRunForm, policy_text


def _agent_or_404(slug: str) -> Agent:
    return get_object_or_404(Agent.objects.select_related("owner", "active_behaviour"), slug=slug)


def _version_or_404(agent: Agent, number) -> BehaviourVersion:
    parsed = hostile.parse_int(number, minimum=1, maximum=hostile.INT32_MAX)
    try:
        if parsed is None:
            raise BehaviourVersion.DoesNotExist
        return agent.behaviour_versions.get(number=parsed)
    except BehaviourVersion.DoesNotExist:
        raise Http404("No such version.") from None


@require_GET
@admin_required
def agent_list(request: HttpRequest) -> HttpResponse:
    agents = (
        Agent.objects.select_related("active_behaviour", "owner")
        .annotate(
            pending=Count(
                "decisions",
                filter=Q(decisions__status=Decision.Status.PENDING, decisions__canary=False),
            ),
            open_alerts=Count(
                "alerts", filter=Q(alerts__acknowledged_at__isnull=True), distinct=True
            ),
        )
        .order_by("slug")
    )
    return render(request, "agents/list.html", {"agents": agents})


@require_GET
@admin_required
def agent_detail(request: HttpRequest, slug: str) -> HttpResponse:
    agent = _agent_or_404(slug)
    versions = agent.behaviour_versions.select_related("created_by").order_by("-number")
    metrics = selectors.version_metrics(agent=agent)
    by_number = {m["version"]: m for m in metrics}
    active = active_behaviour(agent)
    comparison = None
    if active is not None:
        comparison = {
            "active": by_number.get(active.number),
            "previous": by_number.get(active.number - 1),
            "active_number": active.number,
        }
    return render(
        request,
        "agents/detail.html",
        {
            "agent": agent,
            "versions": versions,
            "metrics": metrics,
            "comparison": comparison,
            "alerts": Alert.objects.filter(agent=agent, acknowledged_at__isnull=True)[:10],
            "activations": activation_history(agent),
        },
    )


@require_GET
@admin_required
def version_diff(request: HttpRequest, slug: str) -> HttpResponse:
    agent = _agent_or_404(slug)
    active = active_behaviour(agent)
    default_b = active.number if active else 1
    left = _version_or_404(agent, request.GET.get("a", max(default_b - 1, 1)))
    right = _version_or_404(agent, request.GET.get("b", default_b))
    return render(
        request,
        "agents/diff.html",
        {
            "agent": agent,
            "left": left,
            "right": right,
            "diff": diff_versions(left, right),
            "numbers": list(agent.behaviour_versions.values_list("number", flat=True)),
        },
    )


@require_http_methods(["GET", "POST"])
@admin_required
def version_new(request: HttpRequest, slug: str) -> HttpResponse:
    agent = _agent_or_404(slug)
    active = active_behaviour(agent)
    dry_run = None
    if request.method == "POST":
        form = BehaviourVersionForm(request.POST)
        dry_form = DryRunForm(request.POST)
        if form.is_valid() and request.POST.get("action") == "dry_run":
            if dry_form.is_valid():
                dry_run = selectors.policy_dry_run(
                    agent=agent,
                    policy_rules=form.cleaned_data["policy"],
                    days=dry_form.cleaned_data["days"],
                )
        elif form.is_valid():
            try:
                version = agent_services.behaviour_version_create(
                    agent=agent,
                    instructions=form.cleaned_data["instructions"],
                    settings=form.cleaned_data["settings"],
                    policy=form.cleaned_data["policy"],
                    note=form.cleaned_data["note"],
                    actor=request.user,
                )
            except agent_services.AgentsRefusal as exc:
                # The policy was checked by the form; an action type may have changed since.
                form.add_error("policy", str(exc))
            else:
                messages.success(
                    request, f"Saved v{version.number}. Review the change, then activate it."
                )
                return redirect(reverse("agents:activate", args=[agent.slug, version.number]))
    else:
        form = BehaviourVersionForm(
            initial={
                "instructions": active.instructions if active else "",
                "settings": json.dumps(active.settings if active else {}, indent=2),
                "policy": policy_text(active.policy if active else []),
            }
        )
        dry_form = DryRunForm()
    return render(
        request,
        "agents/version_new.html",
        {"agent": agent, "form": form, "dry_form": dry_form, "dry_run": dry_run, "active": active},
        status=400 if request.method == "POST" and form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
@admin_required
def version_activate(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    agent = _agent_or_404(slug)
    version = _version_or_404(agent, number)
    active = active_behaviour(agent)
    rollback = bool(active and version.number < active.number)
    # What activating this version would do to the pending decisions, as the dry run says.
    preview = selectors.pending_reroute_preview(agent=agent, version=version)
    affected = preview.rerouted + preview.cancelled
    form = ActivateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if active and active.pk == version.pk:
            messages.info(request, f"v{version.number} is already active.")
            return redirect(reverse("agents:detail", args=[agent.slug]))
        agent_services.behaviour_version_activate(
            version=version, actor=request.user, reason=form.cleaned_data["reason"]
        )
        verb = "Rolled back to" if rollback else "Activated"
        message = f"{verb} v{version.number}."
        if form.cleaned_data["reroute"] and affected:
            result = services.decisions_reroute(
                agent=agent,
                actor=request.user,
                left_version=active.number if active else None,
                rollback=rollback,
            )
            message += (
                f" Re-routed {result.rerouted} pending decision{pluralize(result.rerouted)} "
                f"to v{version.number}'s routing and cancelled {result.cancelled} that "
                f"v{version.number} denies; {result.unchanged} already matched it."
            )
        elif affected:
            message += (
                f" You chose not to re-route: {affected} pending "
                f"decision{pluralize(affected)} keep{'s' if affected == 1 else ''} "
                f"the routing they had."
            )
        messages.success(request, message)
        return redirect(reverse("agents:detail", args=[agent.slug]))
    return render(
        request,
        "agents/activate.html",
        {
            "agent": agent,
            "version": version,
            "active": active,
            "rollback": rollback,
            "diff": diff_versions(active, version) if active else None,
            "preview": preview,
            "affected": affected,
            "pending_left": (
                Decision.objects.filter(
                    agent=agent, status=Decision.Status.PENDING, behaviour_version=active.number
                ).count()
                if active
                else 0
            ),
            "form": form,
        },
        status=400 if request.method == "POST" else 200,
    )


def _date(value: str, *, end: bool = False):
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return None
    return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)


@require_GET
@admin_required
def feedback_export(request: HttpRequest, slug: str) -> StreamingHttpResponse:
    """Reviewer feedback as JSON Lines, for evaluation and fine-tuning sets."""
    agent = _agent_or_404(slug)
    version = hostile.parse_int(
        request.GET.get("version", ""), minimum=1, maximum=hostile.INT32_MAX
    )
    reviews = selectors.feedback_rows(
        agent=agent,
        version=version,
        since=_date(hostile.query_text(request.GET, "from", max_length=10)),
        until=_date(hostile.query_text(request.GET, "to", max_length=10), end=True),
    )

    def lines():
        for review in reviews.iterator(chunk_size=1000):
            decision = review.decision
            yield (
                json.dumps(
                    {
                        "decision_id": str(decision.pk),
                        "action": decision.action_type.key,
                        "behaviour_version": decision.behaviour_version,
                        "summary": decision.summary,
                        "evidence": decision.evidence,
                        "reasoning": decision.reasoning,
                        "confidence": decision.confidence,
                        "policy": {
                            "outcome": decision.policy_outcome,
                            "rule": decision.policy_rule,
                        },
                        "verdict": review.verdict,
                        "reason": review.comment,
                        "tags": review.tags,
                        "original_params": decision.params,
                        "approved_params": review.params_after
                        if review.params_after is not None
                        else (decision.params if review.verdict != "reject" else None),
                        "reviewer": review.reviewer.get_username(),
                        "reviewed_at": review.created_at,
                    },
                    cls=DjangoJSONEncoder,
                    ensure_ascii=False,
                    separators=(",", ":"),
                )
                + "\n"
            )

    response = StreamingHttpResponse(lines(), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="feedback-{agent.slug}.jsonl"'
    return response
