"""What every agent API view shares: key authentication and the JSON parser."""

from rest_framework.views import APIView

from agents.auth import AgentKeyAuthentication, IsAgent

from .parsers import SafeJSONParser


class AgentAPIView(APIView):
    authentication_classes = [AgentKeyAuthentication]
    permission_classes = [IsAgent]
    parser_classes = [SafeJSONParser]
