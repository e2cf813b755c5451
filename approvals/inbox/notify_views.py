"""Reviewer-facing parts of notifications: the profile page and signed chat links."""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from aispm_site.roles import REVIEW_PERMISSION, permission_required

from .. import attention, notifications, selectors, services
from ..models import Decision, Notification, NotificationPreference, ReviewAttention
from ..notifications import links
from ..notifications import messages as notification_messages
from ..readable import readable_summary
from .notify_forms import ChatApproveForm, PreferenceForm

review_required = permission_required(REVIEW_PERMISSION)
Channel = NotificationPreference.Channel


def _forms(user, posted: PreferenceForm | None = None) -> list[dict]:
    saved = {p.channel: p for p in NotificationPreference.objects.filter(user=user)}
    rows = []
    for channel, label in Channel.choices:
        preference = saved.get(channel)
        if posted is not None and posted.data.get("channel") == channel:
            form = posted
        else:
            initial = {"channel": channel, "mode": NotificationPreference.Mode.OFF}
            if preference is not None:
                initial.update(
                    mode=preference.mode,
                    min_risk=preference.min_risk,
                    digest_minutes=preference.digest_minutes,
                )
            form = PreferenceForm(initial={"min_risk": "high", "digest_minutes": 60, **initial})
        rows.append(
            {
                "channel": channel,
                "label": label,
                "form": form,
                "preference": preference,
                "is_chat": channel in notifications.CHAT_CHANNELS,
            }
        )
    return rows


def _preview(user) -> dict | None:
    """What the next message would say, for the newest decision this person may review."""
    decision = (
        Decision.objects.select_related("agent", "action_type")
        .filter(status=Decision.Status.PENDING)
        .exclude(agent__owner=user)
        .order_by("-risk_rank", "expires_at")
        .first()
    )
    if decision is None:
        return None
    item = notification_messages.item_for(decision)
    return {
        "subject": notification_messages.email_subject([item], "new"),
        "body": notification_messages.email_body([item], "new"),
        "item": item,
        "approve_path": links.approve_path(decision),
    }


@require_http_methods(["GET", "POST"])
@review_required
def profile(request: HttpRequest) -> HttpResponse:
    posted = None
    if request.method == "POST":
        posted = PreferenceForm(request.POST)
        if posted.is_valid():
            data = posted.cleaned_data
            try:
                notifications.preference_save(
                    actor=request.user,
                    user=request.user,
                    channel=data["channel"],
                    mode=data["mode"],
                    min_risk=data["min_risk"],
                    digest_minutes=data["digest_minutes"],
                    webhook_url=data["webhook_url"] or None,
                )
            except notifications.PreferenceRefused as exc:
                posted.add_error("webhook_url", str(exc))
            else:
                messages.success(request, "Notification settings saved.")
                return redirect("approvals:profile")
    recent = Notification.objects.filter(preference__user=request.user).order_by("-created_at")[:20]
    context = {
        "rows": _forms(request.user, posted),
        "recent": recent,
        "preview": _preview(request.user),
    }
    return render(request, "approvals/profile.html", context, status=400 if posted else 200)


@require_http_methods(["GET", "POST"])
@review_required
def chat_approve(request: HttpRequest, decision_id, token: str) -> HttpResponse:
    """The target of a chat message's "Approve" button.

    GET only shows what would be approved; the POST runs the inbox's own service with
    the params the message described, as the signed-in reviewer.
    """
    decision = selectors.decision_for_review(decision_id=decision_id)
    if decision is None:
        raise Http404("No such decision.")
    try:
        expected = links.params_hash_from(token, decision_id=decision.pk)
    except links.BadLink as exc:
        raise Http404(str(exc)) from None
    detail = reverse("approvals:detail", args=[decision.pk])
    form = ChatApproveForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            services.decision_approve(
                decision=decision,
                reviewer=request.user,
                comment=form.cleaned_data["comment"],
                expected_params_hash=expected,
            )
        except services.DecisionChanged:
            messages.error(
                request, "The params changed since the message was sent. Review them again."
            )
        except (services.DecisionConflict, services.ReviewNotAllowed) as exc:
            messages.error(request, str(exc))
        else:
            attention.attention_record(
                decision=decision,
                reviewer=request.user,
                token=form.cleaned_data["viewed"],
                params_expanded=None,  # the confirmation page shows the summary, not params
                via=ReviewAttention.Via.CHAT,
            )
            messages.success(request, f"Approved: {readable_summary(decision)}")
        return redirect(detail)
    item = notification_messages.item_for(decision)
    context = {"decision": decision, "item": item, "form": form, "detail_url": detail}
    return render(request, "approvals/chat_approve.html", context)
