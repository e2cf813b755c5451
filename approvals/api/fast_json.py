"""orjson for the agent API's bodies, with the standard parser and renderer as the referee.

orjson parses and renders in C, several times faster than the `json` module, and
refuses on its own much of what the API refuses: NaN and Infinity, lone surrogates,
invalid UTF-8, a byte order mark, nesting past 1,024 levels. Where it would answer
differently from the standard library, these classes hand the body to the standard
code instead, so every outcome (the value, the 400 and its message) is what the API
gave before:

- anything orjson refuses is parsed again by the standard parser, which gives the same
  refusal, the same message and the same depth and size handling as before;
- a run of 19 or more digits: orjson reads an integer literal past 64 bits as a float,
  silently, where the standard parser keeps the exact integer for the hostile-input
  checks to refuse;
- a body in a charset other than UTF-8.

The renderer falls back to DRF's for an indent request, and for values orjson will not encode
(integers past 64 bits, lone surrogates); it escapes U+2028 and U+2029 as DRF does.
"""

import re

import orjson
from django.core.exceptions import RequestDataTooBig
from rest_framework import renderers
from rest_framework.utils.encoders import JSONEncoder

from . import errors as api_errors
from .parsers import SafeJSONParser

# 19 digits reach 2^63; orjson turns an integer literal past 2^64 into a float.
LONG_NUMBER = re.compile(rb"\d{19}")
_UTF8 = {"utf-8", "utf8"}


class FastJSONParser(SafeJSONParser):
    """SafeJSONParser's results, through orjson when it agrees with the standard parser."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            body = stream.read() if stream is not None else b""
        except RequestDataTooBig:
            raise api_errors.TooLarge("The body is over 256 KiB.") from None
        if encoding.lower() in _UTF8 and not LONG_NUMBER.search(body):
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError:
                pass
        return super().parse(_Body(body), media_type, parser_context)


class _Body:
    """The bytes already read, as the stream the standard parser reads."""

    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size is None or size < 0 else self.position + size
        chunk = self.data[self.position : end]
        self.position += len(chunk)
        return chunk


def _default(value):
    # Dates, decimals, lazy strings and the rest, exactly as DRF's encoder writes them.
    return JSONEncoder().default(value)


_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


class FastJSONRenderer(renderers.JSONRenderer):
    """DRF's compact JSON through orjson: the same values, keys in the same order, dates,
    decimals and UUIDs written as DRF writes them. (Floats may be spelled differently,
    1e16 for 1e+16, and a NaN that DRF would refuse with a 500 is written as null.)"""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if self.get_indent(accepted_media_type, renderer_context or {}) is not None:
            return super().render(data, accepted_media_type, renderer_context)
        try:
            rendered = orjson.dumps(data, default=_default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().render(data, accepted_media_type, renderer_context)
        if b"\xe2\x80\xa8" in rendered or b"\xe2\x80\xa9" in rendered:
            rendered = rendered.replace(b"\xe2\x80\xa8", b"\\u2028")
            rendered = rendered.replace(b"\xe2\x80\xa9", b"\\u2029")
        return rendered
