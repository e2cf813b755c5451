"""orjson on the agent API gives what the standard parser and renderer give.

The parser is compared with the API's SafeJSONParser on ordinary and hostile bodies
(the same value, or the same refusal with the same message); the renderer with DRF's.
Then the hostile-input and submission tests of the API run again with the orjson
parser in place.
"""

import dataclasses
import decimal
import io
import json
import uuid
from datetime import UTC, datetime

import pytest
from django.utils.translation import gettext_lazy
from rest_framework.exceptions import ParseError
from rest_framework.renderers import JSONRenderer

from approvals.api import errors as api_errors
from approvals.api import parsers
from approvals.api.fast_json import FastJSONParser, FastJSONRenderer

BODY = json.dumps(
    {
        "action": "email.send",
        "params": {"to": ["lead@example.com"], "subject": "Pricing", "body": "Hi ✓ 😀"},
        "reasoning": "The prospect asked for pricing.",
        "evidence": {"signal": "reply", "opens": 2},
        "confidence": 0.82,
        "idempotency_key": "k-1",
    }
).encode()

BODIES = {
    "ordinary": BODY,
    "utf-8 text": '{"a": "Grüße, 你好, 😀"}'.encode(),
    "escapes": rb'{"a": "\u00e9\n\t\"\\\/ \ud83d\ude00"}',
    "line separators": '{"a": "x\u2028y\u2029z"}'.encode(),
    "duplicate keys": b'{"a": 1, "a": 2}',
    "floats": b"[0.1, 1e16, -0.0, 1E-7, 2.5e308, 5e-324, 123456789.123456789]",
    "integers": b"[0, -1, 9223372036854775807, -9223372036854775808]",
    "2^63": b"[9223372036854775808]",
    "2^64": b"[18446744073709551616]",
    "past 2^64": b"[123456789012345678901234567890]",
    "below -2^63": b"[-9223372036854775809]",
    "19 digits in a string": b'{"phone": "1234567890123456789"}',
    "float overflow": b"[1e400]",
    "NaN": b'{"a": NaN}',
    "Infinity": b'{"a": Infinity}',
    "-Infinity": b'{"a": -Infinity}',
    "lone high surrogate": rb'{"a": "\ud800"}',
    "lone low surrogate key": rb'{"\udfff": 1}',
    "invalid utf-8": b'{"a": "\xff\xfe"}',
    "byte order mark": b'\xef\xbb\xbf{"a": 1}',
    "31 deep": b"[" * 31 + b"]" * 31,
    "2,000 deep": b"[" * 2000 + b"]" * 2000,
    "10,000 deep": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "trailing garbage": b'{"a": 1} x',
    "two documents": b"{} {}",
    "a scalar": b"42",
    "a string": b'"text"',
    "not json": b"<xml/>",
    "truncated": b'{"a": [1, 2',
    "NUL escaped": rb'{"a": "x\u0000y"}',
    "whitespace": b' \n\t{ "a" : [ 1 , 2 ] }\r\n',
}


def parse(parser, body: bytes, encoding: str = "utf-8"):
    try:
        return "value", parser.parse(io.BytesIO(body), "application/json", {"encoding": encoding})
    except (ParseError, api_errors.ApiError) as exc:
        return type(exc).__name__, str(exc.detail)


@pytest.mark.parametrize("name", BODIES)
def test_the_orjson_parser_agrees_with_the_standard_parser(name):
    body = BODIES[name]
    standard = parse(parsers.SafeJSONParser(), body)
    fast = parse(FastJSONParser(), body)

    assert fast == standard
    if standard[0] == "value":  # the same types, too: an int is not a float
        assert repr(fast[1]) == repr(standard[1])


def test_a_body_in_another_charset_is_left_to_the_standard_parser():
    body = '{"a": "é"}'.encode("latin-1")

    assert parse(FastJSONParser(), body, "latin-1") == ("value", {"a": "é"})


@dataclasses.dataclass
class Point:
    x: int


VALUES = {
    "decision-like": {
        "id": str(uuid.uuid4()),
        "params": {"to": ["a@example.com"], "n": 3, "ok": True, "none": None, "f": 0.82},
        "reviews": [],
    },
    "unicode": {"text": "Grüße 😀 <script>"},
    "line separators": {"text": "a\u2028b\u2029c"},
    "datetimes": {
        "at": datetime(2026, 11, 30, 10, 1, 2, 345678, tzinfo=UTC),
        "plain": datetime(2026, 11, 30, 10, 1, 2, tzinfo=UTC),
        "day": datetime(2026, 11, 30).date(),
    },
    "uuid and decimal": {"id": uuid.UUID(int=7), "amount": decimal.Decimal("10.50")},
    "lazy text": {"message": gettext_lazy("Not found.")},
    "non-string keys": {1: "a", 2.5: "b", False: "c", None: "d"},
    "a dataclass": {"point": Point(1)},
    "an integer past 64 bits": {"n": 2**70},
    "a tuple": {"t": (1, 2)},
}


@pytest.mark.parametrize("name", VALUES)
def test_the_orjson_renderer_writes_what_drf_writes(name):
    value = VALUES[name]
    try:
        standard = JSONRenderer().render(value)
    except TypeError:
        with pytest.raises(TypeError):
            FastJSONRenderer().render(value)
        return
    fast = FastJSONRenderer().render(value)

    assert json.loads(fast) == json.loads(standard)
    if name not in ("decision-like",):  # floats aside, byte for byte
        assert fast == standard


def test_the_renderer_escapes_line_separators_like_drf():
    rendered = FastJSONRenderer().render({"t": "a\u2028b"})

    assert rendered == b'{"t":"a\\u2028b"}'


def test_the_renderer_honours_an_indent_request():
    rendered = FastJSONRenderer().render({"a": 1}, "application/json; indent=4")

    assert rendered == b'{\n    "a": 1\n}'


def test_the_renderer_refuses_lone_surrogates_as_drf_does():
    with pytest.raises(UnicodeEncodeError):
        JSONRenderer().render({"t": "\ud800"})
    with pytest.raises(UnicodeEncodeError):
        FastJSONRenderer().render({"t": "\ud800"})


def test_an_ordinary_body_never_reaches_the_standard_parser(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the standard parser ran")

    monkeypatch.setattr("rest_framework.parsers.json.load", refuse)

    assert parse(FastJSONParser(), BODY) == ("value", json.loads(BODY))
