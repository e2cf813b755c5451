"""Agent key format: ``aispm_<32 base62 chars>_<6 base62 chars of CRC32>``.

The checksum lets the server reject a mistyped or made-up key before touching
the database, and lets secret scanners recognise a real key. Keys carry about
190 bits of randomness, so a single SHA-256 is a sound hash to store.
"""

import hashlib
import secrets
import string
import zlib

PREFIX = "aispm"
ALPHABET = string.digits + string.ascii_letters
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
DISPLAY_PREFIX_LENGTH = len(PREFIX) + 1 + 6


def _base62(number: int, width: int) -> str:
    chars = []
    while number:
        number, rem = divmod(number, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars)).rjust(width, "0")


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate_key() -> str:
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    body = f"{PREFIX}_{random_part}"
    return f"{body}_{_checksum(body)}"


def is_well_formed(key: str) -> bool:
    """Format and checksum check; needs no database."""
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != PREFIX:
        return False
    random_part, checksum = parts[1], parts[2]
    if len(random_part) != RANDOM_LENGTH or len(checksum) != CHECKSUM_LENGTH:
        return False
    if not all(c in ALPHABET for c in random_part + checksum):
        return False
    return secrets.compare_digest(checksum, _checksum(f"{PREFIX}_{random_part}"))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LENGTH]
