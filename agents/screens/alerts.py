"""Alerts for agent admins: filter, page and acknowledge."""

import json
from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from agents import services as agent_services
from agents.models import Agent, Alert
from aispm_site import hostile

from .access import admin_required
from .forms import AcknowledgeForm

ALERTS_PER_PAGE = 50

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
