"""Passkeys (WebAuthn) and passkey-signed approvals.

A decision whose policy rule says `step_up: passkey`, or whose risk reaches
AISPM_STEP_UP_DEFAULT_RISK, is approved only with a WebAuthn assertion. Its challenge
is not random: it is the SHA-256 of a canonical statement of what is approved (the
decision, the hash of the params being approved, the behaviour version, the required
approvals and the reviewer). So the assertion binds the reviewer's authenticator to
exactly that approval, and anyone holding the record can re-derive the challenge and
check the signature against the registered public key, with no secret of aispm's.
"""

import hashlib
import json
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    parse_authentication_credential_json,
    parse_registration_credential_json,
    verify_signature,
)
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidCBORData,
    InvalidJSONStructure,
    WebAuthnException,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from agents.models import Risk
from audit.services import audit_record

from .passkey_models import Passkey, ReviewSignature

STATEMENT_CONTEXT = b"aispm step-up approval v1\n"
MAX_RESPONSE_BYTES = 64 * 1024
MAX_NAME = 100
RISK_ORDER = [Risk.LOW, Risk.MEDIUM, Risk.HIGH, Risk.CRITICAL]


class PasskeyRefused(Exception):
    """A registration or assertion that does not verify, or a malformed one."""


@dataclass(frozen=True)
class RelyingParty:
    id: str
    origin: str


def relying_party(request) -> RelyingParty:
    """aispm as WebAuthn sees it: AISPM_WEBAUTHN_RP_ID/ORIGIN, else the request's host."""
    origin = settings.AISPM_WEBAUTHN_ORIGIN or f"{request.scheme}://{request.get_host()}"
    rp_id = settings.AISPM_WEBAUTHN_RP_ID or request.get_host().rsplit(":", 1)[0].strip("[]")
    return RelyingParty(id=rp_id, origin=origin)


def _response_json(response) -> str:
    """The browser's credential as JSON text, refused if oversized or not a flat object."""
    if isinstance(response, dict):
        try:
            response = json.dumps(response)
        except (ValueError, RecursionError):
            raise PasskeyRefused("The passkey response is not valid.") from None
    if not isinstance(response, str) or not response or len(response) > MAX_RESPONSE_BYTES:
        raise PasskeyRefused("The passkey response is missing or too large.")
    if "\x00" in response:
        raise PasskeyRefused("The passkey response is not valid.")
    try:
        parsed = json.loads(response)
    except (ValueError, RecursionError):
        raise PasskeyRefused("The passkey response is not valid JSON.") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("response"), dict):
        raise PasskeyRefused("The passkey response is not a credential.")
    for value in (*parsed.values(), *parsed["response"].values()):
        if isinstance(value, dict | list) and key_depth(value) > 4:
            raise PasskeyRefused("The passkey response is not a credential.")
    return response


def key_depth(value, depth: int = 0) -> int:
    if depth > 4:
        return depth
    if isinstance(value, dict):
        return max((key_depth(v, depth + 1) for v in value.values()), default=depth + 1)
    if isinstance(value, list):
        return max((key_depth(v, depth + 1) for v in value), default=depth + 1)
    return depth


# Registration --------------------------------------------------------------------


def passkey_registration_options(*, user, rp: RelyingParty) -> tuple[str, str]:
    """WebAuthn creation options as JSON, and the challenge to keep in the session."""
    challenge = secrets.token_bytes(32)
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name="aispm",
        user_id=str(user.pk).encode(),
        user_name=user.get_username(),
        user_display_name=user.get_full_name() or user.get_username(),
        challenge=challenge,
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(passkey.credential_id))
            for passkey in user.passkeys.filter(revoked_at__isnull=True)
        ],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
    )
    return options_to_json(options), bytes_to_base64url(challenge)


def passkey_register(*, user, name: str, response, challenge: str, rp: RelyingParty) -> Passkey:
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise PasskeyRefused(f"Give the passkey a name of 1 to {MAX_NAME} characters.")
    text = _response_json(response)
    try:
        credential = parse_registration_credential_json(text)
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            require_user_verification=True,
        )
    except (WebAuthnException, InvalidCBORData, InvalidJSONStructure, ValueError, TypeError):
        raise PasskeyRefused("The passkey could not be verified. Try again.") from None
    credential_id = bytes_to_base64url(verified.credential_id)
    with transaction.atomic():
        if Passkey.objects.filter(credential_id=credential_id).exists():
            raise PasskeyRefused("This passkey is already registered.")
        passkey = Passkey.objects.create(
            user=user,
            credential_id=credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            name=name,
        )
        audit_record(
            event="passkey.registered",
            actor=user,
            target=passkey,
            data={"name": name, "credential_id": credential_id},
        )
    return passkey


def passkey_revoke(*, passkey: Passkey, actor) -> Passkey:
    with transaction.atomic():
        updated = Passkey.objects.filter(pk=passkey.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        passkey.refresh_from_db()
        if updated:
            audit_record(
                event="passkey.revoked",
                actor=actor,
                target=passkey,
                data={"name": passkey.name, "credential_id": passkey.credential_id},
            )
    return passkey


# Step-up approvals ----------------------------------------------------------------


def _params_hash(params) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _rule_of(decision) -> dict | None:
    from agents.models import BehaviourVersion

    if decision.behaviour_version is None or not decision.policy_rule:
        return None
    version = BehaviourVersion.objects.filter(
        agent_id=decision.agent_id, number=decision.behaviour_version
    ).first()
    for rule in (version.policy if version else None) or []:
        if isinstance(rule, dict) and rule.get("id") == decision.policy_rule:
            return rule
    return None


def step_up_required(decision) -> bool:
    rule = _rule_of(decision)
    if rule is not None and rule.get("step_up") == "passkey":
        return True
    threshold = settings.AISPM_STEP_UP_DEFAULT_RISK
    if not threshold or decision.risk not in RISK_ORDER:
        return False
    return RISK_ORDER.index(decision.risk) >= RISK_ORDER.index(threshold)


def step_up_statement(*, decision, params, reviewer) -> dict:
    """The canonical statement a step-up approval signs."""
    return {
        "context": "aispm.approve",
        "decision": str(decision.pk),
        "params_sha256": _params_hash(params),
        "behaviour_version": decision.behaviour_version,
        "required_approvals": decision.required_approvals,
        "reviewer": reviewer.pk,
    }


def step_up_challenge(statement: dict) -> bytes:
    canonical = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(STATEMENT_CONTEXT + canonical.encode()).digest()


def step_up_options(*, decision, params, reviewer, rp: RelyingParty) -> str | None:
    """WebAuthn request options for approving `params`, or None without an active passkey."""
    passkeys = list(reviewer.passkeys.filter(revoked_at__isnull=True))
    if not passkeys:
        return None
    statement = step_up_statement(decision=decision, params=params, reviewer=reviewer)
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=step_up_challenge(statement),
        allow_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(passkey.credential_id))
            for passkey in passkeys
        ],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json(options)


@dataclass(frozen=True)
class SignedAssertion:
    passkey: Passkey
    statement: dict
    credential_id: str
    authenticator_data: str
    client_data_json: str
    signature: str
    sign_count: int

    def audit_data(self) -> dict:
        return {
            "statement": self.statement,
            "credential_id": self.credential_id,
            "authenticator_data": self.authenticator_data,
            "client_data_json": self.client_data_json,
            "signature": self.signature,
        }


class StepUpRefused(PasskeyRefused):
    pass


def step_up_verify(*, decision, params, reviewer, assertion, rp: RelyingParty) -> SignedAssertion:
    """Check a reviewer's assertion over the statement for approving `params` now."""
    if assertion in (None, ""):
        if not reviewer.passkeys.filter(revoked_at__isnull=True).exists():
            raise StepUpRefused(
                "This decision needs an approval signed with a passkey, and you have none. "
                "Register one on your Passkeys page (under your name), then approve again."
            )
        raise StepUpRefused("This decision needs an approval signed with your passkey.")
    text = _response_json(assertion)
    statement = step_up_statement(decision=decision, params=params, reviewer=reviewer)
    try:
        credential = parse_authentication_credential_json(text)
    except (WebAuthnException, InvalidJSONStructure, ValueError, TypeError):
        raise StepUpRefused("The passkey signature is not valid.") from None
    credential_id = bytes_to_base64url(credential.raw_id)
    passkey = (
        Passkey.objects.select_for_update()
        .filter(credential_id=credential_id, user=reviewer, revoked_at__isnull=True)
        .first()
    )
    if passkey is None:
        raise StepUpRefused("That passkey is not one of your active passkeys.")
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=step_up_challenge(statement),
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except (InvalidAuthenticationResponse, WebAuthnException, InvalidCBORData, ValueError):
        raise StepUpRefused(
            "The passkey signature does not match this approval. Review the decision again."
        ) from None
    Passkey.objects.filter(pk=passkey.pk).update(
        sign_count=verified.new_sign_count, last_used_at=timezone.now()
    )
    return SignedAssertion(
        passkey=passkey,
        statement=statement,
        credential_id=credential_id,
        authenticator_data=bytes_to_base64url(credential.response.authenticator_data),
        client_data_json=bytes_to_base64url(credential.response.client_data_json),
        signature=bytes_to_base64url(credential.response.signature),
        sign_count=verified.new_sign_count,
    )


def review_signature_attach(*, review, signed: SignedAssertion) -> ReviewSignature:
    """Store the assertion with its review; the caller's transaction records the event."""
    return ReviewSignature.objects.create(
        review=review,
        passkey=signed.passkey,
        statement=signed.statement,
        credential_id=signed.credential_id,
        authenticator_data=signed.authenticator_data,
        client_data_json=signed.client_data_json,
        signature=signed.signature,
    )


# Offline verification ---------------------------------------------------------------


@dataclass(frozen=True)
class SignatureProblem:
    review_id: int
    decision_id: str
    reviewer: str
    problem: str

    def __str__(self):
        return (
            f"review {self.review_id} on decision {self.decision_id} by {self.reviewer}: "
            f"{self.problem}"
        )


def _approved_params_for(review, reviews) -> dict:
    """The params a review approved, re-derived from the record: the latest edit's params
    up to and including this review, else the agent's."""
    params = review.decision.params
    for other in reviews:
        if other.pk > review.pk:
            break
        if other.params_after is not None:
            params = other.params_after
    return params


def signature_check(signature: ReviewSignature, reviews) -> str | None:
    """None when the recorded assertion signs this review's approval; else the problem."""
    review, decision = signature.review, signature.review.decision
    params = _approved_params_for(review, reviews)
    statement = step_up_statement(decision=decision, params=params, reviewer=review.reviewer)
    counted = [r for r in reviews if r.verdict != "reject"]
    last_edit = max((r.pk for r in reviews if r.params_after is not None), default=0)
    if (
        decision.approved_params is not None
        and review.pk >= last_edit
        and review in counted
        and _params_hash(decision.approved_params) != statement["params_sha256"]
    ):
        return "the approved params do not match the params that were signed"
    if statement != signature.statement:
        changed = sorted(k for k in statement if statement[k] != signature.statement.get(k))
        return (
            f"the recorded decision no longer matches the signed statement ({', '.join(changed)})"
        )
    if signature.passkey.user_id != review.reviewer_id:
        return "the passkey belongs to another user"
    try:
        client_data = json.loads(base64url_to_bytes(signature.client_data_json))
        authenticator_data = base64url_to_bytes(signature.authenticator_data)
        raw_signature = base64url_to_bytes(signature.signature)
    except (ValueError, TypeError):
        return "the recorded assertion is malformed"
    if not isinstance(client_data, dict) or client_data.get("type") != "webauthn.get":
        return "the recorded assertion is not an authentication"
    if client_data.get("challenge") != bytes_to_base64url(step_up_challenge(statement)):
        return "the signed challenge is not this approval's statement"
    signed_bytes = (
        authenticator_data + hashlib.sha256(base64url_to_bytes(signature.client_data_json)).digest()
    )
    try:
        decoded = decode_credential_public_key(bytes(signature.passkey.public_key))
        verify_signature(
            public_key=decoded_public_key_to_cryptography(decoded),
            signature_alg=decoded.alg,
            signature=raw_signature,
            data=signed_bytes,
        )
    except Exception:  # noqa: BLE001 - any failure to verify is a bad signature
        return "the signature does not verify with the reviewer's registered passkey"
    return None


def signatures_verify() -> tuple[int, list[SignatureProblem]]:
    """Check every signed approval; return how many were checked and the problems."""
    from .models import Review

    problems = []
    checked = 0
    signatures = ReviewSignature.objects.select_related(
        "review__decision", "review__reviewer", "passkey"
    ).order_by("pk")
    for signature in signatures.iterator(chunk_size=500):
        reviews = list(
            Review.objects.filter(decision_id=signature.review.decision_id).order_by("pk")
        )
        checked += 1
        problem = signature_check(signature, reviews)
        if problem:
            review = signature.review
            problems.append(
                SignatureProblem(
                    review_id=review.pk,
                    decision_id=str(review.decision_id),
                    reviewer=review.reviewer.get_username(),
                    problem=problem,
                )
            )
    return checked, problems
