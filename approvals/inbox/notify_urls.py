from django.urls import path

from . import notify_views, routing_views

urlpatterns = [
    path("inbox/profile/", notify_views.profile, name="profile"),
    path("inbox/away/", routing_views.away, name="away"),
    path("inbox/away/<id:delegation_id>/cancel/", routing_views.away_cancel, name="away-cancel"),
    path("inbox/<uuid:decision_id>/reassign/", routing_views.reassign, name="reassign"),
    path("inbox/snoozed/", routing_views.snoozed, name="snoozed"),
    path("inbox/<uuid:decision_id>/snooze/", routing_views.snooze, name="snooze"),
    path("inbox/<uuid:decision_id>/unsnooze/", routing_views.unsnooze, name="unsnooze"),
    path(
        "inbox/<uuid:decision_id>/allow-similar/",
        routing_views.allow_similar,
        name="allow-similar",
    ),
    path(
        "inbox/<uuid:decision_id>/chat-approve/<str:token>/",
        notify_views.chat_approve,
        name="chat-approve",
    ),
]
