"""Agent keys: issue, rotate with an overlap, revoke.

A new key exists in clear only in the response that shows it: never in the session,
a message, a URL or the database."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import services as agent_services
from agents.models import Agent, AgentKey
from approvals.models import Decision

from .access import admin_required, agent_or_404
from .forms import KeyIssueForm, KeyRevokeForm, KeyRotateForm


def _key_or_404(agent: Agent, key_id: int) -> AgentKey:
    return get_object_or_404(agent.keys.select_related("created_by"), pk=key_id)


@dataclass(frozen=True)
class KeyRow:
    key: AgentKey
    state: AgentKey.State
    until: datetime | None  # when the state ends, or when it began for a stopped key

    @property
    def usable(self) -> bool:
        return self.state.usable


def _key_row(key: AgentKey, now: datetime) -> KeyRow:
    state = key.state_at(now)
    if state in (AgentKey.State.REVOKED, AgentKey.State.ROTATING):
        return KeyRow(key, state, key.revoked_at)
    return KeyRow(key, state, key.expires_at)


def _render_keys(request, agent: Agent, *, issue_form=None, status: int = 200) -> HttpResponse:
    now = timezone.now()
    rows = [_key_row(key, now) for key in agent.keys.select_related("created_by")]
    return render(
        request,
        "security/keys.html",
        {
            "agent": agent,
            "rows": rows,
            "issue_form": issue_form or KeyIssueForm(),
            "section": "keys",
        },
        status=status,
    )


@require_GET
@admin_required
def key_list(request: HttpRequest, slug: str) -> HttpResponse:
    return _render_keys(request, agent_or_404(slug))


def _show_new_key(request, agent: Agent, issued, **extra) -> HttpResponse:
    # Rendered straight from the POST and marked uncacheable: this response is the
    # only place the key ever appears.
    return render(
        request,
        "security/key_issued.html",
        {"agent": agent, "new_key": issued.key, "secret": issued.secret, **extra},
    )


@require_POST
@admin_required
@never_cache
def key_issue(request: HttpRequest, slug: str) -> HttpResponse:
    agent = agent_or_404(slug)
    form = KeyIssueForm(request.POST)
    if not form.is_valid():
        return _render_keys(request, agent, issue_form=form, status=400)
    issued = agent_services.agent_key_issue(
        agent=agent,
        issued_by=request.user,
        expires_in_days=form.cleaned_data["expires_in_days"],
        label=form.cleaned_data["label"],
    )
    return _show_new_key(request, agent, issued)


@require_http_methods(["GET", "POST"])
@admin_required
@never_cache
def key_rotate(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    agent = agent_or_404(slug)
    key = _key_or_404(agent, key_id)
    row = _key_row(key, timezone.now())
    form = KeyRotateForm(
        request.POST or None,
        initial={"overlap_hours": settings.AISPM_KEY_ROTATION_OVERLAP_HOURS},
    )
    status = 200
    if request.method == "POST":
        if not row.usable:
            form.add_error(None, f"This key is {row.state}; issue a new key instead.")
            status = 409
        elif form.is_valid():
            try:
                issued = agent_services.agent_key_rotate(
                    key=key, actor=request.user, overlap_hours=form.cleaned_data["overlap_hours"]
                )
            except agent_services.AgentsRefusal as exc:
                form.add_error(None, str(exc))
                status = 409
            else:
                key.refresh_from_db()
                return _show_new_key(request, agent, issued, old_key=key)
        else:
            status = 400
    return render(
        request,
        "security/key_rotate.html",
        {"agent": agent, "row": row, "form": form, "section": "keys"},
        status=status,
    )


@require_http_methods(["GET", "POST"])
@admin_required
def key_revoke(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    agent = agent_or_404(slug)
    key = _key_or_404(agent, key_id)
    row = _key_row(key, timezone.now())
    form = KeyRevokeForm(request.POST or None)
    if request.method == "POST" and row.state == AgentKey.State.REVOKED:
        messages.info(request, f"Key {key.prefix}… was already revoked.")
        return redirect(reverse("security:keys", args=[agent.slug]))
    if request.method == "POST" and form.is_valid():
        agent_services.agent_key_revoke(
            key=key, actor=request.user, reason=form.cleaned_data["reason"]
        )
        messages.success(request, f"Revoked key {key.prefix}…; it no longer authenticates.")
        return redirect(reverse("security:keys", args=[agent.slug]))
    in_flight = Decision.objects.filter(
        key=key, status__in=[Decision.Status.APPROVED, Decision.Status.RELEASING]
    ).count()
    return render(
        request,
        "security/key_revoke.html",
        {"agent": agent, "row": row, "form": form, "in_flight": in_flight, "section": "keys"},
        status=400 if request.method == "POST" else 200,
    )
