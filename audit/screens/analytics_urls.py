from django.urls import path

from . import analytics

app_name = "analytics"
urlpatterns = [path("reviewers/", analytics.reviewers, name="reviewers")]
