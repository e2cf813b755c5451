from django.urls import path

from . import notify_views

urlpatterns = [
    path("inbox/profile/", notify_views.profile, name="profile"),
    path(
        "inbox/<uuid:decision_id>/chat-approve/<str:token>/",
        notify_views.chat_approve,
        name="chat-approve",
    ),
]
