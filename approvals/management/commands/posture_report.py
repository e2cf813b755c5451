from datetime import date, timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from approvals.posture.render import html_to_pdf, posture_report_record, render_report
from approvals.posture.report import MAX_DAYS


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise CommandError(f"{value!r} is not a date like 2026-11-30") from error


class Command(BaseCommand):
    help = "Write the four-question posture report for a period as PDF (or HTML by suffix)."

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="date_from", help="first day (default: 29 days ago)")
        parser.add_argument("--to", dest="date_to", help="last day, inclusive (default: today)")
        parser.add_argument("--out", required=True, help="report.pdf, or report.html for HTML")

    def handle(self, *args, date_from=None, date_to=None, out, **options):
        now = timezone.now()
        last = _date(date_to) if date_to else now.date()
        first = _date(date_from) if date_from else last - timedelta(days=29)
        if first > last or (last - first).days > MAX_DAYS or last >= date.max:
            raise CommandError("--from must not be after --to, and the period at most 5 years")
        path = Path(out)
        pdf = path.suffix.lower() != ".html"
        rendered = render_report(date_from=first, date_to=last, now=now)
        if pdf:
            path.write_bytes(html_to_pdf(rendered.html))
        else:
            path.write_text(rendered.html, encoding="utf-8")
        posture_report_record(rendered=rendered, actor="posture_report", format=path.suffix[1:])
        self.stdout.write(f"wrote {path} ({first} to {last}), sha256 {rendered.digest}")
