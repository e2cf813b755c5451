from django.urls import NoReverseMatch, reverse

from . import roles

# (label, url name, permission). A link shows only to users holding its permission,
# and only once its screen exists.
NAV_ITEMS = [
    ("Inbox", "approvals:inbox", roles.REVIEW_PERMISSION),
    ("Agents", "agents:list", roles.MANAGE_AGENTS_PERMISSION),
    ("Audit", "audit:search", roles.AUDIT_PERMISSION),
]


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": []}
    items = []
    for label, url_name, perm in NAV_ITEMS:
        if not user.has_perm(perm):
            continue
        try:
            items.append({"label": label, "url": reverse(url_name)})
        except NoReverseMatch:
            continue
    if user.is_staff:
        items.append({"label": "Admin", "url": reverse("admin:index")})
    return {"nav_items": items}
