"""The posture page and the four-question report, for agent admins and auditors."""

from datetime import date, timedelta
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from aispm_site.roles import POSTURE_PERMISSIONS, has_any_perm
from approvals.models import Finding
from approvals.posture import all_checks, scoring
from approvals.posture import selectors as posture_selectors
from approvals.posture.render import html_to_pdf, posture_report_record, render_report
from approvals.posture.report import MAX_DAYS

TREND_DAYS = 30
# The trend chart's drawing box, in SVG user units.
CHART_W, CHART_H, CHART_PAD = 900, 200, 30


def posture_required(view):
    """Login required, then 403 for anyone who is neither an agent admin nor an auditor."""

    @wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        if not has_any_perm(request.user, POSTURE_PERMISSIONS):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped


def trend_chart(series: dict) -> dict:
    """Polylines for the scores per day, with y from 0 (bottom) to 100 (top)."""
    width, height, pad = CHART_W, CHART_H, CHART_PAD
    lines = []
    for question, label in Finding.Question.choices:
        points = series[question]
        step = (width - 2 * pad) / max(len(points) - 1, 1)
        coords = [
            (round(pad + i * step, 1), round(pad + (100 - value) * (height - 2 * pad) / 100, 1))
            for i, (_, value) in enumerate(points)
        ]
        lines.append(
            {
                "question": question,
                "label": label,
                "points": " ".join(f"{x},{y}" for x, y in coords),
                "last": points[-1][1] if points else None,
            }
        )
    days = next(iter(series.values()))
    return {
        "width": width,
        "height": height,
        "lines": lines,
        "grid": [
            {"value": v, "y": round(pad + (100 - v) * (height - 2 * pad) / 100, 1)}
            for v in (0, 50, 100)
        ],
        "left": pad,
        "right": width - pad,
        "first_day": days[0][0] if days else None,
        "last_day": days[-1][0] if days else None,
        "table": [
            {"day": at, "scores": [series[q][i][1] for q in Finding.Question.values]}
            for i, (at, _) in enumerate(days)
        ],
    }


@require_GET
@posture_required
def posture(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    findings = posture_selectors.open_findings()
    checks = sorted(all_checks(), key=lambda c: c.id)
    last_run = Finding.objects.order_by("-last_seen_at").values_list("last_seen_at", flat=True)
    return render(
        request,
        "posture/page.html",
        {
            "scores": scoring.question_scores(findings),
            "formula": scoring.FORMULA,
            "weights": scoring.WEIGHTS,
            "groups": posture_selectors.findings_by_severity(findings),
            "findings": findings,
            "controls": posture_selectors.CONTROLS,
            "matrix": posture_selectors.control_matrix(findings=findings, now=now),
            "chart": trend_chart(scoring.daily_scores(now=now, days=TREND_DAYS)),
            "checks": checks,
            "last_seen": last_run.first(),
            "report_from": (now.date() - timedelta(days=29)).isoformat(),
            "report_to": now.date().isoformat(),
        },
    )


class BadPeriod(ValueError):
    pass


def _day(raw: str) -> date:
    # fromisoformat accepts only ASCII digits and dashes here, so NUL, surrogates or
    # five-digit years fail as ValueError.
    if len(raw) != 10 or not raw.isascii():
        raise BadPeriod("Dates look like 2026-11-30.")
    try:
        return date.fromisoformat(raw)
    except ValueError as error:
        raise BadPeriod("Dates look like 2026-11-30.") from error


def report_period(query, *, today: date) -> tuple[date, date]:
    raw_to, raw_from = query.get("to", "").strip(), query.get("from", "").strip()
    last = _day(raw_to) if raw_to else today
    first = _day(raw_from) if raw_from else last - timedelta(days=29)
    if first > last:
        raise BadPeriod("The period starts after it ends.")
    if (last - first).days > MAX_DAYS or last >= date.max:
        raise BadPeriod("The period is at most five years.")
    return first, last


@require_GET
@posture_required
def report(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    try:
        first, last = report_period(request.GET, today=now.date())
    except BadPeriod as error:
        return HttpResponseBadRequest(str(error), content_type="text/plain; charset=utf-8")
    as_pdf = request.GET.get("format") == "pdf"
    rendered = render_report(date_from=first, date_to=last, now=now)
    posture_report_record(rendered=rendered, actor=request.user, format="pdf" if as_pdf else "html")
    if as_pdf:
        response = HttpResponse(html_to_pdf(rendered.html), content_type="application/pdf")
        response["Content-Disposition"] = (
            f'attachment; filename="aispm-posture-{first}-to-{last}.pdf"'
        )
        return response
    return render(
        request,
        "posture/report.html",
        {"report": rendered.report, "digest": rendered.digest},
    )
