"""Encryption at rest for connector secrets.

The Fernet key is derived with HKDF from AISPM_ENCRYPTION_KEY, or from SECRET_KEY
when that is unset. Tokens written under the SECRET_KEY-derived key stay readable
after an operator sets AISPM_ENCRYPTION_KEY, so turning it on later breaks nothing;
new tokens always use the primary key.
"""

import base64
import binascii
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_INFO = b"aispm connector secrets v1"
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_BYTES = 24
# The Standard Webhooks spec asks for 24 to 64 random bytes.
MIN_WEBHOOK_SECRET_BYTES = 24
MAX_WEBHOOK_SECRET_BYTES = 64


class SecretDecryptError(ValueError):
    pass


def _derive(material: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        material.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def _fernet() -> MultiFernet:
    encryption_key = getattr(settings, "AISPM_ENCRYPTION_KEY", "")
    keys = [_derive(encryption_key)] if encryption_key else []
    keys.append(_derive(settings.SECRET_KEY))
    return MultiFernet(keys)


def encrypt_secret(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptError(
            "cannot decrypt the stored secret; was AISPM_ENCRYPTION_KEY or SECRET_KEY changed?"
        ) from None


def generate_webhook_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and base64 of random bytes."""
    raw = secrets.token_bytes(WEBHOOK_SECRET_BYTES)
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(raw).decode()


def is_webhook_secret(value: str) -> bool:
    if not isinstance(value, str) or not value.startswith(WEBHOOK_SECRET_PREFIX):
        return False
    try:
        raw = base64.b64decode(value.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return False
    return MIN_WEBHOOK_SECRET_BYTES <= len(raw) <= MAX_WEBHOOK_SECRET_BYTES
