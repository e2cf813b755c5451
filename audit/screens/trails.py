"""Auditor screens: search decisions and read one decision's trail. Read-only."""

from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from aispm_site.roles import AUDIT_PERMISSION, permission_required

from . import selectors as trail_selectors
from .selectors import TrailFilters

audit_required = permission_required(AUDIT_PERMISSION)


@require_GET
@audit_required
def search(request: HttpRequest) -> HttpResponse:
    filters = TrailFilters.from_query(request.GET)
    too_slow = False
    try:
        try:
            page = trail_selectors.search_page(filters=filters, cursor=request.GET.get("after", ""))
        except ValueError:
            page = trail_selectors.search_page(filters=filters)
    except trail_selectors.SearchTooSlow:
        page, too_slow = trail_selectors.SearchPage([], None), True
    cap = trail_selectors.COUNT_CAP
    total = None if too_slow else trail_selectors.match_count(filters=filters, cap=cap)
    context = {
        "total": total,
        "total_capped": total is not None and total > cap,
        "count_cap": cap,
        "filters": filters,
        "filter_query": urlencode(filters.as_query()),
        "page": page,
        "choices": trail_selectors.search_choices(),
        "text_limits": (trail_selectors.TEXT_MIN, trail_selectors.TEXT_MAX),
        "too_slow": too_slow,
        "timeout_seconds": trail_selectors.TEXT_SEARCH_TIMEOUT_MS // 1000,
        "exports": trail_selectors.export_events(user=request.user),
    }
    fragment = request.htmx and not request.htmx.history_restore_request
    template = "audit/search.html#results" if fragment else "audit/search.html"
    return render(request, template, context)


@require_GET
@audit_required
def trail(request: HttpRequest, decision_id) -> HttpResponse:
    found = trail_selectors.decision_trail(decision_id=decision_id)
    if found is None:
        raise Http404("No such decision.")
    filters = TrailFilters.from_query(request.GET)
    return render(
        request,
        "audit/trail.html",
        {
            "decision": found.decision,
            "events": found.events,
            "attempts": found.attempts,
            "filter_query": urlencode(filters.as_query()),
        },
    )
