from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from aispm_site.roles import AUDIT_PERMISSION, permission_required

from .. import selectors


@require_GET
@permission_required(AUDIT_PERMISSION)
def verification(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "audit/verification.html",
        {
            "last": selectors.last_verification(),
            "head": selectors.chain_head(),
            "unsealed": selectors.unsealed_count(),
        },
    )
