"""Evidence: is the audit chain anchored, shipped, kept and verified?"""

from datetime import datetime, timedelta

from .common import MIN_RETENTION_DAYS, VERIFY_MAX_AGE, url
from .evidence import (
    checkpoint_interval_seconds,
    last_good_verification,
    latest_checkpoint,
    retention_days,
    signing_configured,
    sink_lags,
)
from .registry import Hit, check


@check(
    id="evidence.chain_unanchored",
    question="audit",
    severity="high",
    title="The audit chain is not anchored by signed checkpoints",
)
def chain_unanchored(now: datetime) -> list[Hit]:
    if not signing_configured():
        return [
            Hit(
                subject="signing",
                message="No AISPM_AUDIT_SIGNING_KEY is set, so no checkpoint signs the chain "
                "head: someone with database access could rewrite the whole chain unseen.",
                evidence={"signing_key": False},
                fix_url=url("audit:verification"),
            )
        ]
    interval = checkpoint_interval_seconds()
    latest = latest_checkpoint()
    if latest is not None and latest.created_at >= now - timedelta(seconds=2 * interval):
        return []
    return [
        Hit(
            subject="checkpoint",
            message=f"No signed checkpoint in the last {2 * interval} s (twice the interval).",
            evidence={
                "signing_key": True,
                "interval_seconds": interval,
                "latest": latest.created_at if latest else None,
            },
            fix_url=url("audit:verification"),
        )
    ]


SINK_LAG_SECONDS = 15 * 60


@check(
    id="evidence.sink_lag",
    question="audit",
    severity="medium",
    title="The witness or SIEM sink lags behind the chain",
    provisional="The witness and SIEM sinks arrive with issue 12; until then there is "
    "nothing to lag.",
)
def sink_lag(now: datetime) -> list[Hit]:
    return [
        Hit(
            subject=sink,
            message=f"The {sink} sink is {lag / 60:.0f} min behind the chain head.",
            evidence={"sink": sink, "lag_seconds": int(lag)},
            fix_url=url("audit:verification"),
        )
        for sink, lag in sink_lags(now=now)
        if lag > SINK_LAG_SECONDS
    ]


@check(
    id="evidence.retention_short",
    question="audit",
    severity="medium",
    title="Audit retention is shorter than six months",
)
def retention_short(now: datetime) -> list[Hit]:
    days = retention_days()
    if days is None or days >= MIN_RETENTION_DAYS:
        return []
    return [
        Hit(
            subject="retention",
            message=f"Audit events are kept {days} days; auditors expect at least "
            f"{MIN_RETENTION_DAYS}.",
            evidence={"retention_days": days, "minimum": MIN_RETENTION_DAYS},
        )
    ]


@check(
    id="evidence.verify_stale",
    question="audit",
    severity="high",
    title="The audit chain has not been verified in 25 hours",
)
def verify_stale(now: datetime) -> list[Hit]:
    last = last_good_verification()
    if last is not None and last.ran_at >= now - VERIFY_MAX_AGE:
        return []
    return [
        Hit(
            subject="verify",
            message="No successful audit_verify run in the last 25 hours"
            + (f" (the last was {last.ran_at:%Y-%m-%d %H:%M} UTC)." if last else " (never)."),
            evidence={"last_success": last.ran_at if last else None},
            fix_url=url("audit:verification"),
        )
    ]
