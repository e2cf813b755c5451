"""The reviewer inbox: triage pending decisions, with the agent's reasoning beside them."""

from datetime import timedelta
from urllib.parse import urlencode
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import push_url, reswap, retarget

from aispm_site.roles import REVIEW_PERMISSION, permission_required

from .. import attention, passkeys, selectors, services
from ..models import Decision, ReviewAttention
from ..readable import readable_summary
from .forms import ApproveForm, BulkApproveForm, ParamsEditForm, RejectForm

review_required = permission_required(REVIEW_PERMISSION)
Via = ReviewAttention.Via


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except (TypeError, ValueError):
        return False
    return True


def _sla() -> timedelta:
    return timedelta(hours=settings.AISPM_REVIEW_SLA_HOURS)


def _inbox_url(filters: selectors.InboxFilters, decision: Decision | None = None) -> str:
    base = (
        reverse("approvals:detail", args=[decision.pk])
        if decision is not None
        else reverse("approvals:inbox")
    )
    query = filters.as_query()
    return f"{base}?{urlencode(query)}" if query else base


def _decision_or_404(decision_id) -> Decision:
    decision = selectors.decision_for_review(decision_id=decision_id)
    if decision is None:
        raise Http404("No such decision.")
    return decision


def _detail_context(request: HttpRequest, decision: Decision | None, **extra) -> dict:
    if decision is None:
        return {"decision": None, **extra}
    shown = services.effective_params(decision)
    counted = services.approvals_for_current_params(decision.reviews.all())
    approvals = len(counted)
    own_agent = decision.agent.owner_id == request.user.pk
    already = any(review.reviewer_id == request.user.pk for review in decision.reviews.all())
    refusal = services.review_refusal(decision, request.user)
    if refusal and already and decision.is_pending and refusal.startswith("You have already"):
        refusal = (
            f"You have approved this; it waits for another reviewer "
            f"({decision.required_approvals} distinct reviewers needed)."
        )
    return {
        "refusal": refusal or "",
        "needs_confirmation": selectors.needs_confirmation(decision),
        "decision": decision,
        "shown_params": shown,
        "params_hash": services.params_fingerprint(shown),
        "approvals": approvals,
        "record": selectors.agent_record(decision=decision),
        "can_act": refusal is None,
        "own_agent": own_agent,
        "already_reviewed": already,
        "counted_review_ids": {review.pk for review in counted},
        "reject_form": extra.pop("reject_form", None) or RejectForm(),
        "edit_form": extra.pop("edit_form", None),
        "step_up": passkeys.step_up_required(decision),
        "has_passkey": request.user.passkeys.filter(revoked_at__isnull=True).exists(),
        **extra,
    }


def _inbox_context(
    request: HttpRequest, *, filters: selectors.InboxFilters, selected: Decision | None = None
) -> dict:
    now = timezone.now()
    cursor, before = request.GET.get("after", ""), request.GET.get("before", "")
    try:
        if before:
            page = selectors.inbox_page_before(
                filters=filters, cursor=before, now=now, user=request.user
            )
        else:
            page = selectors.inbox_page(filters=filters, cursor=cursor, now=now, user=request.user)
    except ValueError:
        page = selectors.inbox_page(filters=filters, now=now, user=request.user)
    if selected is None and page.decisions:
        # `k` on a page's first row opens the previous page at its last row.
        first = page.decisions[-1] if request.GET.get("pick") == "last" else page.decisions[0]
        selected = selectors.decision_for_review(decision_id=first.pk)
    return {
        "filters": filters,
        "filter_query": urlencode(filters.as_query()),
        "page": page,
        "counts": selectors.inbox_counts(now=now, sla=_sla()),
        "queue_counts": selectors.queue_counts(user=request.user, now=now),
        "queues": selectors.QUEUES,
        "choices": selectors.inbox_filter_choices(),
        "risks": Decision._meta.get_field("risk").choices,
        "ages": [(key, label) for key, (label, *_rest) in selectors.AGE_FILTERS.items()],
        "bulk_ids": {d.pk for d in page.decisions if services.is_bulk_approvable(d)},
        "now": now,
        "sla": _sla(),
        **_detail_context(request, selected),
    }


@require_GET
@review_required
def inbox(request: HttpRequest) -> HttpResponse:
    filters = selectors.InboxFilters.from_query(request.GET)
    context = _inbox_context(request, filters=filters)
    # Back and Forward past htmx's history cache ask for the whole page.
    fragment = request.htmx and not request.htmx.history_restore_request
    template = "approvals/inbox.html#inbox" if fragment else "approvals/inbox.html"
    return render(request, template, context)


@require_GET
@review_required
def inbox_counter(request: HttpRequest) -> HttpResponse:
    counts = selectors.inbox_counts(now=timezone.now(), sla=_sla())
    return render(request, "approvals/_counter.html", {"counts": counts, "sla": _sla()})


@require_GET
@review_required
def decision_detail(request: HttpRequest, decision_id) -> HttpResponse:
    decision = _decision_or_404(decision_id)
    filters = selectors.InboxFilters.from_query(request.GET)
    if request.htmx and request.htmx.target == "decision-detail":
        return render(
            request,
            "approvals/_detail.html",
            {
                **_detail_context(request, decision),
                "filters": filters,
                "filter_query": urlencode(filters.as_query()),
            },
        )
    context = _inbox_context(request, filters=filters, selected=decision)
    context["detail_view"] = True
    return render(request, "approvals/inbox.html", context)


def _after_action(request: HttpRequest, decision: Decision) -> HttpResponse:
    """Open the next decision: the inbox fragment for htmx, a redirect otherwise."""
    filters = selectors.InboxFilters.from_query(request.POST)
    following = selectors.inbox_next_after(
        decision=decision, filters=filters, now=timezone.now(), user=request.user
    )
    if not request.htmx:
        return redirect(_inbox_url(filters, following))
    selected = selectors.decision_for_review(decision_id=following.pk) if following else None
    context = _inbox_context(request, filters=filters, selected=selected)
    context["detail_view"] = following is not None
    response = render(request, "approvals/inbox.html#inbox", context)
    push_url(response, _inbox_url(filters, following))
    return response


def _refused(request: HttpRequest, decision: Decision, message: str, **extra) -> HttpResponse:
    """Show why an action was refused, beside the decision as it is now."""
    messages.error(request, message)
    decision = _decision_or_404(decision.pk)
    filters = selectors.InboxFilters.from_query(request.POST)
    if not request.htmx and not extra:
        return redirect(_inbox_url(filters, decision))
    context = _inbox_context(request, filters=filters, selected=decision)
    context.update(_detail_context(request, decision, **extra))
    if not request.htmx:
        return render(request, "approvals/inbox.html", context, status=400)
    response = render(request, "approvals/inbox.html#inbox", context)
    return reswap(retarget(response, "#inbox"), "outerHTML")


def _act(request: HttpRequest, decision: Decision, action) -> HttpResponse:
    try:
        action()
    except (services.DecisionConflict, services.ReviewNotAllowed) as exc:
        return _refused(request, decision, str(exc))
    return _after_action(request, decision)


@require_POST
@review_required
def decision_approve(request: HttpRequest, decision_id) -> HttpResponse:
    decision = _decision_or_404(decision_id)
    form = ApproveForm(request.POST)
    if not form.is_valid():
        return _refused(request, decision, "This page is out of date. Review the decision again.")
    # A passkey step-up is itself the deliberate second step.
    confirming = selectors.needs_confirmation(decision) and not passkeys.step_up_required(decision)
    if confirming and request.POST.get("confirmed") != "1":
        return _refused(
            request,
            decision,
            "This decision is critical or irreversible: confirm the approval first.",
        )

    def approve():
        services.decision_approve(
            decision=decision,
            reviewer=request.user,
            comment=form.cleaned_data["comment"],
            expected_params_hash=form.cleaned_data["params_hash"],
            assertion=form.cleaned_data["assertion"] or None,
            relying_party=passkeys.relying_party(request),
        )
        attention.attention_record(
            decision=decision,
            reviewer=request.user,
            token=form.cleaned_data["viewed"],
            params_expanded=form.cleaned_data["params_expanded"],
            via=Via.PASSKEY if passkeys.step_up_required(decision) else Via.INBOX,
        )
        messages.success(request, f"Approved: {readable_summary(decision)}")

    return _act(request, decision, approve)


@require_POST
@review_required
def decision_reject(request: HttpRequest, decision_id) -> HttpResponse:
    decision = _decision_or_404(decision_id)
    form = RejectForm(request.POST)
    if not form.is_valid():
        return _refused(request, decision, "A reason is required to reject.", reject_form=form)

    def reject():
        services.decision_reject(
            decision=decision,
            reviewer=request.user,
            reason=form.cleaned_data["reason"],
            tags=form.cleaned_data["tags"],
        )
        messages.success(request, f"Rejected: {readable_summary(decision)}")

    return _act(request, decision, reject)


@require_http_methods(["GET", "POST"])
@review_required
def decision_edit(request: HttpRequest, decision_id) -> HttpResponse:
    decision = _decision_or_404(decision_id)
    shown = services.effective_params(decision)
    if request.method == "GET":
        form = ParamsEditForm(
            action_type=decision.action_type,
            params=shown,
            initial={"params_hash": services.params_fingerprint(shown)},
        )
        context = {
            **_detail_context(request, decision, edit_form=form),
            "filter_query": request.GET.urlencode(),
        }
        if request.htmx:
            return render(request, "approvals/_detail.html", context)
        filters = selectors.InboxFilters.from_query(request.GET)
        full = _inbox_context(request, filters=filters, selected=decision)
        full.update(context)
        return render(request, "approvals/inbox.html", full)
    form = ParamsEditForm(request.POST, action_type=decision.action_type, params=shown)
    if not form.is_valid():
        if form.cleaned_data.get("params") is not None:
            # The params were built but fail the schema: a refused edit, so it is audited.
            services.decision_edit_refuse(
                decision=decision,
                reviewer=request.user,
                params=form.cleaned_data["params"],
                reason="; ".join(
                    f"{field}: {error}" for field, errors in form.errors.items() for error in errors
                ),
                code="invalid",
                comment=form.cleaned_data.get("comment", ""),
            )
        return _refused(request, decision, "The edited params are not valid.", edit_form=form)

    def edit_and_approve():
        edited = services.decision_approve(
            decision=decision,
            reviewer=request.user,
            comment=form.cleaned_data["comment"],
            approved_params=form.cleaned_data["params"],
            expected_params_hash=form.cleaned_data["params_hash"],
        )
        # The edit form shows every value in full, so long params were open.
        attention.attention_record(
            decision=decision,
            reviewer=request.user,
            token=form.cleaned_data["viewed"],
            params_expanded=True,
            via=Via.EDIT,
        )
        if edited.is_pending:
            messages.info(
                request,
                f"Edited: {readable_summary(edited)}. The edited params need "
                f"{edited.required_approvals} approvals ({edited.get_risk_display()} risk); "
                "yours counts as one.",
            )
        else:
            messages.success(request, f"Edited and approved: {readable_summary(edited)}")

    try:
        return _act(request, decision, edit_and_approve)
    except services.EditRefused as refusal:
        form.add_error(None, f"The agent could not send these params: {refusal}")
        return _refused(request, decision, "Edit refused.", edit_form=form)


@require_POST
@review_required
def bulk_approve(request: HttpRequest) -> HttpResponse:
    ids = request.POST.getlist("decisions")
    candidates = list(
        Decision.objects.select_related("action_type", "agent").filter(
            pk__in=[i for i in ids if _is_uuid(i)], status=Decision.Status.PENDING
        )
    )
    form = BulkApproveForm(
        request.POST,
        eligible_ids=[d.pk for d in candidates if services.is_bulk_approvable(d)],
    )
    filters = selectors.InboxFilters.from_query(request.POST)
    if not form.is_valid():
        messages.error(request, "Select routine decisions that allow bulk approval.")
    else:
        chosen = set(form.cleaned_data["decisions"])
        result = services.decision_bulk_approve(
            decisions=[d for d in candidates if str(d.pk) in chosen], reviewer=request.user
        )
        attention.attention_record_bulk(decisions=result.approved, reviewer=request.user)
        if result.approved:
            messages.success(request, f"Approved {len(result.approved)} decisions.")
        for decision, reason in result.skipped:
            messages.warning(request, f"Skipped {readable_summary(decision)}: {reason}")
    if not request.htmx:
        return redirect(_inbox_url(filters))
    response = render(
        request, "approvals/inbox.html#inbox", _inbox_context(request, filters=filters)
    )
    push_url(response, _inbox_url(filters))
    return response
