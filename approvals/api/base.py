"""What every agent API view shares: key authentication and the JSON parser."""

from rest_framework.views import APIView

from agents.auth import AgentKeyAuthentication, IsAgent

from .fast_json import FastJSONParser


class AgentAPIView(APIView):
    authentication_classes = [AgentKeyAuthentication]
    permission_classes = [IsAgent]
    # orjson, falling back to the standard parser (and its refusals) for anything
    # orjson rejects or would read differently: tests/approvals/api/test_fast_json.py.
    parser_classes = [FastJSONParser]
