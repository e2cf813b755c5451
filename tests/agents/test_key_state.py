"""A key's state at a moment is derived in one place, AgentKey.state_at."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import AgentKey

NOW = timezone.now()
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("revoked_at", "expires_at", "state"),
    [
        (None, None, AgentKey.State.ACTIVE),
        (None, NOW + HOUR, AgentKey.State.ACTIVE),
        (NOW + HOUR, NOW + 2 * HOUR, AgentKey.State.ROTATING),  # rotated, still valid
        (NOW + HOUR, None, AgentKey.State.ROTATING),
        (NOW, None, AgentKey.State.REVOKED),  # revoked at this very moment
        (NOW - HOUR, None, AgentKey.State.REVOKED),
        (NOW - HOUR, NOW - 2 * HOUR, AgentKey.State.REVOKED),  # revocation wins
        (None, NOW, AgentKey.State.EXPIRED),
        (NOW + HOUR, NOW - HOUR, AgentKey.State.EXPIRED),  # expired during the overlap
    ],
)
def test_state_at_names_the_keys_state(revoked_at, expires_at, state):
    key = AgentKey(revoked_at=revoked_at, expires_at=expires_at)

    assert key.state_at(NOW) == state
    assert key.is_usable(NOW) == state.usable
    assert key.is_usable(NOW) == (state in (AgentKey.State.ACTIVE, AgentKey.State.ROTATING))


def test_the_states_read_as_the_keys_screen_labels_them():
    assert [state.value for state in AgentKey.State] == [
        "active",
        "rotating",
        "expired",
        "revoked",
    ]
