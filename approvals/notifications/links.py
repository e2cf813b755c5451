"""Signed "Approve" links for chat messages.

The link only opens a confirmation page: approving takes a logged-in session, a POST
with a CSRF token, and the inbox's own checks. The signature binds the decision and
the params the message described, so a link cannot be pointed at another decision,
and it approves nothing if the params changed since.
"""

from django.core import signing
from django.urls import reverse

from ..models import Decision

SALT = "aispm.notifications.approve-link"


class BadLink(Exception):
    pass


def approve_token(decision: Decision) -> str:
    from .. import services

    fingerprint = services.params_fingerprint(services.effective_params(decision))
    return signing.dumps({"d": str(decision.pk), "p": fingerprint}, salt=SALT, compress=True)


def approve_path(decision: Decision) -> str:
    return reverse("approvals:chat-approve", args=[decision.pk, approve_token(decision)])


def params_hash_from(token: str, *, decision_id) -> str:
    """The params fingerprint the link was signed for; BadLink unless it is for this decision."""
    try:
        data = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise BadLink("This approval link is not valid.") from None
    if not isinstance(data, dict) or data.get("d") != str(decision_id):
        raise BadLink("This approval link is for another decision.")
    fingerprint = data.get("p")
    if not isinstance(fingerprint, str):
        raise BadLink("This approval link is not valid.")
    return fingerprint
