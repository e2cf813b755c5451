"""Writes of the posture domain: findings open and resolve, each audited."""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record

from ..models import Finding
from .registry import Check, Hit, all_checks

log = logging.getLogger(__name__)
ACTOR = "posture"


def finding_open(*, check: Check, hit: Hit, now: datetime | None = None) -> tuple[Finding, bool]:
    """Open a finding for `hit`, or refresh the open one; True when it is new."""
    now = now or timezone.now()
    severity = hit.severity or check.severity
    existing = Finding.objects.filter(
        check_id=check.id, subject=hit.subject, status=Finding.Status.OPEN
    ).first()
    if existing is not None:
        # Bookkeeping, not a change of state: the finding stays open, so no audit event.
        Finding.objects.filter(pk=existing.pk).update(
            last_seen_at=now, message=hit.message, evidence=hit.evidence, fix_url=hit.fix_url
        )
        return existing, False
    try:
        with transaction.atomic():
            finding = Finding.objects.create(
                check_id=check.id,
                subject=hit.subject[:200],
                question=check.question,
                severity=severity,
                title=check.title,
                message=hit.message,
                evidence=hit.evidence,
                fix_url=hit.fix_url,
                agent=hit.agent,
                opened_at=now,
                last_seen_at=now,
            )
            audit_record(
                event="finding.opened",
                actor=ACTOR,
                target=finding,
                data={
                    "check": check.id,
                    "subject": finding.subject,
                    "severity": severity,
                    "question": check.question,
                    "message": hit.message,
                    "evidence": hit.evidence,
                },
            )
    except IntegrityError:  # a concurrent run opened it first
        finding = Finding.objects.get(
            check_id=check.id, subject=hit.subject[:200], status=Finding.Status.OPEN
        )
        return finding, False
    return finding, True


def finding_resolve(*, finding: Finding, now: datetime | None = None) -> Finding:
    """Close an open finding whose check passes again; a resolved one stays as it is."""
    now = now or timezone.now()
    with transaction.atomic():
        claimed = Finding.objects.filter(pk=finding.pk, status=Finding.Status.OPEN).update(
            status=Finding.Status.RESOLVED, resolved_at=now
        )
        finding.refresh_from_db()
        if claimed != 1:
            return finding
        audit_record(
            event="finding.resolved",
            actor=ACTOR,
            target=finding,
            data={
                "check": finding.check_id,
                "subject": finding.subject,
                "open_for_seconds": int((now - finding.opened_at).total_seconds()),
            },
        )
    return finding


@dataclass
class PostureRun:
    opened: int = 0
    resolved: int = 0
    open: int = 0
    failed: tuple[str, ...] = ()


def posture_run(*, now: datetime | None = None, only: set[str] | None = None) -> PostureRun:
    """Run the checks: open a finding per hit, resolve what no longer comes back.

    A check that raises is logged and skipped, and its findings stay as they were: a
    broken check must not look like a passing one.
    """
    now = now or timezone.now()
    result = PostureRun()
    failed = []
    for check in all_checks():
        if only is not None and check.id not in only:
            continue
        try:
            hits = check.run(now)
        except Exception:
            log.exception("posture check %s failed", check.id)
            failed.append(check.id)
            continue
        seen = set()
        for hit in hits:
            _, created = finding_open(check=check, hit=hit, now=now)
            seen.add(hit.subject[:200])
            result.opened += created
        stale = Finding.objects.filter(check_id=check.id, status=Finding.Status.OPEN).exclude(
            subject__in=seen
        )
        for finding in stale:
            finding_resolve(finding=finding, now=now)
            result.resolved += 1
    result.open = Finding.objects.filter(status=Finding.Status.OPEN).count()
    result.failed = tuple(failed)
    return result
