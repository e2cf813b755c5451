from django.urls import include, path

from . import views

app_name = "approvals"
urlpatterns = [
    path("", include("approvals.inbox.notify_urls")),
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/counter/", views.inbox_counter, name="counter"),
    path("inbox/bulk-approve/", views.bulk_approve, name="bulk-approve"),
    path("inbox/<uuid:decision_id>/", views.decision_detail, name="detail"),
    path("inbox/<uuid:decision_id>/approve/", views.decision_approve, name="approve"),
    path("inbox/<uuid:decision_id>/reject/", views.decision_reject, name="reject"),
    path("inbox/<uuid:decision_id>/edit/", views.decision_edit, name="edit"),
]
