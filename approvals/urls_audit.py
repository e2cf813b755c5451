from django.urls import path

from audit import views as audit_views

app_name = "audit"
urlpatterns = [
    path("verification/", audit_views.verification, name="verification"),
]
