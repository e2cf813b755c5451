from django.urls import include, path

from . import behaviour as agent_views

app_name = "agents"
urlpatterns = [
    path("", agent_views.agent_list, name="list"),
    path("", include("agents.screens.canary_urls")),
    path("<slug:slug>/", agent_views.agent_detail, name="detail"),
    path("<slug:slug>/versions/new/", agent_views.version_new, name="version-new"),
    path("<slug:slug>/versions/diff/", agent_views.version_diff, name="diff"),
    path(
        "<slug:slug>/versions/<id:number>/activate/",
        agent_views.version_activate,
        name="activate",
    ),
    path("<slug:slug>/feedback.jsonl", agent_views.feedback_export, name="feedback-export"),
]
