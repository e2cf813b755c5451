from django.urls import path

from . import exports, trails
from . import views as audit_views

app_name = "audit"
urlpatterns = [
    path("", trails.search, name="search"),
    path("decisions/<uuid:decision_id>/", trails.trail, name="trail"),
    path("export.csv", exports.export_csv, name="export-csv"),
    path("export.jsonl", exports.export_jsonl, name="export-jsonl"),
    path("exports/<id:event_id>/manifest.json", exports.export_manifest, name="manifest"),
    path("verification/", audit_views.verification, name="verification"),
    path("verification/run/", audit_views.verification_run, name="verification-run"),
]
