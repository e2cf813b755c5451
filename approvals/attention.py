"""Attention measured when a person approves: how long a decision was on screen before
approval, whether long params were expanded, and which way it was approved. Signals
for analytics, never verdicts.

Every approving path records one row per approval (`ReviewAttention.via`): the inbox's
Approve (with or without its confirmation step), a passkey step-up, edit-and-approve,
bulk approval and a chat link. A page that shows a decision carries a signed timestamp
of when it was rendered (`viewed_token`); the approval posts it back, with a flag the
inbox's script sets when a folded (long) param is opened. A forged or missing token
measures nothing (time on screen stays null), and bulk approval has no time to measure,
but the approval itself is still recorded, so streaks and counts by path see it.
"""

from django.core import signing
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record

from .models import Decision, Review, ReviewAttention

SALT = "aispm.attention.viewed"
MAX_SECONDS = 24 * 3600
LONG_VALUE = 120  # the inbox folds values longer than this (approvals/_value.html)


def viewed_token(decision: Decision) -> str:
    return signing.dumps(
        {"d": str(decision.pk), "t": timezone.now().timestamp()}, salt=SALT, compress=True
    )


def seconds_on_screen(token: str, *, decision: Decision) -> float | None:
    try:
        data = signing.loads(token, salt=SALT, max_age=MAX_SECONDS)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("d") != str(decision.pk):
        return None
    try:
        seconds = timezone.now().timestamp() - float(data["t"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    return round(seconds, 1) if 0 <= seconds <= MAX_SECONDS else None


def has_long_params(params) -> bool:
    if not isinstance(params, dict):
        return False
    for value in params.values():
        text = value if isinstance(value, str) else str(value)
        if len(text) > LONG_VALUE:
            return True
    return False


def _save(rows: list[tuple[Decision, ReviewAttention]], *, reviewer) -> None:
    """Upsert the rows in one statement and audit each, in one transaction."""
    with transaction.atomic():
        ReviewAttention.objects.bulk_create(
            [attention for _decision, attention in rows],
            update_conflicts=True,
            unique_fields=["review"],
            update_fields=["via", "seconds_on_screen", "params_expanded", "params_long"],
        )
        for decision, attention in rows:
            audit_record(
                event="review.attention_recorded",
                actor=reviewer,
                target=decision,
                data={
                    "review": attention.review_id,
                    "via": str(attention.via),
                    "seconds_on_screen": attention.seconds_on_screen,
                    "params_long": attention.params_long,
                    "params_expanded": attention.params_expanded,
                },
            )


def _row(decision: Decision, review: Review, *, via, seconds, params_expanded):
    long_params = has_long_params(review.params_before or decision.params)
    return ReviewAttention(
        review=review,
        via=via,
        seconds_on_screen=seconds,
        params_expanded=params_expanded if long_params else None,
        params_long=long_params,
    )


def _approving_reviews(decisions, reviewer):
    return Review.objects.filter(decision__in=decisions, reviewer=reviewer).exclude(
        verdict=Review.Verdict.REJECT
    )


def attention_record(
    *,
    decision: Decision,
    reviewer,
    token: str,
    params_expanded: bool | None,
    via: str = ReviewAttention.Via.INBOX,
) -> ReviewAttention | None:
    """Attach what the page measured, and the path, to this reviewer's approval."""
    review = _approving_reviews([decision], reviewer).first()
    if review is None:
        return None
    seconds = seconds_on_screen(token, decision=decision) if token else None
    attention = _row(decision, review, via=via, seconds=seconds, params_expanded=params_expanded)
    _save([(decision, attention)], reviewer=reviewer)
    return attention


def attention_record_bulk(*, decisions: list[Decision], reviewer) -> list[ReviewAttention]:
    """Bulk approval: each approval counts (streaks, paths), with no time on screen, as
    the list shows no decision on its own. One query for the reviews, one upsert."""
    by_id = {decision.pk: decision for decision in decisions}
    rows = [
        (
            by_id[review.decision_id],
            _row(
                by_id[review.decision_id],
                review,
                via=ReviewAttention.Via.BULK,
                seconds=None,
                params_expanded=None,
            ),
        )
        for review in _approving_reviews(decisions, reviewer).order_by("created_at", "pk")
    ]
    if rows:
        _save(rows, reviewer=reviewer)
    return [attention for _decision, attention in rows]
