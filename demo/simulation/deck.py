"""The deck: how the generators are mixed and dealt."""

import random
from collections.abc import Callable

from .common import SimRequest
from .finance import (
    finance_currency_mismatch,
    finance_large_payment,
    finance_out_of_scope,
    finance_small_payment,
    finance_supplier_email,
)
from .sdr import (
    sdr_bulk_email,
    sdr_competitor_email,
    sdr_crm_change,
    sdr_crm_note,
    sdr_follow_up,
    sdr_out_of_scope,
)
from .support import (
    support_crm_note,
    support_large_refund,
    support_out_of_scope,
    support_reply,
    support_small_refund,
    support_unsure_refund,
)

Generator = Callable[[random.Random], SimRequest]

# Cards per agent in one deck: (generator, how many). With all three agents the
# deck is 38 in-scope cards plus 2 out-of-scope ones, so 5% of the traffic.
MIX: dict[str, list[tuple[Generator, int]]] = {
    "sdr-agent": [
        (sdr_follow_up, 8),
        (sdr_crm_note, 3),
        (sdr_crm_change, 2),
        (sdr_bulk_email, 1),
        (sdr_competitor_email, 1),
    ],
    "support-agent": [
        (support_small_refund, 3),
        (support_large_refund, 2),
        (support_unsure_refund, 1),
        (support_reply, 4),
        (support_crm_note, 2),
    ],
    "finance-agent": [
        (finance_small_payment, 4),
        (finance_large_payment, 2),
        (finance_currency_mismatch, 1),
        (finance_supplier_email, 4),
    ],
}
OUT_OF_SCOPE_GENERATORS: dict[str, Generator] = {
    "sdr-agent": sdr_out_of_scope,
    "support-agent": support_out_of_scope,
    "finance-agent": finance_out_of_scope,
}
OUT_OF_SCOPE_SHARE = 0.05


class Deck:
    """Deals requests in shuffled rounds that keep the intended mix.

    A card for an agent that is paused (rate-limited) is discarded, so the mix of
    the agents still sending stays the same.
    """

    def __init__(self, agents: list[str], rng: random.Random):
        self.rng = rng
        self.agents = list(agents)
        self.in_scope = [
            (agent, generator)
            for agent in self.agents
            for generator, count in MIX[agent]
            for _ in range(count)
        ]
        share = OUT_OF_SCOPE_SHARE / (1 - OUT_OF_SCOPE_SHARE)
        self.misfires = max(1, round(len(self.in_scope) * share))
        self.round: list[tuple[str, Generator]] = []

    def _new_round(self) -> list[tuple[str, Generator]]:
        cards = self.in_scope[:]
        for _ in range(self.misfires):
            agent = self.rng.choice(self.agents)
            cards.append((agent, OUT_OF_SCOPE_GENERATORS[agent]))
        self.rng.shuffle(cards)
        return cards

    def deal(self, available: set[str]) -> SimRequest | None:
        """The next request for one of the available agents, or None if none is available."""
        if not available & set(self.agents):
            return None
        while True:
            if not self.round:
                self.round = self._new_round()
            agent, generator = self.round.pop()
            if agent in available:
                return generator(self.rng)
