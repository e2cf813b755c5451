"""Who may use the agent-admin screens, and the permission-scoped getters they share.

Every write on these screens goes through an agents.services function, which records
the audit event."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from agents.models import Agent
from aispm_site.roles import MANAGE_AGENTS_PERMISSION, permission_required

admin_required = permission_required(MANAGE_AGENTS_PERMISSION)


def superuser_required(view):
    """Login required, then 403 for anyone but a superuser: the global stop halts every agent."""

    @wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        if not request.user.is_superuser:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped


def agent_or_404(slug: str) -> Agent:
    return get_object_or_404(Agent, slug=slug)
