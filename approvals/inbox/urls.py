from django.urls import path

from . import passkeys, views

app_name = "approvals"
urlpatterns = [
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/counter/", views.inbox_counter, name="counter"),
    path("inbox/bulk-approve/", views.bulk_approve, name="bulk-approve"),
    path("inbox/<uuid:decision_id>/", views.decision_detail, name="detail"),
    path("inbox/<uuid:decision_id>/approve/", views.decision_approve, name="approve"),
    path("inbox/<uuid:decision_id>/reject/", views.decision_reject, name="reject"),
    path("inbox/<uuid:decision_id>/edit/", views.decision_edit, name="edit"),
    path("inbox/<uuid:decision_id>/step-up/", passkeys.step_up_options, name="step-up"),
    path("profile/passkeys/", passkeys.passkey_list, name="passkeys"),
    path("profile/passkeys/options/", passkeys.passkey_options, name="passkey-options"),
    path("profile/passkeys/register/", passkeys.passkey_register, name="passkey-register"),
    path(
        "profile/passkeys/<int:passkey_id>/revoke/", passkeys.passkey_revoke, name="passkey-revoke"
    ),
]
