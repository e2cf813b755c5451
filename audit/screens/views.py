from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from aispm_site.roles import AUDIT_PERMISSION, permission_required

from .. import checkpoints, selectors, siem


@require_GET
@permission_required(AUDIT_PERMISSION)
def verification(request: HttpRequest) -> HttpResponse:
    checkpoint = selectors.newest_checkpoint()
    return render(
        request,
        "audit/verification.html",
        {
            "last": selectors.last_verification(),
            "head": selectors.chain_head(),
            "unsealed": selectors.unsealed_count(),
            "checkpoint": checkpoint,
            "signature_status": (
                checkpoints.checkpoint_signature_status(checkpoint) if checkpoint else ""
            ),
            "key_fingerprint": checkpoints.key_fingerprint(),
            "sinks": siem.sink_lag(),
        },
    )
