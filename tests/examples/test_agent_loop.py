"""`make example` end to end: aispm, the OpenAI Agents SDK agent on /mcp/ with a
scripted model, and a reviewer approving in Chromium."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_the_example_agent_sees_released_denied_and_reviewed_results():
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "run_example.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "<- released: Pay 120 to ACME Supplies" in out
    assert "<- denied: Never email personal addresses from the finance agent" in out
    assert "reviewer: approving 'Pay 4800 to Globex' in the inbox" in out
    assert "<- released: Pay 4800 to Globex" in out
    assert out.index("reviewer: approving") < out.index("<- released: Pay 4800")
