"""aispm settings, read from the environment.

Every variable is parsed by a small typed helper that fails at start-up with a
message naming the variable. See README.md ("Configuration") for the contract.
"""

import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from . import roles
from .env import (
    env_bool,
    env_broker,
    env_choice,
    env_database,
    env_int,
    env_list,
    env_mailer,
    env_mapping,
    env_signing_key,
    env_str,
    env_url,
    env_witness,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# templates/ and static/ sit at the top of a checkout; an installed wheel carries them
# inside this package (see pyproject.toml).
ASSETS_DIR = BASE_DIR if (BASE_DIR / "templates").is_dir() else Path(__file__).resolve().parent

DEBUG = env_bool("DEBUG")

# Covering indexes (INCLUDE) are a PostgreSQL optimisation; SQLite, the embedded
# default, builds the same indexes without the extra columns.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

SECRET_KEY = os.environ.get("SECRET_KEY", "").strip()
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set SECRET_KEY to a long random "
            "string, or set DEBUG=true for local development."
        )
    SECRET_KEY = "insecure-development-key-only-used-when-debug-is-on"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "audit",
    "agents",
    "approvals",
    "demo",
]

MIDDLEWARE = [
    # First, so that every request, even a redirect or a static file, gets an id and a log line.
    "aispm_site.middleware.RequestContextMiddleware",
    "aispm_site.middleware.RefuseHostileInputMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The agent API leaves here for AISPM_API_MIDDLEWARE; everything below is for people.
    "aispm_site.middleware.ApiFastPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After sessions and before CommonMiddleware, where Django puts LocaleMiddleware.
    "aispm_site.middleware.ReaderLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Renews single sign-on sessions silently, and ends those the provider no longer backs.
    "aispm_site.oidc.SessionRefresh",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Agents authenticate with a key on every request: no session, messages, CSRF,
# htmx or login throttling, only the middleware that sets response headers.
AISPM_API_PREFIX = "/api/v1/"
AISPM_API_MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
]
# The agent API's busiest operation answers its common case without DRF (the view
# answers the rest): (method, path under AISPM_API_PREFIX) -> function.
AISPM_API_LEAN_VIEWS = {("POST", "decisions/"): "approvals.api.lean.decision_submit"}

ROOT_URLCONF = "aispm_site.urls"
WSGI_APPLICATION = "aispm_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [ASSETS_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "aispm_site.context_processors.navigation",
                "aispm_site.context_processors.global_stop",
            ],
        },
    },
]

DATABASES = {"default": env_database("DATABASE_URL")}
# The statements every submission runs are prepared once per connection (aispm_site.db).
# Turn off behind PgBouncer in transaction mode before 1.21.
AISPM_DB_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes): five failed logins for one username from one
# address lock that pair out for 15 minutes; a correct password does not lift it.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "aispm_site.oidc.LocalPasswordBackend",
    "aispm_site.oidc.Backend",
]
AXES_ENABLED = True
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The lockout runs 15 minutes from the last counted failure; attempts made while
# locked out neither count nor extend it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429

# Single sign-on (OpenID Connect, mozilla-django-oidc), on when OIDC_ISSUER is set. See
# README "Sign-in and signed approvals". Local passwords can be turned off; superusers
# keep theirs as the break-glass way in.
AISPM_LOCAL_LOGIN = env_bool("AISPM_LOCAL_LOGIN", True)
OIDC_ISSUER = env_url("OIDC_ISSUER")
OIDC_RP_CLIENT_ID = env_str("OIDC_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_str("OIDC_CLIENT_SECRET")
if OIDC_ISSUER and not (OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET):
    raise ImproperlyConfigured("OIDC_ISSUER is set: set OIDC_CLIENT_ID and OIDC_CLIENT_SECRET too.")
OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM", "groups") or "groups"
OIDC_GROUP_MAP = env_mapping(
    "OIDC_GROUP_MAP", allowed_values={roles.REVIEWERS, roles.AGENT_ADMINS, roles.AUDITORS}
)
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = env_int("OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS", 900, minimum=30)
OIDC_RP_SIGN_ALGO = env_choice(
    "OIDC_SIGN_ALGO", "RS256", choices={"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}
)
OIDC_RP_SCOPES = env_str("OIDC_SCOPES", "openid email profile") or "openid email profile"
OIDC_USE_PKCE = True
OIDC_USE_NONCE = True
OIDC_STORE_ID_TOKEN = True
OIDC_TIMEOUT = 10
OIDC_EXEMPT_URLS = ["logout", "healthz"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
# The locales a browser's Accept-Language may pick for writing money and numbers
# (ReaderLocaleMiddleware); the interface itself is in English only.
LANGUAGES = [
    ("en", "English"),
    ("en-gb", "English (UK)"),
    ("de", "German"),
    ("fr", "French"),
    ("es", "Spanish"),
    ("it", "Italian"),
    ("nl", "Dutch"),
]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [ASSETS_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Content Security Policy: no inline script without a nonce, never unsafe-eval.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

if OIDC_ISSUER:
    # Logging out POSTs to aispm, which redirects to the provider's end-session page,
    # and browsers hold that redirect to form-action too.
    _issuer = urlsplit(OIDC_ISSUER)
    SECURE_CSP["form-action"].append(f"{_issuer.scheme}://{_issuer.netloc}")

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]
    if not SECURE_HSTS_PRELOAD:
        # The preload directive consents to putting the whole parent domain on
        # browsers' HTTPS-only list, so the deployer opts in rather than aispm.
        SILENCED_SYSTEM_CHECKS.append("security.W021")

# Celery: unset broker means eager tasks, run in-process after commit.
CELERY_BROKER_URL = env_broker("CELERY_BROKER_URL")
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
# Redis also backs the per-grant hourly counters; without it they are counted in SQL.
AISPM_REDIS_URL = CELERY_BROKER_URL
CELERY_BROKER_URL = CELERY_BROKER_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 30
CELERY_TASK_TIME_LIMIT = 60
# The visibility timeout must exceed the hard time limit, or Redis redelivers
# a task that is still running.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 300}
CELERY_TIMEZONE = "UTC"
# Celery's Django fixup closes every database connection before and after each task
# unless told to reuse them: a new PostgreSQL connection for every release. Reuse it as
# web requests do (DATABASE_CONN_MAX_AGE); aispm_site.celery closes a broken or expired
# one before each task, and the fixup still closes all every CELERY_DB_REUSE_MAX tasks.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000, minimum=0)
# Publishing must not hang a request while the broker is down: fail fast, and let
# the release sweeper enqueue what was missed.
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "sweep-releases": {"task": "approvals.tasks.sweep_releases", "schedule": 30.0},
    "expire-decisions": {"task": "approvals.tasks.expire_pending_decisions", "schedule": 30.0},
    "seal-audit": {"task": "audit.tasks.seal_audit_events", "schedule": 5.0},
    "rate-spikes": {"task": "approvals.tasks.detect_rate_spikes", "schedule": 300.0},
    "key-ages": {"task": "approvals.tasks.check_key_ages", "schedule": 6 * 3600.0},
    "verify-audit": {"task": "approvals.tasks.verify_audit_chain", "schedule": 24 * 3600.0},
    "posture-checks": {"task": "approvals.tasks.run_posture_checks", "schedule": 15 * 60.0},
}

# Email: EMAIL_URL (smtp://user:pass@host:587?tls=true, smtps://..., console:, locmem:).
MAILERS = {"default": env_mailer("EMAIL_URL", debug=DEBUG)}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "aispm@localhost")

# aispm's own settings.
AISPM_ENCRYPTION_KEY = os.environ.get("AISPM_ENCRYPTION_KEY", "").strip()
AISPM_ALLOW_PRIVATE_TARGETS = env_bool("AISPM_ALLOW_PRIVATE_TARGETS")
AISPM_DEFAULT_TTL_HOURS = env_int("AISPM_DEFAULT_TTL_HOURS", 24, minimum=1)
# Release: attempts per decision, backoff base, how long a worker owns a release
# (above the task's hard time limit), and when the sweeper steps in.
AISPM_RELEASE_MAX_ATTEMPTS = env_int("AISPM_RELEASE_MAX_ATTEMPTS", 5, minimum=1)
AISPM_RELEASE_BACKOFF_SECONDS = env_int("AISPM_RELEASE_BACKOFF_SECONDS", 2, minimum=1)
AISPM_RELEASE_LEASE_SECONDS = env_int("AISPM_RELEASE_LEASE_SECONDS", 120, minimum=1)
AISPM_RELEASE_SWEEP_AFTER_SECONDS = env_int("AISPM_RELEASE_SWEEP_AFTER_SECONDS", 60, minimum=1)
# Releases and agent callbacks wait on PostgreSQL and on HTTP, not on the CPU: a worker
# with a thread pool (`-Q <queue> --pool threads --concurrency 16`) overlaps the waits
# that a prefork process spends idle. Set this to route them to that worker's queue;
# unset, they go to the default queue with every other task.
AISPM_RELEASE_QUEUE = env_str("AISPM_RELEASE_QUEUE", "")
_QUEUE_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
if AISPM_RELEASE_QUEUE and not re.fullmatch(_QUEUE_NAME, AISPM_RELEASE_QUEUE):
    raise ImproperlyConfigured(
        "AISPM_RELEASE_QUEUE must be a queue name: letters, digits, '.', '_' or '-'."
    )
if AISPM_RELEASE_QUEUE:
    CELERY_TASK_ROUTES = {
        "approvals.tasks.release_decision": {"queue": AISPM_RELEASE_QUEUE},
        "approvals.tasks.notify_agent": {"queue": AISPM_RELEASE_QUEUE},
    }
# Keys: rotation overlap, expiry warning, maximum age.
AISPM_KEY_ROTATION_OVERLAP_HOURS = env_int("AISPM_KEY_ROTATION_OVERLAP_HOURS", 24, minimum=0)
AISPM_KEY_EXPIRY_WARNING_DAYS = env_int("AISPM_KEY_EXPIRY_WARNING_DAYS", 14, minimum=1)
AISPM_KEY_MAX_AGE_DAYS = env_int("AISPM_KEY_MAX_AGE_DAYS", 180, minimum=1)
# Alert when a newly activated behaviour version's rejection rate exceeds the
# previous version's by this margin, once it has this many reviewed decisions.
AISPM_REGRESSION_MARGIN = env_int("AISPM_REGRESSION_MARGIN_PERCENT", 15, minimum=1) / 100
AISPM_REGRESSION_MIN_DECISIONS = env_int("AISPM_REGRESSION_MIN_DECISIONS", 20, minimum=1)
# A pending decision that has waited longer than this counts as an SLA breach in the inbox.
AISPM_REVIEW_SLA_HOURS = env_int("AISPM_REVIEW_SLA_HOURS", 4, minimum=1)
# Audit evidence: the Ed25519 seed that signs chain checkpoints (none: unanchored),
# how often beat makes one, and the witness outside the database that receives each.
AISPM_AUDIT_SIGNING_KEY = env_signing_key("AISPM_AUDIT_SIGNING_KEY")
AISPM_AUDIT_CHECKPOINT_SECONDS = env_int("AISPM_AUDIT_CHECKPOINT_SECONDS", 300, minimum=10)
# s3:// storage: credentials and region from the standard AWS variables, the endpoint of
# S3-compatible storage (MinIO...) from AISPM_AUDIT_WITNESS_S3_ENDPOINT.
AISPM_AUDIT_WITNESS_URL, AISPM_AUDIT_WITNESS_S3_ENDPOINT = env_witness(
    "AISPM_AUDIT_WITNESS_URL", "AISPM_AUDIT_WITNESS_S3_ENDPOINT"
)
# SIEM sinks that receive every sealed event in chain order (README: Audit).
SIEM_SCHEMES = {"ocsf+http", "ocsf+https", "syslog", "syslog+tls", "otlp+http", "otlp+https"}
AISPM_AUDIT_SIEM_URLS = env_list("AISPM_AUDIT_SIEM_URLS", [])
for _url in AISPM_AUDIT_SIEM_URLS:
    _parts = urlsplit(_url)
    if _parts.scheme not in SIEM_SCHEMES or not _parts.hostname:
        raise ImproperlyConfigured(
            f"AISPM_AUDIT_SIEM_URLS entries must start with one of "
            f"{', '.join(sorted(SIEM_SCHEMES))}:// and name a host (got {_url!r})."
        )
    try:
        _parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ImproperlyConfigured(f"AISPM_AUDIT_SIEM_URLS has an invalid port: {_url!r}") from None
if AISPM_AUDIT_SIEM_URLS:
    CELERY_BEAT_SCHEDULE["stream-audit"] = {
        "task": "audit.tasks.stream_audit_events",
        "schedule": 10.0,
    }
# Audit events younger than this are never archived; the EU AI Act (Art. 19) asks for
# at least six months.
AISPM_AUDIT_RETENTION_DAYS = env_int("AISPM_AUDIT_RETENTION_DAYS", 400, minimum=183)
CELERY_BEAT_SCHEDULE["checkpoint-audit"] = {
    "task": "audit.tasks.checkpoint_audit_chain",
    "schedule": float(AISPM_AUDIT_CHECKPOINT_SECONDS),
}
# Posture checks (approvals.posture): the thresholds a finding opens at.
AISPM_POSTURE_ALLOW_MIN = env_int("AISPM_POSTURE_ALLOW_MIN", 20, minimum=1)
AISPM_POSTURE_MAX_ADDRESSES = env_int("AISPM_POSTURE_MAX_ADDRESSES", 3, minimum=1)
AISPM_POSTURE_REJECTION_PERCENT = env_int("AISPM_POSTURE_REJECTION_PERCENT", 40, minimum=1)
AISPM_POSTURE_REJECTION_MIN_REVIEWS = env_int("AISPM_POSTURE_REJECTION_MIN_REVIEWS", 10, minimum=1)
AISPM_POSTURE_MAX_SUPERUSERS = env_int("AISPM_POSTURE_MAX_SUPERUSERS", 2, minimum=1)
AISPM_POSTURE_QUEUE_MIN_DECISIONS = env_int("AISPM_POSTURE_QUEUE_MIN_DECISIONS", 5, minimum=1)
# Reviewer capacity (issue 17): the address reviewers reach aispm at, for links in
# notifications; how often digests and the resend sweep run.
AISPM_PUBLIC_URL = (
    env_url("AISPM_PUBLIC_URL", schemes={"http", "https"}) or "http://localhost:8000"
).rstrip("/")
AISPM_NOTIFICATIONS_ENABLED = not env_bool("AISPM_NOTIFICATIONS_OFF")
CELERY_BEAT_SCHEDULE["notify-new-decisions"] = {
    "task": "approvals.notifications.tasks.notify_new_decisions",
    "schedule": 5.0,
}
CELERY_BEAT_SCHEDULE["notification-digests"] = {
    "task": "approvals.notifications.tasks.send_notification_digests",
    "schedule": 60.0,
}
CELERY_BEAT_SCHEDULE["escalate-decisions"] = {
    "task": "approvals.capacity_tasks.escalate_decisions",
    "schedule": 60.0,
}
CELERY_BEAT_SCHEDULE["insert-canaries"] = {
    "task": "approvals.capacity_tasks.insert_canaries",
    "schedule": 15 * 60.0,
}
CELERY_BEAT_SCHEDULE["notification-resend"] = {
    "task": "approvals.notifications.tasks.resend_queued_notifications",
    "schedule": 300.0,
}
# Step-up: decisions of this risk or higher need a passkey-signed approval even when
# their policy rule does not say `step_up: passkey` (empty: only rules that say so).
AISPM_STEP_UP_DEFAULT_RISK = env_choice(
    "AISPM_STEP_UP_DEFAULT_RISK", "", choices={"", "low", "medium", "high", "critical"}
)
# WebAuthn relying party; by default the host and origin the browser used.
AISPM_WEBAUTHN_RP_ID = env_str("AISPM_WEBAUTHN_RP_ID")
AISPM_WEBAUTHN_ORIGIN = env_url("AISPM_WEBAUTHN_ORIGIN").rstrip("/")
AISPM_MAX_BODY_BYTES = 256 * 1024
# The MCP gateway (/mcp/): how long a tool call waits for its release, and for reviewers.
AISPM_MCP_RELEASE_WAIT_SECONDS = env_int("AISPM_MCP_RELEASE_WAIT_SECONDS", 10, minimum=0)
AISPM_MCP_REVIEW_WAIT_SECONDS = env_int("AISPM_MCP_REVIEW_WAIT_SECONDS", 0, minimum=0)
DATA_UPLOAD_MAX_MEMORY_SIZE = AISPM_MAX_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "approvals.api.errors.exception_handler",
    # orjson, with DRF's renderer as the fallback for what it would write differently.
    "DEFAULT_RENDERER_CLASSES": ["approvals.api.fast_json.FastJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "aispm agent API",
    "DESCRIPTION": "The contract AI agents code against to propose governed actions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# One JSON object per line on stderr, each naming its request id, user or agent,
# and decision. Agent keys and webhook secrets are masked as a last resort.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "aispm_site.logging.ContextFilter"},
        "redact": {"()": "aispm_site.logging.RedactSecrets"},
    },
    "formatters": {"json": {"()": "aispm_site.logging.JSONFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["redact", "context"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The MCP SDK logs each stateless request at INFO; aispm logs one line per request.
        "mcp": {"level": "WARNING"},
    },
}
# Celery workers keep this configuration instead of installing their own plain-text handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
