from django.urls import path

from . import canaries

urlpatterns = [
    path("<slug:slug>/canaries/", canaries.canary_list, name="canaries"),
    path(
        "<slug:slug>/canaries/<id:template_id>/toggle/",
        canaries.canary_toggle,
        name="canary-toggle",
    ),
]
