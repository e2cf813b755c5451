"""Reassign, snooze, "approve and allow similar", and out-of-office (issue 17)."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from aispm_site.roles import REVIEW_PERMISSION, permission_required

from .. import routing, selectors, services, standing
from ..models import Decision, ReviewerDelegation
from .routing_forms import DelegationForm, ReassignForm, SnoozeForm, StandingForm

review_required = permission_required(REVIEW_PERMISSION)
# A snooze lasts at most until its decision expires, so a reviewer's list stays short.
SNOOZED_SHOWN = 200


def _pending_or_404(decision_id) -> Decision:
    decision = selectors.decision_for_review(decision_id=decision_id)
    if decision is None:
        raise Http404("No such decision.")
    return decision


def _page(request, decision, template: str, form, status=200, **extra) -> HttpResponse:
    context = {
        "decision": decision,
        "form": form,
        "detail_url": reverse("approvals:detail", args=[decision.pk]),
        **extra,
    }
    return render(request, template, context, status=status)


@require_http_methods(["GET", "POST"])
@review_required
def reassign(request: HttpRequest, decision_id) -> HttpResponse:
    decision = _pending_or_404(decision_id)
    reviewers = routing.reviewers_to_choose()
    posted = request.POST if request.method == "POST" else None
    form = ReassignForm(posted, reviewers=reviewers)
    if posted is None or not form.is_valid():
        return _page(request, decision, "approvals/reassign.html", form, 400 if posted else 200)
    user = group = None
    if form.cleaned_data["reviewer"]:
        user = get_user_model().objects.get(username=form.cleaned_data["reviewer"])
    else:
        group = Group.objects.get(name=form.cleaned_data["group"])
    try:
        routing.decision_reassign(
            decision=decision,
            by=request.user,
            note=form.cleaned_data["note"],
            user=user,
            group=group,
        )
    except routing.RoutingRefused as exc:
        form.add_error(None, str(exc))
        return _page(request, decision, "approvals/reassign.html", form, 400)
    messages.success(request, "Reassigned.")
    return redirect("approvals:detail", decision_id=decision.pk)


@require_http_methods(["GET", "POST"])
@review_required
def snooze(request: HttpRequest, decision_id) -> HttpResponse:
    decision = _pending_or_404(decision_id)
    posted = request.POST if request.method == "POST" else None
    form = SnoozeForm(posted)
    if posted is None or not form.is_valid():
        return _page(request, decision, "approvals/snooze.html", form, 400 if posted else 200)
    until = timezone.now() + timedelta(hours=form.cleaned_data["hours"])
    try:
        routing.decision_snooze(decision=decision, user=request.user, until=until)
    except routing.RoutingRefused as exc:
        form.add_error("hours", str(exc))
        return _page(request, decision, "approvals/snooze.html", form, 400)
    messages.success(request, f"Snoozed until {until:%Y-%m-%d %H:%M} UTC.")
    return redirect("approvals:inbox")


@require_GET
@review_required
def snoozed(request: HttpRequest) -> HttpResponse:
    """The decisions this reviewer snoozed out of their own queue, until when."""
    now = timezone.now()
    context = {
        "snoozes": routing.snoozes_running(user=request.user, now=now)[:SNOOZED_SHOWN],
        "queues": selectors.QUEUES,
        "queue_counts": selectors.queue_counts(user=request.user, now=now),
    }
    return render(request, "approvals/snoozed.html", context)


@require_POST
@review_required
def unsnooze(request: HttpRequest, decision_id) -> HttpResponse:
    """Undo one's own snooze; anyone else's, or one that has ended, is not found."""
    snooze = (
        routing.snoozes_running(user=request.user, now=timezone.now())
        .filter(decision_id=decision_id)
        .first()
    )
    if snooze is None:
        raise Http404("You have no running snooze on this decision.")
    try:
        routing.decision_unsnooze(decision=snooze.decision, user=request.user)
    except routing.RoutingRefused as exc:
        raise Http404(str(exc)) from None
    messages.success(request, "Unsnoozed: the decision is back in your queue.")
    return redirect("approvals:snoozed")


@require_http_methods(["GET", "POST"])
@review_required
def allow_similar(request: HttpRequest, decision_id) -> HttpResponse:
    """Approve, and allow similar decisions for a while (needs its own permission)."""
    if not request.user.has_perm(standing.PERMISSION):
        raise PermissionDenied("You may not create standing approvals.")
    decision = _pending_or_404(decision_id)
    params = services.effective_params(decision)
    refusal = None
    if standing.never_standing(decision.action_type, decision.risk):
        refusal = "Standing approvals never cover irreversible actions at high or critical risk."
    posted = request.POST if request.method == "POST" else None
    form = StandingForm(
        posted,
        initial={"condition": standing.condition_suggest(params), "max_count": 10, "hours": 24},
    )
    if posted is None or refusal or not form.is_valid():
        status = 400 if posted else 200
        return _page(
            request, decision, "approvals/allow_similar.html", form, status, refusal=refusal
        )
    data = form.cleaned_data
    try:
        standing.standing_approval_create(
            decision=decision,
            reviewer=request.user,
            condition=data["condition"],
            max_count=data["max_count"],
            ends_at=timezone.now() + timedelta(hours=data["hours"]),
            note=data["note"],
        )
    except standing.StandingRefused as exc:
        form.add_error("condition", str(exc))
        return _page(request, decision, "approvals/allow_similar.html", form, 400)
    except (services.DecisionConflict, services.ReviewNotAllowed) as exc:
        form.add_error(None, str(exc))
        return _page(request, decision, "approvals/allow_similar.html", form, 400)
    messages.success(request, f"Approved, and allowing similar for {data['hours']} hours.")
    return redirect("approvals:inbox")


@require_http_methods(["GET", "POST"])
@review_required
def away(request: HttpRequest) -> HttpResponse:
    reviewers = [u for u in routing.reviewers_to_choose() if u.pk != request.user.pk]
    posted = request.POST if request.method == "POST" else None
    form = DelegationForm(posted, reviewers=reviewers)
    if posted is not None and form.is_valid():
        data = form.cleaned_data
        try:
            routing.delegation_create(
                user=request.user,
                delegate=get_user_model().objects.get(username=data["delegate"]),
                starts_at=data["starts_at"],
                ends_at=data["ends_at"],
            )
        except routing.RoutingRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Out-of-office delegation saved.")
            return redirect("approvals:away")
    delegations = ReviewerDelegation.objects.filter(
        user=request.user, cancelled_at__isnull=True, ends_at__gt=timezone.now()
    ).select_related("delegate")
    context = {"form": form, "delegations": delegations}
    return render(request, "approvals/away.html", context, status=400 if posted else 200)


@require_POST
@review_required
def away_cancel(request: HttpRequest, delegation_id: int) -> HttpResponse:
    delegation = ReviewerDelegation.objects.filter(pk=delegation_id, user=request.user).first()
    if delegation is None:
        raise Http404("No such delegation.")
    try:
        routing.delegation_cancel(delegation=delegation, user=request.user)
    except routing.RoutingRefused as exc:
        messages.error(request, str(exc))
    return redirect("approvals:away")
