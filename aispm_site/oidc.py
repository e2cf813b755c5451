"""OpenID Connect single sign-on on top of mozilla-django-oidc.

The provider is configured by its issuer alone: endpoints come from its discovery
document, fetched when first needed and cached. The code flow uses PKCE, state and
a nonce; the ID token's issuer, audience and expiry are checked here, since the
library checks only its signature and nonce. The three role groups follow the
provider's groups at every login and every silent renewal, and a renewal that
finds fewer roles than the session was granted ends that session.
"""

import logging
import time
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from django_htmx.http import HttpResponseClientRefresh
from mozilla_django_oidc import auth as oidc_auth
from mozilla_django_oidc import middleware as oidc_middleware
from mozilla_django_oidc import views as oidc_views
from mozilla_django_oidc.utils import import_from_settings

from . import roles

logger = logging.getLogger(__name__)

MANAGED_ROLES = frozenset({roles.REVIEWERS, roles.AGENT_ADMINS, roles.AUDITORS})
SESSION_ROLES = "aispm_oidc_roles"
DISCOVERY_TTL_SECONDS = 3600
CLOCK_SKEW_SECONDS = 60

_discovery: dict = {"document": None, "issuer": None, "fetched": 0.0}


class ProviderError(Exception):
    """The identity provider could not be reached or answered nonsense."""


def enabled() -> bool:
    return bool(settings.OIDC_ISSUER)


def discovery() -> dict:
    issuer = settings.OIDC_ISSUER
    cached = _discovery["document"]
    if (
        cached is not None
        and _discovery["issuer"] == issuer
        and time.monotonic() - _discovery["fetched"] < DISCOVERY_TTL_SECONDS
    ):
        return cached
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderError(f"OpenID discovery at {url} failed: {exc}") from None
    # OpenID Connect Discovery 1.0 §4.3: the document must name the issuer we asked.
    if not isinstance(document, dict) or document.get("issuer") != issuer:
        raise ProviderError(f"OpenID discovery at {url} names another issuer")
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        if not isinstance(document.get(key), str):
            raise ProviderError(f"OpenID discovery at {url} has no {key}")
    _discovery.update(document=document, issuer=issuer, fetched=time.monotonic())
    return document


def forget_discovery() -> None:
    _discovery.update(document=None, issuer=None, fetched=0.0)


def _endpoint(key: str):
    # The library reads endpoints once, in __init__; a property defers the lookup to
    # the first use, so the site starts while the provider is down.
    return property(lambda self: discovery()[key], lambda self, value: None)


def _setting(name: str):
    return property(lambda self: getattr(settings, name), lambda self, value: None)


def _get_settings(attr, *args):
    # Endpoints are discovered (see _endpoint), never configured.
    if attr.startswith("OIDC_OP_") and attr.endswith("ENDPOINT"):
        return None
    return import_from_settings(attr, *args)


def roles_from_claims(claims: dict) -> set[str]:
    groups = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list):
        return set()
    mapping = settings.OIDC_GROUP_MAP
    return {mapping[group] for group in groups if isinstance(group, str) and group in mapping}


def user_roles_sync(*, user, roles_granted: set[str]) -> tuple[set[str], set[str]]:
    """Make the user's managed role groups equal `roles_granted`; other groups stay."""
    with transaction.atomic():
        current = set(user.groups.filter(name__in=MANAGED_ROLES).values_list("name", flat=True))
        added, removed = roles_granted - current, current - roles_granted
        if removed:
            user.groups.remove(*Group.objects.filter(name__in=removed))
        if added:
            user.groups.add(*Group.objects.filter(name__in=added))
    if added or removed:
        logger.info(
            "roles synced from the identity provider",
            extra={"user": user.get_username(), "added": sorted(added), "removed": sorted(removed)},
        )
    return added, removed


class Backend(oidc_auth.OIDCAuthenticationBackend):
    """Users are keyed by the provider's `sub`; a local account is never taken over."""

    get_settings = staticmethod(_get_settings)

    OIDC_OP_TOKEN_ENDPOINT = _endpoint("token_endpoint")
    OIDC_OP_USER_ENDPOINT = _endpoint("userinfo_endpoint")
    OIDC_OP_JWKS_ENDPOINT = _endpoint("jwks_uri")

    def __init__(self, *args, **kwargs):
        # Not the library's: it insists on configured endpoints, and these are discovered.
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.UserModel = get_user_model()

    def authenticate(self, request, **kwargs):
        if not enabled() or request is None or "nonce" not in kwargs:
            return None
        try:
            return super().authenticate(request, **kwargs)
        except (ProviderError, requests.RequestException, ValueError, KeyError) as exc:
            logger.warning("single sign-on failed: %s", exc)
            return None

    def verify_token(self, token, **kwargs):
        if not isinstance(token, str) or not token:
            raise SuspiciousOperation("The provider returned no ID token.")
        try:
            payload = super().verify_token(token, **kwargs)
        except (ValueError, TypeError) as exc:
            raise SuspiciousOperation(f"The ID token is malformed: {exc}") from None
        if not isinstance(payload, dict):
            raise SuspiciousOperation("The ID token's payload is not an object.")
        if payload.get("iss") != settings.OIDC_ISSUER:
            raise SuspiciousOperation("The ID token comes from another issuer.")
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if settings.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("The ID token is for another client.")
        expires = payload.get("exp")
        if not isinstance(expires, int | float) or expires + CLOCK_SKEW_SECONDS < time.time():
            raise SuspiciousOperation("The ID token has expired.")
        if not isinstance(payload.get("sub"), str) or not payload["sub"]:
            raise SuspiciousOperation("The ID token names no subject.")
        self._id_claims = payload
        return payload

    def get_token(self, payload):
        try:
            return super().get_token(payload)
        except requests.HTTPError as exc:
            raise SuspiciousOperation(f"The provider refused the code: {exc}") from None

    def get_userinfo(self, access_token, id_token, payload):
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if not isinstance(userinfo, dict) or userinfo.get("sub") != payload.get("sub"):
            # OpenID Connect Core §5.3.2: userinfo must be about the ID token's subject.
            raise SuspiciousOperation("The userinfo response is about another subject.")
        return {**payload, **userinfo}

    def verify_claims(self, claims):
        username = claims.get("sub")
        return isinstance(username, str) and 0 < len(username) <= 150 and "\x00" not in username

    def filter_users_by_claims(self, claims):
        # Only accounts that single sign-on created (no usable password) match, so a
        # provider account named like the break-glass superuser cannot become it.
        users = self.UserModel.objects.filter(username=claims["sub"])
        return [user for user in users if not user.has_usable_password()]

    def create_user(self, claims):
        if self.UserModel.objects.filter(username=claims["sub"]).exists():
            raise SuspiciousOperation("A local account already has this provider subject.")
        user = self.UserModel(username=claims["sub"])
        user.set_unusable_password()
        self._copy_profile(user, claims)
        user.save()
        return self._sync(user, claims)

    def update_user(self, user, claims):
        self._copy_profile(user, claims)
        user.save(update_fields=["email", "first_name"])
        return self._sync(user, claims)

    def _copy_profile(self, user, claims):
        email, name = claims.get("email"), claims.get("name")
        user.email = email[:254] if isinstance(email, str) else ""
        user.first_name = name[:150] if isinstance(name, str) else ""

    def _sync(self, user, claims):
        granted = roles_from_claims(claims)
        user_roles_sync(user=user, roles_granted=granted)
        user.aispm_oidc_roles = granted
        return user


class LocalPasswordBackend(ModelBackend):
    """Local passwords, unless AISPM_LOCAL_LOGIN is off: then only superusers (break-glass)."""

    def user_can_authenticate(self, user):
        if not settings.AISPM_LOCAL_LOGIN and not user.is_superuser:
            return False
        return super().user_can_authenticate(user)


class LoginView(oidc_views.OIDCAuthenticationRequestView):
    get_settings = staticmethod(_get_settings)
    OIDC_OP_AUTH_ENDPOINT = _endpoint("authorization_endpoint")

    def get(self, request):
        if not enabled():
            raise Http404
        try:
            discovery()
        except ProviderError as exc:
            logger.warning("single sign-on unavailable: %s", exc)
            messages.error(request, "Single sign-on is unavailable right now. Try again shortly.")
            return HttpResponseRedirect(reverse("login"))
        return super().get(request)


class CallbackView(oidc_views.OIDCAuthenticationCallbackView):
    @property
    def failure_url(self):
        return reverse("login") + "?sso=failed"

    def get(self, request):
        if not enabled():
            raise Http404
        for value in request.GET.values():
            if "\x00" in value or len(value) > 4096:
                raise SuspiciousOperation("Malformed callback parameter.")
        return super().get(request)

    def login_success(self):
        granted = getattr(self.user, "aispm_oidc_roles", set())
        renewing = self.request.user.is_authenticated and self.request.user == self.user
        had = set(self.request.session.get(SESSION_ROLES, [])) if renewing else set()
        if renewing and not had <= granted:
            # The provider took a role away: this session ends, and a fresh login
            # starts from what the provider grants now.
            auth.logout(self.request)
            messages.info(
                self.request, "Your roles changed at your identity provider. Log in again."
            )
            return HttpResponseRedirect(reverse("login"))
        response = super().login_success()
        self.request.session[SESSION_ROLES] = sorted(granted)
        return response


class SessionRefresh(oidc_middleware.SessionRefresh):
    """Silently re-authenticate single sign-on sessions every OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS."""

    get_settings = staticmethod(_get_settings)

    OIDC_OP_AUTHORIZATION_ENDPOINT = _endpoint("authorization_endpoint")
    OIDC_RP_CLIENT_ID = _setting("OIDC_RP_CLIENT_ID")
    OIDC_RP_SCOPES = _setting("OIDC_RP_SCOPES")

    def is_refreshable_url(self, request):
        if not enabled() or request.session.get(auth.BACKEND_SESSION_KEY) != _BACKEND_PATH:
            return False
        return super().is_refreshable_url(request)

    def process_request(self, request):
        try:
            response = super().process_request(request)
        except ProviderError as exc:
            # Fail closed: a session that cannot be renewed ends.
            logger.warning("session renewal failed: %s", exc)
            auth.logout(request)
            return HttpResponseRedirect(reverse("login"))
        if response is not None and request.headers.get("HX-Request") == "true":
            # An htmx fragment request cannot follow a redirect to the provider: reload
            # the page instead, and the full-page request renews the session.
            return HttpResponseClientRefresh()
        return response


_BACKEND_PATH = f"{Backend.__module__}.{Backend.__qualname__}"


def provider_logout_url(request) -> str | None:
    """RP-initiated logout, when the session came from the provider and it supports it."""
    if not enabled() or request.session.get(auth.BACKEND_SESSION_KEY) != _BACKEND_PATH:
        return None
    try:
        end_session = discovery().get("end_session_endpoint")
    except ProviderError:
        return None
    if not isinstance(end_session, str):
        return None
    params = {
        "client_id": settings.OIDC_RP_CLIENT_ID,
        "post_logout_redirect_uri": request.build_absolute_uri(reverse("login")),
    }
    if request.session.get("oidc_id_token"):
        params["id_token_hint"] = request.session["oidc_id_token"]
    return f"{end_session}?{urlencode(params)}"


class LogoutView(auth_views.LogoutView):
    def post(self, request, *args, **kwargs):
        provider_url = provider_logout_url(request)
        response = super().post(request, *args, **kwargs)
        return HttpResponseRedirect(provider_url) if provider_url else response


class PasswordLoginView(auth_views.LoginView):
    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["sso_enabled"] = enabled()
        context["local_login"] = settings.AISPM_LOCAL_LOGIN
        context["sso_failed"] = self.request.GET.get("sso") == "failed"
        return context
