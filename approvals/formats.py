"""Destinations in one canonical form, so that what policy checks is where things go.

An email address is a bare addr-spec: no display name, comment, quoted local part,
whitespace or trailing dot, an ASCII local part, and the domain lower-cased and
IDNA-encoded. A URL is an absolute http(s) URL without userinfo, its host lower-cased
and IDNA-encoded. Each function returns the canonical form or raises NotCanonical
with the reason.
"""

import functools
import ipaddress
import re
import unicodedata
from urllib.parse import quote, urlsplit

import idna
from email_validator import EmailNotValidError, validate_email

MAX_URL_CHARS = 8192
# RFC 3986 reserved and unreserved characters, and "%" so existing escapes stay as sent.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"
# WHATWG URL parsers read a host whose last label is a number as an IPv4 address.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_NETLOC = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]+)(?::[0-9]*)?")


class NotCanonical(ValueError):
    pass


@functools.lru_cache(maxsize=1024)
def canonical_email(value: str) -> str:
    try:
        checked = validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_display_name=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_empty_local=False,
        )
    except EmailNotValidError as exc:
        raise NotCanonical(str(exc)) from None
    return f"{checked.local_part}@{checked.ascii_domain}"


def _invisible_or_control(value: str) -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp") for char in value)


def canonical_hostname(value: str) -> str:
    if not value:
        raise NotCanonical("The host is empty.")
    if _invisible_or_control(value):
        raise NotCanonical("The host contains whitespace, control or invisible characters.")
    if value.endswith("."):
        raise NotCanonical("The host cannot end with a period.")
    try:
        host = idna.encode(value, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise NotCanonical(f"The host is not a valid domain name ({exc}).") from None
    if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise NotCanonical("The host is neither a domain name nor an IPv4 address.") from None
    return host


@functools.lru_cache(maxsize=1024)
def canonical_url(value: str) -> str:
    if len(value) > MAX_URL_CHARS:
        raise NotCanonical(f"The URL is longer than {MAX_URL_CHARS} characters.")
    if _invisible_or_control(value):
        raise NotCanonical("The URL contains whitespace, control or invisible characters.")
    if "\\" in value:
        raise NotCanonical("The URL contains a backslash.")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise NotCanonical(f"The URL cannot be parsed ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        raise NotCanonical("Only absolute http and https URLs are allowed.")
    if "@" in parts.netloc:
        raise NotCanonical("A user name or password in the URL is not allowed.")
    netloc = _NETLOC.fullmatch(parts.netloc)
    if netloc is None:
        raise NotCanonical("The URL's host is not valid.")
    host = netloc["host"]
    if host.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise NotCanonical("The URL's IPv6 address is not valid.") from None
    else:
        host = canonical_hostname(host)
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host += f":{port}"
    path = quote(parts.path or "/", safe=_URL_SAFE)
    query = f"?{quote(parts.query, safe=_URL_SAFE)}" if parts.query or value.endswith("?") else ""
    fragment = f"#{quote(parts.fragment, safe=_URL_SAFE)}" if parts.fragment else ""
    return f"{scheme}://{host}{path}{query}{fragment}"


# JSON Schema format names whose values are destinations, and what they mean here.
EMAIL_FORMATS = ("email", "idn-email")
URL_FORMATS = ("uri", "iri", "uri-reference", "iri-reference", "url")
HOSTNAME_FORMATS = ("hostname", "idn-hostname")
CANONICAL = {
    **dict.fromkeys(EMAIL_FORMATS, canonical_email),
    **dict.fromkeys(URL_FORMATS, canonical_url),
    **dict.fromkeys(HOSTNAME_FORMATS, canonical_hostname),
}
DESCRIBED = {
    **dict.fromkeys(EMAIL_FORMATS, "a bare email address"),
    **dict.fromkeys(URL_FORMATS, "an absolute http(s) URL"),
    **dict.fromkeys(HOSTNAME_FORMATS, "a host name"),
}


def reason(fmt: str, value) -> str:
    """Why `value` is not of the destination format `fmt`; empty when it is."""
    if not isinstance(value, str):
        return ""
    try:
        CANONICAL[fmt](value)
    except NotCanonical as exc:
        return str(exc)
    return ""


def conforms(fmt: str):
    """A format check for the JSON Schema validator (strings only, as the spec says)."""
    canonical = CANONICAL[fmt]

    def check(value) -> bool:
        try:
            canonical(value)
        except NotCanonical:
            return False
        return True

    return check
