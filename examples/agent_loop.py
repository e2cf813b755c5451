"""An agent loop on the OpenAI Agents SDK whose tools come from aispm's MCP gateway.

The model is scripted (no network, no LLM): it proposes three actions in turn and
reads each result the way a real model would, from the tool output. Run it through
`make example`, which starts aispm and plays the reviewer; or by hand:

    python examples/agent_loop.py http://127.0.0.1:8000/mcp/ aispm_..._...

Run it with the examples/ directory first on the path (as `python examples/...`
does), not from the project root: the SDK's package is called `agents`, like
aispm's app.
"""

import asyncio
import json
import sys
from itertools import count

from agents.items import ModelResponse
from agents.mcp import MCPServerStreamableHttp
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from agents import Agent, Runner, set_tracing_disabled

# What the scripted model does, turn by turn: one tool call per turn.
SCRIPT = [
    (
        "payment.transfer",
        {
            "params": {"amount": 120, "to": "ACME Supplies"},
            "reasoning": "Invoice INV-1042 from ACME is due today.",
            "evidence": {"invoice": "INV-1042"},
            "confidence": 0.95,
        },
    ),
    (
        "email.send",
        {
            "params": {"to": "someone@gmail.com", "subject": "Our prices", "body": "Hi!"},
            "reasoning": "A visitor asked for prices from a personal address.",
        },
    ),
    (
        "payment.transfer",
        {
            "params": {"amount": 4800, "to": "Globex"},
            "reasoning": "Globex's annual licence renewal, quote Q-77.",
            "evidence": {"quote": "Q-77"},
            "confidence": 0.8,
        },
    ),
]


def _outputs(items) -> list[str]:
    if isinstance(items, str):
        return []
    return [
        item["output"] if isinstance(item["output"], str) else json.dumps(item["output"])
        for item in items
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]


class ScriptedModel(Model):
    """A stand-in for an LLM that follows SCRIPT and reports what the tools answered."""

    def __init__(self):
        self.ids = count(1)
        self.seen: list[str] = []

    async def get_response(self, system_instructions, input, model_settings, tools, *a, **kw):
        outputs = _outputs(input)
        for output in outputs[len(self.seen) :]:
            self.seen.append(output)
            print(f"  <- {_first_line(output)}", flush=True)
        turn = len(self.seen)
        number = next(self.ids)
        if turn < len(SCRIPT):
            name, arguments = SCRIPT[turn]
            [tool] = [t.name for t in tools if t.name.replace("_", ".") == name.replace("_", ".")]
            print(f"-> {tool} {json.dumps(arguments['params'])}", flush=True)
            call = ResponseFunctionToolCall(
                type="function_call",
                id=f"fc_{number}",
                call_id=f"call_{number}",
                name=tool,
                arguments=json.dumps(arguments),
            )
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        text = "Done. " + " | ".join(_first_line(output) for output in self.seen)
        message = ResponseOutputMessage(
            type="message",
            id=f"msg_{number}",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError("The scripted model does not stream.")


def _first_line(output: str) -> str:
    """The one-line text aispm puts first in a tool result."""
    try:
        data = json.loads(output)
    except ValueError:
        return output.splitlines()[0] if output else ""
    if isinstance(data, dict) and data.get("type") == "text":
        return data["text"]
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return data[0].get("text", output)
    return output


async def main(url: str, key: str) -> str:
    set_tracing_disabled(True)
    async with MCPServerStreamableHttp(
        name="aispm",
        params={"url": url, "headers": {"Authorization": f"Bearer {key}"}, "timeout": 30},
        # A reviewed call waits for a human (AISPM_MCP_REVIEW_WAIT_SECONDS).
        client_session_timeout_seconds=180,
    ) as aispm:
        agent = Agent(
            name="Finance agent",
            instructions="Pay due invoices. Propose every action through aispm's tools.",
            model=ScriptedModel(),
            mcp_servers=[aispm],
        )
        result = await Runner.run(agent, "Handle today's finance inbox.", max_turns=10)
    print(f"agent: {result.final_output}", flush=True)
    return result.final_output


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
