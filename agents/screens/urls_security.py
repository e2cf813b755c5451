from django.urls import path

from . import security as views

app_name = "security"
urlpatterns = [
    path("alerts/", views.alert_list, name="alerts"),
    path("alerts/<id:alert_id>/acknowledge/", views.alert_acknowledge, name="alert-acknowledge"),
    path("global-stop/", views.global_stop, name="global-stop"),
    path("agents/<slug:slug>/keys/", views.key_list, name="keys"),
    path("agents/<slug:slug>/keys/issue/", views.key_issue, name="key-issue"),
    path("agents/<slug:slug>/keys/<id:key_id>/rotate/", views.key_rotate, name="key-rotate"),
    path("agents/<slug:slug>/keys/<id:key_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("agents/<slug:slug>/scopes/", views.scopes, name="scopes"),
    path("agents/<slug:slug>/scopes/grant/", views.grant_create, name="grant-create"),
    path("agents/<slug:slug>/scopes/<str:action_key>/edit/", views.grant_edit, name="grant-edit"),
    path(
        "agents/<slug:slug>/scopes/<str:action_key>/remove/",
        views.grant_remove,
        name="grant-remove",
    ),
    path("agents/<slug:slug>/suspend/", views.agent_suspend, name="suspend"),
    path("agents/<slug:slug>/resume/", views.agent_resume, name="resume"),
]
