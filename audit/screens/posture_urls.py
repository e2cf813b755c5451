from django.urls import path

from . import posture

app_name = "posture"
urlpatterns = [
    path("", posture.posture, name="page"),
    path("report/", posture.report, name="report"),
]
