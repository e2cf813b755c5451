"""The MCP gateway: the agent API as Model Context Protocol tools at /mcp/.

Streamable HTTP, stateless, so any web worker answers any request. Each granted
action type is a tool; calling it submits a decision through the same pipeline
as POST /api/v1/decisions/, with `channel: mcp` in its audit event.
"""
