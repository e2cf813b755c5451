from django.urls import path

from . import views as api

urlpatterns = [
    path("decisions/", api.DecisionsView.as_view(), name="api-decisions"),
    path("decisions/<str:decision_id>/", api.DecisionDetailView.as_view(), name="api-decision"),
    path(
        "decisions/<str:decision_id>/cancel/",
        api.DecisionCancelView.as_view(),
        name="api-decision-cancel",
    ),
    path("behaviour/", api.BehaviourView.as_view(), name="api-behaviour"),
    path("feedback/", api.FeedbackView.as_view(), name="api-feedback"),
]
