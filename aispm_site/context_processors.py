from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse

from . import roles


@dataclass(frozen=True)
class Workspace:
    label: str
    url_name: str
    permission: str | tuple[str, ...]
    description: str


# A workspace shows only to users holding its permission (any one of them, for a
# tuple: the same test as its view's). Its link appears once its screen exists, that
# is once its URL name reverses.
WORKSPACES = [
    Workspace(
        "Inbox",
        "approvals:inbox",
        roles.REVIEW_PERMISSION,
        "Approve, edit or reject the actions agents are waiting on.",
    ),
    Workspace(
        "Agents",
        "agents:list",
        roles.MANAGE_AGENTS_PERMISSION,
        "Scopes, keys, behaviour versions and anomaly alerts.",
    ),
    Workspace(
        "Alerts",
        "security:alerts",
        roles.MANAGE_AGENTS_PERMISSION,
        "Anomalies, failed releases and key expiries, to acknowledge.",
    ),
    Workspace(
        "Audit",
        "audit:search",
        roles.AUDIT_PERMISSION,
        "Search decision trails, verify the hash chain and export CSV.",
    ),
    Workspace(
        "Posture",
        "posture:page",
        roles.POSTURE_PERMISSIONS,
        "Scores for the four questions, open findings and the report to export.",
    ),
]

ADMIN = Workspace(
    "Admin", "admin:index", "", "Users and roles, plus read-only views of every record."
)


def _url(url_name: str) -> str | None:
    try:
        return reverse(url_name)
    except NoReverseMatch:
        return None


def workspaces_for(user) -> list[dict]:
    """Every workspace the user may use, with `url` None while its screen is missing."""
    if user is None or not user.is_authenticated:
        return []
    allowed = [w for w in WORKSPACES if roles.has_any_perm(user, w.permission)]
    if user.is_staff:
        allowed.append(ADMIN)
    return [
        {"label": w.label, "description": w.description, "url": _url(w.url_name)} for w in allowed
    ]


def navigation(request):
    path = getattr(request, "path", "")
    items = []
    for workspace in workspaces_for(getattr(request, "user", None)):
        if workspace["url"] is None:
            continue
        workspace["current"] = path.startswith(workspace["url"])
        items.append(workspace)
    return {"nav_items": items}


def global_stop(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from agents.selectors import global_stop_engaged

    return {"global_stop_engaged": global_stop_engaged()}
