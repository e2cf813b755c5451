"""Simulated traffic for the demo agents in demo/governance.yaml.

The simulator deals requests from a shuffled deck rather than drawing each one
independently, so every window of one deck (40 requests when all three agents
run) holds the intended mix: mostly reviewable work, some auto-allowed CRM
hygiene, a few policy denials and about 5% out-of-scope attempts. The contents
(people, companies, amounts, wording) are drawn from pools with the caller's
``random.Random``, so a seed reproduces the run.

`expect` on each request is what the demo policy should do with it; the
simulator reports any response that disagrees, which catches drift between
these generators and the demo config.
"""

from .common import (
    APPROVED,
    DEMO_AGENTS,
    DENIED,
    NO_RESPONSE,
    OUT_OF_SCOPE,
    PENDING,
    RELEASE_STATUSES,
    SimRequest,
)
from .deck import MIX, OUT_OF_SCOPE_GENERATORS, OUT_OF_SCOPE_SHARE, Deck, Generator
from .runner import OPENER, Outcome, Stats, http_call, submit

__all__ = [
    "APPROVED",
    "DEMO_AGENTS",
    "DENIED",
    "MIX",
    "NO_RESPONSE",
    "OPENER",
    "OUT_OF_SCOPE",
    "OUT_OF_SCOPE_GENERATORS",
    "OUT_OF_SCOPE_SHARE",
    "PENDING",
    "RELEASE_STATUSES",
    "Deck",
    "Generator",
    "Outcome",
    "SimRequest",
    "Stats",
    "http_call",
    "submit",
]
