"""Access: who can log in how, how many can do everything, and who marks their own work."""

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import Q

from aispm_site import roles

from ..models import Review
from .common import WINDOW, setting, url
from .evidence import local_passwords_enabled, sso_configured
from .registry import Hit, check


@check(
    id="access.local_passwords_with_sso",
    question="compromise",
    severity="medium",
    title="Local passwords stay enabled while single sign-on is configured",
    provisional="Single sign-on arrives with issue 16; this reads OIDC_ISSUER and "
    "AISPM_LOCAL_LOGIN.",
)
def local_passwords_with_sso(now: datetime) -> list[Hit]:
    if not (sso_configured() and local_passwords_enabled()):
        return []
    return [
        Hit(
            subject="local-login",
            message="Single sign-on is configured but local passwords still log in, so "
            "leavers removed from the identity provider may keep access.",
            evidence={"sso": True, "local_login": True},
        )
    ]


@check(
    id="access.too_many_superusers",
    question="compromise",
    severity="medium",
    title="Too many superusers",
)
def too_many_superusers(now: datetime) -> list[Hit]:
    limit = setting("AISPM_POSTURE_MAX_SUPERUSERS")
    names = list(
        get_user_model()
        .objects.filter(is_active=True, is_superuser=True)
        .order_by("username")
        .values_list("username", flat=True)
    )
    if len(names) <= limit:
        return []
    return [
        Hit(
            subject="superusers",
            message=f"{len(names)} active superusers (more than {limit}) can do everything, "
            f"including lifting the global stop.",
            evidence={"superusers": names[:50], "limit": limit},
            fix_url=url("admin:auth_user_changelist"),
        )
    ]


@check(
    id="access.reviewer_is_admin",
    question="prevent",
    severity="low",
    title="A reviewer also administers the agents they review",
)
def reviewer_is_admin(now: datetime) -> list[Hit]:
    """Separation of duties, as a warning: an agent admin can change the scopes and policy
    of the agents whose decisions they approve."""
    admins = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name=roles.AGENT_ADMINS) | Q(is_superuser=True))
        .distinct()
    )
    reviewed = (
        Review.objects.filter(created_at__gte=now - WINDOW, reviewer__in=admins)
        .values_list("reviewer__username", "decision__agent__slug")
        .distinct()
    )
    agents_by_user: dict[str, set] = {}
    for username, slug in reviewed:
        agents_by_user.setdefault(username, set()).add(slug)
    return [
        Hit(
            subject=f"user:{username}",
            message=f"{username} is an agent admin and reviewed decisions of "
            f"{', '.join(sorted(slugs))} in 30 days.",
            evidence={"user": username, "agents": sorted(slugs)},
            fix_url=url("admin:auth_user_changelist"),
        )
        for username, slugs in sorted(agents_by_user.items())
    ]
