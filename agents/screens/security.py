"""Agent admin security screens: keys, scopes, alerts and the kill switches.

Every write goes through an agents.services function, which records the audit event.
A new key exists in clear only in the response that shows it: never in the session,
a message, a URL or the database.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import services as agent_services
from agents.models import ActionType, Agent, AgentKey, Alert, GlobalStop, Grant
from agents.policy_rules import validate_constraint
from agents.selectors import global_stop_engaged
from aispm_site import hostile
from aispm_site.roles import MANAGE_AGENTS_PERMISSION, permission_required
from approvals.models import Decision

admin_required = permission_required(MANAGE_AGENTS_PERMISSION)

USE_WINDOW = timedelta(days=30)
ALERTS_PER_PAGE = 50


def superuser_required(view):
    """Login required, then 403 for anyone but a superuser: the global stop halts every agent."""

    @wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        if not request.user.is_superuser:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped


def _agent_or_404(slug: str) -> Agent:
    return get_object_or_404(Agent, slug=slug)


def _key_or_404(agent: Agent, key_id: int) -> AgentKey:
    return get_object_or_404(agent.keys.select_related("created_by"), pk=key_id)


def _grant_or_404(agent: Agent, action_key: str) -> Grant:
    return get_object_or_404(
        Grant.objects.select_related("action_type", "agent"),
        agent=agent,
        action_type__key=action_key,
    )


# --- forms ---------------------------------------------------------------------------


def _required_text(label: str, message: str, *, max_length: int = 1000, rows: int = 2):
    return forms.CharField(
        label=label,
        max_length=max_length,
        strip=True,
        widget=forms.Textarea(attrs={"rows": rows}),
        error_messages={"required": message},
    )


class KeyIssueForm(hostile.Form):
    label = forms.CharField(
        label="Label",
        max_length=200,
        required=False,
        help_text="Where the key will live, e.g. “prod worker”. Shown in this list.",
    )
    expires_in_days = forms.IntegerField(
        label="Expires after (days)", min_value=1, max_value=365, initial=90
    )


class KeyRotateForm(hostile.Form):
    overlap_hours = forms.IntegerField(
        label="Overlap (hours)",
        min_value=0,
        max_value=720,
        help_text="How long the old key keeps working, so the agent can switch without "
        "downtime. 0 stops it at once.",
    )


class KeyRevokeForm(hostile.Form):
    reason = _required_text("Reason", "Say why the key is revoked.")


class GrantForm(hostile.Form):
    limit_per_hour = forms.IntegerField(
        label="Limit per hour",
        min_value=1,
        max_value=hostile.INT32_MAX,
        required=False,
        help_text="Leave empty for no limit.",
    )
    constraint = forms.CharField(
        label="Constraint (CEL)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "class": "mono"}),
        help_text="Checked on every submission, over params, evidence, confidence, agent "
        "and action; e.g. size(params.to) <= 50. Leave empty for none.",
    )

    def clean_constraint(self):
        constraint = self.cleaned_data["constraint"].strip()
        problems = validate_constraint(constraint)
        if problems:
            raise forms.ValidationError([problem.message for problem in problems])
        return constraint


class GrantCreateForm(GrantForm):
    action_type = forms.ModelChoiceField(
        label="Action",
        queryset=ActionType.objects.none(),
        to_field_name="key",
        empty_label="Choose an action…",
    )
    field_order = ["action_type", "limit_per_hour", "constraint"]

    def __init__(self, *args, agent: Agent, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action_type"].queryset = ActionType.objects.exclude(
            grants__agent=agent
        ).order_by("key")


class SuspendForm(hostile.Form):
    reason = _required_text("Reason", "Say why the agent is suspended.")


class ResumeForm(hostile.Form):
    reason = forms.CharField(
        label="Reason", max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class AcknowledgeForm(hostile.Form):
    comment = _required_text("Comment", "Say what you found or did.", max_length=2000, rows=2)


class GlobalStopForm(hostile.Form):
    ENGAGE, LIFT = "engage", "lift"

    action = forms.ChoiceField(choices=[(ENGAGE, "Engage"), (LIFT, "Lift")])
    reason = forms.CharField(
        label="Reason", max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("action") == self.ENGAGE and not cleaned.get("reason", "").strip():
            self.add_error("reason", "Say why the global stop is engaged.")
        return cleaned


# --- keys ----------------------------------------------------------------------------


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
    return _render_keys(request, _agent_or_404(slug))


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
    agent = _agent_or_404(slug)
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
    agent = _agent_or_404(slug)
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
    agent = _agent_or_404(slug)
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


# --- scopes --------------------------------------------------------------------------


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
        Decision.objects.filter(agent=agent, created_at__gte=timezone.now() - USE_WINDOW)
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
    return _render_scopes(request, _agent_or_404(slug))


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
    agent = _agent_or_404(slug)
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
    agent = _agent_or_404(slug)
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
    agent = _agent_or_404(slug)
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


# --- alerts --------------------------------------------------------------------------

ALERT_STATES = [("open", "Open"), ("acknowledged", "Acknowledged"), ("all", "All")]


@dataclass(frozen=True)
class AlertFilters:
    severity: str = ""
    agent: str = ""
    kind: str = ""
    state: str = "open"

    @classmethod
    def from_query(cls, data) -> "AlertFilters":
        severity = data.get("severity", "")
        state = data.get("state", "open")
        return cls(
            severity=severity if severity in Alert.Severity.values else "",
            agent=hostile.query_text(data, "agent"),
            kind=hostile.query_text(data, "kind"),
            state=state if state in dict(ALERT_STATES) else "open",
        )

    def as_query(self) -> dict:
        query = {"severity": self.severity, "agent": self.agent, "kind": self.kind}
        query = {name: value for name, value in query.items() if value}
        if self.state != "open":
            query["state"] = self.state
        return query

    def apply(self, alerts):
        if self.severity:
            alerts = alerts.filter(severity=self.severity)
        if self.agent:
            alerts = alerts.filter(agent__slug=self.agent)
        if self.kind:
            alerts = alerts.filter(kind=self.kind)
        if self.state == "open":
            alerts = alerts.filter(acknowledged_at__isnull=True)
        elif self.state == "acknowledged":
            alerts = alerts.filter(acknowledged_at__isnull=False)
        return alerts


def _evidence_text(evidence) -> str:
    if not evidence:
        return ""
    return json.dumps(evidence, indent=2, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)


def _alerts_url(filters: AlertFilters, page: str = "") -> str:
    query = filters.as_query()
    if page and page != "1":
        query["page"] = page
    base = reverse("security:alerts")
    return f"{base}?{urlencode(query)}" if query else base


def _alerts_context(request, filters: AlertFilters, *, page_number, errors=None) -> dict:
    alerts = filters.apply(
        Alert.objects.select_related("agent", "acknowledged_by").order_by("-created_at", "-pk")
    )
    page = Paginator(alerts, ALERTS_PER_PAGE).get_page(page_number)
    page.object_list = list(page.object_list)
    for alert in page.object_list:
        alert.evidence_text = _evidence_text(alert.evidence)
        alert.ack_form = (errors or {}).get(alert.pk)
    query = filters.as_query()
    return {
        "filters": filters,
        "filter_query": urlencode(query),
        "page": page,
        "severities": Alert.Severity.choices,
        "states": ALERT_STATES,
        "agents": Agent.objects.order_by("slug").values_list("slug", "name"),
        "kinds": Alert.objects.order_by("kind").values_list("kind", flat=True).distinct(),
    }


@require_GET
@admin_required
def alert_list(request: HttpRequest) -> HttpResponse:
    filters = AlertFilters.from_query(request.GET)
    context = _alerts_context(request, filters, page_number=request.GET.get("page"))
    template = "security/alerts.html#alerts" if request.htmx else "security/alerts.html"
    return render(request, template, context)


@require_POST
@admin_required
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    filters = AlertFilters.from_query(request.POST)
    page = request.POST.get("page", "")
    form = AcknowledgeForm(request.POST)
    errors = {}
    if alert.acknowledged_at is not None:
        messages.info(request, "That alert was already acknowledged.")
        if not request.htmx:
            return redirect(_alerts_url(filters, page))
    elif form.is_valid():
        agent_services.alert_acknowledge(
            alert=alert, actor=request.user, comment=form.cleaned_data["comment"]
        )
        # Only system words: the alert's message may carry agent text, and messages
        # render outside the hx-disable container.
        messages.success(request, f"Acknowledged the {alert.severity} {alert.kind} alert.")
        if not request.htmx:
            return redirect(_alerts_url(filters, page))
    else:
        errors = {alert.pk: form}
    context = _alerts_context(request, filters, page_number=page, errors=errors)
    if request.htmx:
        # htmx swaps only 2xx responses, so a refusal comes back as 200 with its error.
        return render(request, "security/alerts.html#alerts", context)
    return render(request, "security/alerts.html", context, status=400)


# --- kill switches -------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@admin_required
def agent_suspend(request: HttpRequest, slug: str) -> HttpResponse:
    agent = _agent_or_404(slug)
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
    agent = _agent_or_404(slug)
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
