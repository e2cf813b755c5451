"""Roles are Django groups; each grants the permissions behind its own screens."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

REVIEWERS = "Reviewers"
AGENT_ADMINS = "Agent admins"
AUDITORS = "Auditors"

# The permission that stands for each role's screens.
REVIEW_PERMISSION = "approvals.review_decision"
MANAGE_AGENTS_PERMISSION = "agents.manage_agents"
AUDIT_PERMISSION = "audit.export_auditevent"
# The posture page and report answer to agent admins and auditors alike.
POSTURE_PERMISSIONS = (MANAGE_AGENTS_PERMISSION, AUDIT_PERMISSION)


def has_any_perm(user, perms: str | tuple[str, ...]) -> bool:
    """Whether the user holds `perms` (one permission) or any of them (a tuple)."""
    return any(user.has_perm(perm) for perm in ((perms,) if isinstance(perms, str) else perms))


def permission_required(perm: str):
    """Login required (redirect to login), then 403 for a signed-in user without `perm`."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(request, *args, **kwargs):
            if not request.user.has_perm(perm):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
