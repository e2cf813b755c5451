from django.urls import path

from . import canaries, notify_groups, standing

urlpatterns = [
    path("group-notifications/", notify_groups.group_notifications, name="group-notifications"),
    path("standing-approvers/", standing.standing_approvers, name="standing-approvers"),
    path("<slug:slug>/standing/", standing.standing_list, name="standing"),
    path(
        "<slug:slug>/standing/<uuid:standing_id>/revoke/",
        standing.standing_revoke,
        name="standing-revoke",
    ),
    path("<slug:slug>/canaries/", canaries.canary_list, name="canaries"),
    path(
        "<slug:slug>/canaries/<id:template_id>/toggle/",
        canaries.canary_toggle,
        name="canary-toggle",
    ),
]
