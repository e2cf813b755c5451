"""Signals the audit domain sends; other apps answer them, so audit imports nothing."""

from django.dispatch import Signal

# Sent by the daily verification when the chain is broken, with `report` (a
# ChainReport). The agents app raises a critical alert for the admins.
chain_broken = Signal()
