"""Parsing and checking what agents send: JSON bodies and the JSON objects inside them."""

from django.core.exceptions import RequestDataTooBig
from rest_framework import parsers, serializers
from rest_framework.exceptions import ParseError

from aispm_site import hostile

from . import errors as api_errors

MAX_JSON_DEPTH = 32


class SafeJSONParser(parsers.JSONParser):
    """JSON only, and a clear 400 for input the standard parser chokes on."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON is nested too deeply.") from None
        except RequestDataTooBig:
            raise api_errors.TooLarge("The body is over 256 KiB.") from None


def check_json(value, path: str) -> None:
    try:
        hostile.check_structure(value, name=path, max_depth=MAX_JSON_DEPTH)
    except hostile.Refused as exc:
        raise serializers.ValidationError(str(exc)) from None


def json_object(value, name: str) -> dict:
    if not isinstance(value, dict):
        raise serializers.ValidationError(f"{name} must be a JSON object.")
    check_json(value, name)
    return value
