from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from aispm_site.roles import AUDIT_PERMISSION, permission_required

from .. import checkpoints, selectors, siem, tasks, witness
from ..models import AuditEvent


def _running_since(last):
    """When the newest unanswered Verify now was pressed, or None when none is running."""
    requested = (
        AuditEvent.objects.filter(event="audit.verification_requested")
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
    )
    if requested is None or (last is not None and last.ran_at >= requested):
        return None
    return requested


def _verification_context() -> dict:
    last = selectors.last_verification()
    return {
        "last": last,
        "running_since": _running_since(last),
        "head": selectors.chain_head(),
        "unsealed": selectors.unsealed_count(),
    }


@require_GET
@permission_required(AUDIT_PERMISSION)
def verification(request: HttpRequest) -> HttpResponse:
    context = _verification_context()
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, "audit/verification.html#last-verification", context)
    checkpoint = selectors.newest_checkpoint()
    return render(
        request,
        "audit/verification.html",
        {
            **context,
            "checkpoint": checkpoint,
            "signature_status": (
                checkpoints.checkpoint_signature_status(checkpoint) if checkpoint else ""
            ),
            "key_fingerprint": checkpoints.key_fingerprint(),
            "witness_url": witness.witness_location(settings.AISPM_AUDIT_WITNESS_URL),
            "sinks": siem.sink_lag(),
        },
    )


@require_POST
@permission_required(AUDIT_PERMISSION)
def verification_run(request: HttpRequest) -> HttpResponse:
    """Verify now: in-process on the embedded default (no broker), else a Celery task
    whose progress the page polls."""
    checkpoints.audit_verification_request(actor=request.user)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # The daily task itself, run here: seal, verify, record, alert if broken.
        tasks.verify_audit_chain()
        result = selectors.last_verification()
        if result.ok:
            messages.success(request, f"Verified {result.events_checked} events: intact.")
        else:
            messages.error(request, f"Verification failed: {result.problem}")
    else:
        tasks.verify_audit_chain.delay()
        messages.info(request, "Verification started; this page updates when it finishes.")
    return redirect(reverse("audit:verification"))
