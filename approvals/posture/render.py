"""The four-question report as HTML and PDF, sealed with a digest tied to the chain.

The digest is the SHA-256 of the report's figures as canonical JSON (period, every
section's figures and tables, the open findings, and the chain head they were read at).
Each report made is recorded as a `posture.report_generated` audit event carrying that
digest, so an auditor can find the report's place in the chain.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string

from audit.services import audit_record, audit_seal_all

from .report import Report, posture_report

STYLESHEET = Path(settings.BASE_DIR) / "static" / "posture.css"


def _plain(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def report_document(report: Report) -> dict:
    return {
        "from": report.date_from.isoformat(),
        "to": report.date_to.isoformat(),
        "sections": [
            {
                "question": section.question,
                "figures": [[label, _plain(value)] for label, value in section.figures],
                "table": [[_plain(cell) for cell in row] for row in section.table],
            }
            for section in report.sections
        ],
        "findings": [
            [f.check_id, f.subject, f.severity, f.opened_at.isoformat()] for f in report.findings
        ],
        "chain_head": {"seq": report.head_seq, "hash": report.head_hash},
    }


def report_digest(report: Report) -> str:
    canonical = json.dumps(
        report_document(report), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Rendered:
    report: Report
    digest: str
    html: str


def render_report(*, date_from: date, date_to: date, now: datetime) -> Rendered:
    # Seal what is waiting, so the chain head the report names covers the period's events.
    audit_seal_all()
    report = posture_report(date_from=date_from, date_to=date_to, now=now)
    digest = report_digest(report)
    # The web page renders the same body inside the site layout itself.
    html = render_to_string("posture/report_pdf.html", {"report": report, "digest": digest})
    return Rendered(report=report, digest=digest, html=html)


def html_to_pdf(html: str) -> bytes:
    import weasyprint

    # WeasyPrint and fontTools narrate every layout step at INFO.
    for name in ("weasyprint", "weasyprint.progress", "fontTools"):
        logging.getLogger(name).setLevel(logging.WARNING)

    return weasyprint.HTML(string=html, base_url=str(STYLESHEET.parent)).write_pdf(
        stylesheets=[weasyprint.CSS(filename=str(STYLESHEET))]
    )


def posture_report_record(*, rendered: Rendered, actor, format: str) -> None:
    with transaction.atomic():
        audit_record(
            event="posture.report_generated",
            actor=actor,
            data={
                "format": format,
                "from": rendered.report.date_from,
                "to": rendered.report.date_to,
                "sha256": rendered.digest,
                "chain_head_seq": rendered.report.head_seq,
                "chain_head_hash": rendered.report.head_hash,
            },
        )
