from django.urls import path

from .behaviour import BehaviourView
from .decisions import DecisionCancelView, DecisionDetailView, DecisionsView
from .feedback import FeedbackView

urlpatterns = [
    path("decisions/", DecisionsView.as_view(), name="api-decisions"),
    path("decisions/<str:decision_id>/", DecisionDetailView.as_view(), name="api-decision"),
    path(
        "decisions/<str:decision_id>/cancel/",
        DecisionCancelView.as_view(),
        name="api-decision-cancel",
    ),
    path("behaviour/", BehaviourView.as_view(), name="api-behaviour"),
    path("feedback/", FeedbackView.as_view(), name="api-feedback"),
]
