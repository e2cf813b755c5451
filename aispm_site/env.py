"""Typed readers of environment variables for settings.py.

Each fails at start-up with ImproperlyConfigured, naming the variable and what it
expected, so a bad deployment value never becomes a wrong default.
"""

import base64
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (got {raw!r}).")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer (got {raw!r}).") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum} (got {value}).")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_str(name: str, default: str = "") -> str:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip()
    if "\x00" in value or any(0xD800 <= ord(char) <= 0xDFFF for char in value):
        raise ImproperlyConfigured(f"{name} contains a NUL or an unpaired surrogate.")
    return value


def env_mapping(name: str, *, allowed_values: set[str]) -> dict[str, str]:
    """`key=Value,key2=Value2`, each value one of `allowed_values`."""
    mapping = {}
    for item in env_list(name, []):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ImproperlyConfigured(
                f"{name} must look like group=Role,group2=Role (got {item!r})."
            )
        if value not in allowed_values:
            raise ImproperlyConfigured(
                f"{name} maps {key!r} to {value!r}; "
                f"the roles are {', '.join(sorted(allowed_values))}."
            )
        mapping[key] = value
    return mapping


def env_choice(name: str, default: str, *, choices: set[str]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(
            f"{name} must be one of {', '.join(sorted(choices))} (got {value!r})."
        )
    return value


def env_database(name: str) -> dict:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    scheme = urlsplit(raw).scheme
    if scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"{name} must be a PostgreSQL URL such as postgres://user@host:5432/db "
            f"(got scheme {scheme!r})."
        )
    try:
        # Persistent connections: each gunicorn worker or Celery process keeps one
        # connection for up to DATABASE_CONN_MAX_AGE seconds instead of opening one a
        # request (0 closes it after each request). A sync worker serves one request at
        # a time, so a pool per process would hold the same single connection.
        config = dj_database_url.parse(
            raw, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600, minimum=0)
        )
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}") from None
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name} must name a database, e.g. postgres://host/aispm.")
    return config


def env_broker(name: str) -> str | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise ImproperlyConfigured(
            f"{name} must be a Redis URL such as redis://127.0.0.1:6379/0 (got {raw!r})."
        )
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port (got {raw!r}).") from None
    return raw


def env_signing_key(name: str) -> bytes | None:
    """An Ed25519 seed: base64 of 32 bytes in `name`, or in the file `name`_FILE names."""
    raw = os.environ.get(name, "").strip()
    path = os.environ.get(f"{name}_FILE", "").strip()
    if raw and path:
        raise ImproperlyConfigured(f"Set {name} or {name}_FILE, not both.")
    source = name
    if path:
        source = f"{name}_FILE ({path})"
        try:
            raw = Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{source} cannot be read: {exc.strerror}.") from None
    if not raw:
        return None
    try:
        seed = base64.b64decode(raw, validate=True)
    except ValueError:
        raise ImproperlyConfigured(f"{source} must be base64 of a 32-byte seed.") from None
    if len(seed) != 32:
        raise ImproperlyConfigured(
            f"{source} must be base64 of a 32-byte Ed25519 seed (got {len(seed)} bytes)."
        )
    return seed


def env_url(name: str, *, schemes: frozenset[str] = frozenset({"http", "https"})) -> str:
    raw = env_str(name)
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in schemes:
        raise ImproperlyConfigured(
            f"{name} must start with one of {', '.join(sorted(schemes))}:// (got {raw!r})."
        )
    if parts.scheme in {"http", "https"} and not parts.hostname:
        raise ImproperlyConfigured(f"{name} must be an http(s) URL with a host (got {raw!r}).")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port (got {raw!r}).") from None
    if parts.scheme == "file" and not parts.path:
        raise ImproperlyConfigured(f"{name} must name a directory, e.g. file:///var/witness/.")
    if parts.scheme not in {"file"} and not parts.hostname:
        raise ImproperlyConfigured(f"{name} must name a host (got {raw!r}).")
    return raw


def env_witness(name: str, endpoint_name: str) -> tuple[str, str]:
    """The audit witness URL (file://, syslog:// or s3://) and, for s3://, the endpoint
    of S3-compatible storage ('' for AWS itself)."""
    from audit import witness_s3  # standard library only: no app is loaded here

    raw, endpoint = env_str(name), env_str(endpoint_name)
    for variable, value, check in (
        (name, raw if raw.startswith("s3://") else "", witness_s3.parse_url),
        (endpoint_name, endpoint, witness_s3.check_endpoint),
    ):
        try:
            if value:
                check(value)
        except witness_s3.S3ConfigError as exc:
            raise ImproperlyConfigured(f"{variable}: {exc}.") from None
    return env_url(name, schemes=frozenset({"file", "syslog", "s3"})), endpoint


_MAIL_BACKENDS = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "smtps": "django.core.mail.backends.smtp.EmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
    "dummy": "django.core.mail.backends.dummy.EmailBackend",
}


def env_mailer(name: str, *, debug: bool) -> dict:
    raw = os.environ.get(name, "").strip()
    if not raw:
        scheme = "console" if debug else "smtp"
        raw = f"{scheme}://localhost:25"
    parts = urlsplit(raw)
    if parts.scheme not in _MAIL_BACKENDS:
        raise ImproperlyConfigured(
            f"{name} must start with one of {', '.join(sorted(_MAIL_BACKENDS))}:// (got {raw!r})."
        )
    config = {"BACKEND": _MAIL_BACKENDS[parts.scheme]}
    if parts.scheme.startswith("smtp"):
        try:
            port = parts.port or (465 if parts.scheme == "smtps" else 25)
        except ValueError:
            raise ImproperlyConfigured(f"{name} has an invalid port (got {raw!r}).") from None
        query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
        config["OPTIONS"] = {
            "host": parts.hostname or "localhost",
            "port": port,
            "username": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "use_ssl": parts.scheme == "smtps",
            "use_tls": query.get("tls", "").lower() in _TRUE,
            "timeout": 10,
        }
    return config
