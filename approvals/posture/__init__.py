"""Posture: checks that find weak governance, the findings they keep, and the scores.

See registry (checks), services (finding_open, finding_resolve, posture_run), scoring
and report (figures for the four questions).
"""

from .registry import CHECKS, Check, Hit, all_checks
from .services import PostureRun, finding_open, finding_resolve, posture_run

__all__ = [
    "CHECKS",
    "Check",
    "Hit",
    "PostureRun",
    "all_checks",
    "finding_open",
    "finding_resolve",
    "posture_run",
]
