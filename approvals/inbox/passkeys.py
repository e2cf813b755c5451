"""Passkeys on the user's profile (register, list, revoke) and step-up options for approvals."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from aispm_site.roles import REVIEW_PERMISSION, permission_required

from .. import passkeys, selectors, services
from ..passkey_models import Passkey

REGISTRATION_CHALLENGE = "aispm_passkey_registration"


class RegisterForm(forms.Form):
    name = forms.CharField(max_length=passkeys.MAX_NAME, strip=True)
    response = forms.CharField(max_length=passkeys.MAX_RESPONSE_BYTES, strip=False)


def _page(request: HttpRequest, *, form=None, status=200) -> HttpResponse:
    context = {
        "passkeys": request.user.passkeys.all(),
        "form": form or RegisterForm(),
    }
    return render(request, "approvals/passkeys.html", context, status=status)


@require_GET
@login_required
def passkey_list(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
@login_required
def passkey_options(request: HttpRequest) -> JsonResponse:
    options, challenge = passkeys.passkey_registration_options(
        user=request.user, rp=passkeys.relying_party(request)
    )
    request.session[REGISTRATION_CHALLENGE] = challenge
    return JsonResponse({"options": options})


@require_POST
@login_required
def passkey_register(request: HttpRequest) -> HttpResponse:
    form = RegisterForm(request.POST)
    challenge = request.session.pop(REGISTRATION_CHALLENGE, None)
    if not form.is_valid() or challenge is None:
        messages.error(request, "The passkey was not registered. Try again.")
        return _page(request, form=form, status=400)
    try:
        passkey = passkeys.passkey_register(
            user=request.user,
            name=form.cleaned_data["name"],
            response=form.cleaned_data["response"],
            challenge=challenge,
            rp=passkeys.relying_party(request),
        )
    except passkeys.PasskeyRefused as refusal:
        messages.error(request, str(refusal))
        return _page(request, form=form, status=400)
    messages.success(request, f"Passkey “{passkey.name}” registered.")
    return redirect("approvals:passkeys")


@require_POST
@login_required
def passkey_revoke(request: HttpRequest, passkey_id: int) -> HttpResponse:
    passkey = get_object_or_404(Passkey, pk=passkey_id, user=request.user)
    passkeys.passkey_revoke(passkey=passkey, actor=request.user)
    messages.success(request, f"Passkey “{passkey.name}” revoked.")
    return redirect("approvals:passkeys")


@require_GET
@permission_required(REVIEW_PERMISSION)
def step_up_options(request: HttpRequest, decision_id) -> JsonResponse:
    """The WebAuthn request for approving the params this decision holds now."""
    decision = selectors.decision_for_review(decision_id=decision_id)
    if decision is None:
        return JsonResponse({"error": "No such decision."}, status=404)
    options = passkeys.step_up_options(
        decision=decision,
        params=services.effective_params(decision),
        reviewer=request.user,
        rp=passkeys.relying_party(request),
    )
    if options is None:
        return JsonResponse(
            {
                "error": "This decision needs an approval signed with a passkey, and you have "
                "none. Register one on your Passkeys page, then approve again.",
                "register_url": reverse("approvals:passkeys"),
            },
            status=409,
        )
    return JsonResponse({"options": options})
