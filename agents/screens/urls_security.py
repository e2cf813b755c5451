from django.urls import path

from . import alerts, keys, scopes, stop

app_name = "security"
urlpatterns = [
    path("alerts/", alerts.alert_list, name="alerts"),
    path("alerts/<id:alert_id>/acknowledge/", alerts.alert_acknowledge, name="alert-acknowledge"),
    path("global-stop/", stop.global_stop, name="global-stop"),
    path("agents/<slug:slug>/keys/", keys.key_list, name="keys"),
    path("agents/<slug:slug>/keys/issue/", keys.key_issue, name="key-issue"),
    path("agents/<slug:slug>/keys/<id:key_id>/rotate/", keys.key_rotate, name="key-rotate"),
    path("agents/<slug:slug>/keys/<id:key_id>/revoke/", keys.key_revoke, name="key-revoke"),
    path("agents/<slug:slug>/scopes/", scopes.scopes, name="scopes"),
    path("agents/<slug:slug>/scopes/grant/", scopes.grant_create, name="grant-create"),
    path("agents/<slug:slug>/scopes/<str:action_key>/edit/", scopes.grant_edit, name="grant-edit"),
    path(
        "agents/<slug:slug>/scopes/<str:action_key>/remove/",
        scopes.grant_remove,
        name="grant-remove",
    ),
    path("agents/<slug:slug>/suspend/", stop.agent_suspend, name="suspend"),
    path("agents/<slug:slug>/resume/", stop.agent_resume, name="resume"),
]
